// gnuplot rendering of Figures: data blocks, one script, PNG and SVG terminals.
#include "orchestrator/plots.h"

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sweeps/error.h"

namespace parcae::orchestrator {
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
    // '@', '^', '_', '{', '}' and '&' are enhanced-text markup; keep titles literal.
    if (c == '@' || c == '^' || c == '_' || c == '{' || c == '}' || c == '&')
      out += "\\\\";
    out += c;
  }
  return out;
}

std::vector<std::string> render_figure(const Figure& figure, const std::string& directory) {
  if (!is_safe_name(figure.name)) {
    throw InputError("", "figure.name", figure.name, "expected letters, digits, '-', '_' or '.'");
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
    if (s.x.size() != s.y.size()) {
      throw InputError("",
                       "figure " + figure.name + " series " + std::to_string(i),
                       std::to_string(s.x.size()) + " x, " + std::to_string(s.y.size()) + " y",
                       "expected as many x as y values");
    }
    size_t finite = 0;
    for (size_t k = 0; k < s.x.size(); ++k) {
      finite += std::isfinite(s.x[k]) && std::isfinite(s.y[k]) ? 1 : 0;
    }
    if (finite == 0)
      continue;
    data << "# " << s.title << "\n";
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (std::isfinite(s.x[k]) && std::isfinite(s.y[k]))
        data << s.x[k] << " " << s.y[k] << "\n";
    }
    data << "\n\n";  // gnuplot index separator
    plotted.push_back(i);
  }
  data.close();

  std::ofstream script(stem + ".gp");
  script << "# " << figure.title << "\n"
         << "# Redraw with: gnuplot " << figure.name << ".gp\n"
         << "set title \"" << gnuplot_quote(figure.title) << "\"\n"
         << "set xlabel \"" << gnuplot_quote(figure.x_label) << "\"\n"
         << "set ylabel \"" << gnuplot_quote(figure.y_label) << "\"\n"
         << "set key outside right top box opaque\n"
         << "set grid lw 0.5 lc rgb \"#dddddd\"\n"
         << "set border lw 1\n";
  if (figure.log_x)
    script << "set logscale x\n";
  if (figure.log_y)
    script << "set logscale y\n";
  if (!figure.x_tics.empty()) {
    script << "set xtics (";
    for (size_t i = 0; i < figure.x_tics.size(); ++i)
      script << (i ? ", " : "") << figure.x_tics[i];
    script << ")\n";
  }
  std::ostringstream plot;
  plot << "plot ";
  bool first = true;
  for (size_t block = 0; block < plotted.size(); ++block) {
    const size_t i = plotted[block];
    plot << (first ? "" : ", \\\n     ") << "\"" << figure.name << ".dat\" index " << block
         << " using 1:2 " << style_clause(figure.series[i], i);
    first = false;
  }
  if (first)
    throw InputError(
        "", "figure " + figure.name, "(no points)", "expected at least one series with points");
  const std::string plot_command = plot.str();
  script << "set terminal pngcairo size 1100,700 font \"DejaVu Sans,11\"\n"
         << "set output \"" << figure.name << ".png\"\n"
         << plot_command << "\n"
         << "set terminal svg size 1100,700 dynamic font \"DejaVu Sans,11\"\n"
         << "set output \"" << figure.name << ".svg\"\n"
         << plot_command << "\n"
         << "unset output\n";
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
  return {stem + ".png", stem + ".svg"};
}

}  // namespace parcae::orchestrator
