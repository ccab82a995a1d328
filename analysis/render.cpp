// gnuplot rendering of Figures: data blocks, one script, PNG, SVG and PDF terminals.
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "analysis/figure.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

// A palette that stays distinguishable in print and for common colour blindness (Okabe-Ito).
constexpr std::array<const char*, 8> kPalette = {
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};

bool is_safe_name(const std::string& name) {
  if (name.empty())
    return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

std::string style_clause(const Series& series, size_t index) {
  const char* color = kPalette[(series.color >= 0 ? series.color : index) % kPalette.size()];
  std::ostringstream clause;
  switch (series.style) {
    case SeriesStyle::kPoints:
      clause << "with points pt 7 ps 1.1";
      break;
    case SeriesStyle::kLines:
      clause << "with lines lw 2";
      break;
    case SeriesStyle::kLinesPoints:
      clause << "with linespoints pt 7 ps 0.9 lw 1.5";
      break;
    case SeriesStyle::kDashedLines:
      clause << "with lines lw 1.5 dt (8, 5)";
      break;
    case SeriesStyle::kBand:
      clause << "with filledcurves fs transparent solid 0.18 noborder";
      break;
    case SeriesStyle::kOpenPoints:
      clause << "with points pt 6 ps 1.6 lw 1.5";
      break;
    case SeriesStyle::kOpenSquares:
      clause << "with points pt 4 ps 1.3 lw 1.5";
      break;
    case SeriesStyle::kXErrorBars:
      clause << "with xerrorbars pt 6 ps 1.6 lw 1.5";
      break;
    case SeriesStyle::kYErrorBars:
      clause << "with yerrorbars pt 7 ps 1.1 lw 1.5";
      break;
  }
  clause << " lc rgb \"" << color << "\"";
  clause << (series.title.empty() ? " notitle" : " title \"" + gnuplot_quote(series.title) + "\"");
  return clause.str();
}

// Single-quotes a word for /bin/sh.
std::string shell_quote(const std::string& word) {
  std::string out = "'";
  for (char c : word)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string gnuplot_quote(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    // '@', '^', '_', '{', '}', '&' and '~' are enhanced-text markup; keep titles literal.
    if (c == '@' || c == '^' || c == '_' || c == '{' || c == '}' || c == '&' || c == '~')
      out += "\\\\";
    out += c;
  }
  return out;
}

std::vector<std::string> render_figure(const Figure& figure,
                                       const std::string& directory,
                                       const std::vector<std::string>& formats) {
  if (!is_safe_name(figure.name)) {
    throw InputError("", "figure.name", figure.name, "expected letters, digits, '-', '_' or '.'");
  }
  for (const auto& format : formats) {
    if (format != "png" && format != "svg" && format != "pdf")
      throw InputError("", "format", format, "expected png, svg or pdf");
  }
  std::filesystem::create_directories(directory);
  const std::filesystem::path dir(directory);
  const std::string stem = (dir / figure.name).string();

  // Only series with points get a data block, so gnuplot's block indices stay contiguous
  // (an empty block would merge with its neighbour).
  std::ofstream data(stem + ".dat");
  data.precision(10);
  std::vector<size_t> plotted;
  for (size_t i = 0; i < figure.series.size(); ++i) {
    const Series& s = figure.series[i];
    const bool band = s.style == SeriesStyle::kBand;
    const bool bars = s.style == SeriesStyle::kXErrorBars || s.style == SeriesStyle::kYErrorBars;
    if (s.x.size() != s.y.size() || (band && s.y_high.size() != s.x.size()) ||
        (bars && (s.low.size() != s.x.size() || s.high.size() != s.x.size()))) {
      throw InputError("",
                       "figure " + figure.name + " series " + std::to_string(i),
                       std::to_string(s.x.size()) + " x, " + std::to_string(s.y.size()) + " y, " +
                           std::to_string(s.y_high.size()) + " y_high, " +
                           std::to_string(s.low.size()) + " low",
                       "expected as many x as y values (and y_high values for a band, low and "
                       "high for error bars)");
    }
    auto usable = [&](size_t k) {
      return std::isfinite(s.x[k]) && std::isfinite(s.y[k]) &&
             (!band || std::isfinite(s.y_high[k])) &&
             (!bars || (std::isfinite(s.low[k]) && std::isfinite(s.high[k])));
    };
    size_t finite = 0;
    for (size_t k = 0; k < s.x.size(); ++k) {
      finite += usable(k) ? 1 : 0;
    }
    if (finite == 0)
      continue;
    data << "# " << s.title << "\n";
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (!usable(k))
        continue;
      data << s.x[k] << " " << s.y[k];
      if (band)
        data << " " << s.y_high[k];
      if (bars)
        data << " " << s.low[k] << " " << s.high[k];
      data << "\n";
    }
    data << "\n\n";  // gnuplot index separator
    plotted.push_back(i);
  }
  data.close();

  std::ofstream script(stem + ".gp");
  script.precision(10);
  script << "# " << figure.title << "\n"
         << "# Redraw with: gnuplot " << figure.name << ".gp\n"
         << "set title \"" << gnuplot_quote(figure.title) << "\"\n"
         << "set xlabel \"" << gnuplot_quote(figure.x_label) << "\"\n"
         << "set ylabel \"" << gnuplot_quote(figure.y_label) << "\"\n"
         << "set key " << figure.key << " box opaque spacing 1.15\n"
         << "set grid lw 0.5 lc rgb \"#dddddd\"\n"
         << "set border lw 1\n";
  if (figure.log_x)
    script << "set logscale x\n";
  if (figure.log_y)
    script << "set logscale y\n";
  auto tics =
      [&](const char* axis, const std::vector<double>& at, const std::vector<std::string>& labels) {
        if (at.empty())
          return;
        if (!labels.empty() && labels.size() != at.size()) {
          throw InputError("",
                           "figure " + figure.name + " " + axis,
                           std::to_string(labels.size()) + " labels",
                           "expected one label per tick (" + std::to_string(at.size()) + ")");
        }
        script << "set " << axis << " (";
        for (size_t i = 0; i < at.size(); ++i) {
          script << (i ? ", " : "");
          if (!labels.empty())
            script << "\"" << gnuplot_quote(labels[i]) << "\" ";
          script << at[i];
        }
        script << ")\n";
      };
  tics("xtics", figure.x_tics, figure.x_tic_labels);
  tics("ytics", figure.y_tics, figure.y_tic_labels);
  auto range = [&](const char* axis, double low, double high) {
    if (std::isnan(low) && std::isnan(high))
      return;
    script << "set " << axis << " [";
    if (!std::isnan(low))
      script << low;
    script << ":";
    if (!std::isnan(high))
      script << high;
    script << "]\n";
  };
  range("xrange", figure.x_min, figure.x_max);
  range("yrange", figure.y_min, figure.y_max);
  if (!figure.x_format.empty())
    script << "set format x \"" << figure.x_format << "\"\n";
  if (!figure.y_format.empty())
    script << "set format y \"" << figure.y_format << "\"\n";
  // Bands first, so that points and lines are drawn over them.
  std::ostringstream plot;
  plot << "plot ";
  bool first = true;
  for (bool bands : {true, false}) {
    for (size_t block = 0; block < plotted.size(); ++block) {
      const size_t i = plotted[block];
      const SeriesStyle style = figure.series[i].style;
      const bool band = style == SeriesStyle::kBand;
      if (band != bands)
        continue;
      const bool bars = style == SeriesStyle::kXErrorBars || style == SeriesStyle::kYErrorBars;
      plot << (first ? "" : ", \\\n     ") << "\"" << figure.name << ".dat\" index " << block
           << (band   ? " using 1:2:3 "
               : bars ? " using 1:2:3:4 "
                      : " using 1:2 ")
           << style_clause(figure.series[i], i);
      first = false;
    }
  }
  if (first)
    throw InputError(
        "", "figure " + figure.name, "(no points)", "expected at least one series with points");
  const std::string plot_command = plot.str();
  std::vector<std::string> images;
  for (const auto& format : formats) {
    if (format == "png")
      script << "set terminal pngcairo size 1100,700 font \"DejaVu Sans,11\"\n";
    else if (format == "svg")
      script << "set terminal svg size 1100,700 dynamic font \"DejaVu Sans,11\"\n";
    else
      script << "set terminal pdfcairo size 11in,7in font \"DejaVu Sans,11\"\n";
    script << "set output \"" << figure.name << "." << format << "\"\n" << plot_command << "\n";
    images.push_back(stem + "." + format);
  }
  script << "unset output\n";
  script.close();

  const std::string command = "cd " + shell_quote(dir.string()) + " && gnuplot " +
                              shell_quote(figure.name + ".gp") + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr)
    throw Error("cannot run gnuplot");
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr)
    output += buffer;
  const int status = pclose(pipe);
  if (status != 0) {
    const bool missing = WIFEXITED(status) && WEXITSTATUS(status) == 127;
    throw Error(missing ? "gnuplot is not installed (scripts/setup installs gnuplot-nox)"
                        : "gnuplot failed on " + stem + ".gp: " + output);
  }
  return images;
}

}  // namespace parcae::analysis
