// Figures as gnuplot scripts plus data files, rendered to PNG and SVG.
//
// A Figure is plain data (named series of x/y points or lines). render_figure() writes
// NAME.dat and NAME.gp into a folder and runs gnuplot on the script, so every figure can be
// restyled and redrawn by hand from the files next to it. It knows nothing of the database:
// the plot command turns stored results and fits into Figures.
#pragma once

#include <string>
#include <vector>

namespace parcae::orchestrator {

enum class SeriesStyle { kPoints, kLines, kLinesPoints };

struct Series {
  std::string title;  // legend entry; empty for none
  std::vector<double> x;
  std::vector<double> y;
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
  std::vector<Series> series;
};

// Writes DIR/NAME.dat, DIR/NAME.gp, then DIR/NAME.png and DIR/NAME.svg through gnuplot.
// Throws parcae::Error when gnuplot is missing or fails (its message included), and
// parcae::InputError for a bad name or a series whose x and y differ in length.
// Returns the paths of the rendered images.
std::vector<std::string> render_figure(const Figure& figure, const std::string& directory);

// Quotes a string for a gnuplot double-quoted literal.
std::string gnuplot_quote(const std::string& text);

}  // namespace parcae::orchestrator
