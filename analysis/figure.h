// Figures as gnuplot scripts plus data files, rendered to PNG, SVG or PDF.
//
// A Figure is plain data (named series of x/y points, lines, dashed lines or shaded bands).
// render_figure() writes NAME.dat and NAME.gp into a folder and runs gnuplot on the script, so
// every figure can be restyled and redrawn by hand from the files next to it. It knows nothing of
// the database: the plot command turns stored results and fits into Figures.
#pragma once

#include <cmath>
#include <string>
#include <vector>

namespace parcae::analysis {

// kBand shades the area between y and y_high (an interval), drawn beneath the other series.
// kXErrorBars and kYErrorBars draw points with a bar from low to high along x or y.
enum class SeriesStyle {
  kPoints,
  kLines,
  kLinesPoints,
  kDashedLines,
  kBand,
  kOpenPoints,
  kOpenSquares,
  kXErrorBars,
  kYErrorBars
};

struct Series {
  std::string title;  // legend entry; empty for none
  std::vector<double> x;
  std::vector<double> y;
  std::vector<double> y_high;  // kBand only: the upper edge, one per x
  std::vector<double> low;     // kXErrorBars, kYErrorBars: the bar's ends, one per point
  std::vector<double> high;
  SeriesStyle style = SeriesStyle::kPoints;
  int color = -1;  // index into the palette; -1 = by position
};

struct Figure {
  std::string name;  // file stem: letters, digits, '-', '_' and '.'
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_x = false;
  bool log_y = false;
  std::vector<double> x_tics;  // explicit tick positions (useful on a log axis); empty = automatic
  std::vector<double> y_tics;
  // Labels of the explicit ticks, one per position ("5e11"); empty = gnuplot's format.
  std::vector<std::string> x_tic_labels;
  std::vector<std::string> y_tic_labels;
  // Axis ranges; a NaN end is left to gnuplot's autoscale.
  double x_min = NAN, x_max = NAN, y_min = NAN, y_max = NAN;
  std::string x_format;  // gnuplot tick format, such as "10^{%L}"; empty = automatic
  std::string y_format;
  std::string key = "outside right top";  // gnuplot `set key` placement
  std::vector<Series> series;
};

// Writes DIR/NAME.dat, DIR/NAME.gp, then DIR/NAME.<format> for each of formats ("png", "svg",
// "pdf") through gnuplot. Throws parcae::Error when gnuplot is missing or fails (its message
// included), and parcae::InputError for a bad name, an unknown format, or a series whose x and y
// (and y_high) differ in length. Returns the paths of the rendered images.
std::vector<std::string> render_figure(const Figure& figure,
                                       const std::string& directory,
                                       const std::vector<std::string>& formats = {"png", "svg"});

// Quotes a string for a gnuplot double-quoted literal.
std::string gnuplot_quote(const std::string& text);

}  // namespace parcae::analysis
