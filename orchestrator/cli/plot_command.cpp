// `parcae-scale plot KIND --sweep NAME -o DIR [--format svg|png|pdf]`: a sweep's figures as gnuplot
// scripts, data and images. Flags map onto analysis::PlotRequest; analysis::draw_figures() builds
// and renders them. Kinds:
//   isoflop    loss against the swept variable per budget, with the fitted parabolas and their
//              minima with 1-sigma bars
//   frontier   x* and D* against C (log-log) with the fitted power law, its bootstrap band, and
//              reference slopes (default: the paper's 0.40 and 0.78 for x = mu_rec)
//   test-time  L(T) per run with its saturating exponential, one figure per budget
//   curves     training loss against tokens, one figure per budget
//   all        every kind that the sweep's data allow
// The older form `plot NAME --out DIR` draws all of them.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "analysis/analysis.h"
#include "orchestrator/cli/cli_context.h"
#include "orchestrator/orchestrator.h"
#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

const std::vector<std::string> kKinds = {"isoflop", "frontier", "test-time", "curves", "all"};

struct PlotFlags {
  analysis::PlotRequest request;
  std::string target = "all";  // KIND, or the sweep name (the older form)
  std::string sweep;
  std::string format;            // empty: png and svg
  std::string reference_slopes;  // "", "none", or "X" or "X,D"
};

double slope_value(const std::string& text, const std::string& whole) {
  if (text == "none" || text == "-")
    return fitting::kNotComputed;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0') {
    throw InputError("",
                     "--reference-slopes",
                     "'" + whole + "'",
                     "expected none, or the x* slope and optionally the D* slope, such as "
                     "0.5,0.5");
  }
  return value;
}

int run_plot(PlotFlags& flags, const CliContext& context) {
  analysis::PlotRequest& request = flags.request;
  std::string sweep = flags.sweep;
  const bool is_kind = std::find(kKinds.begin(), kKinds.end(), flags.target) != kKinds.end();
  if (sweep.empty() && !is_kind) {
    sweep = flags.target;  // the older form: plot NAME --out DIR
    request.kind = "all";
  } else {
    request.kind = flags.target;
  }
  if (!flags.format.empty())
    request.formats = {flags.format};
  if (!flags.reference_slopes.empty()) {
    request.reference_slopes_set = true;
    const std::string& text = flags.reference_slopes;
    const size_t comma = text.find(',');
    request.reference_x_slope = slope_value(text.substr(0, comma), text);
    request.reference_tokens_slope = comma == std::string::npos
                                         ? fitting::kNotComputed
                                         : slope_value(text.substr(comma + 1), text);
  }
  const results::Store store =
      results::Store::open(context.db_path, results::Store::Mode::kExisting);
  sweep = store.resolve_sweep(sweep);
  if (request.out_dir.empty())
    request.out_dir = default_output_dir(context.db_path, "figures", sweep);
  orchestrator::check_folder_path(request.out_dir, "--out");
  const analysis::SweepRuns runs = analysis::collect_runs(store, sweep);
  const std::vector<std::string> files = analysis::draw_figures(store, runs, request);
  if (context.json) {
    print_json(
        nlohmann::ordered_json{{"sweep", sweep}, {"out_dir", request.out_dir}, {"files", files}});
  } else {
    for (const auto& path : files)
      std::cout << path << "\n";
  }
  std::cerr << "plot: " << files.size() << " figures of sweep " << sweep << " in "
            << request.out_dir << "\n";
  return 0;
}

}  // namespace

void add_plot_commands(CLI::App& app, CliContext& context) {
  auto flags = std::make_shared<PlotFlags>();
  analysis::PlotRequest& r = flags->request;
  CLI::App* cmd = app.add_subcommand(
      "plot", "Draw a sweep's figures: gnuplot scripts, their data, and PNG, SVG or PDF");
  cmd->add_option("kind",
                  flags->target,
                  "isoflop, frontier, test-time, curves or all; or, the older form, a sweep "
                  "name, for all figures")
      ->capture_default_str();
  cmd->add_option("--sweep", flags->sweep, "sweep name (default: the database's only sweep)");
  cmd->add_option(
      "-o,--out", r.out_dir, "folder for the figures (default: figures/SWEEP beside the database)");
  cmd->add_option("--format", flags->format, "png, svg or pdf (default: png and svg)")
      ->check(CLI::IsMember({"png", "svg", "pdf"}));
  cmd->add_option("--x",
                  r.x,
                  "isoflop, frontier: the swept variable (mu_rec, params, tokens, d_model or a "
                  "column)")
      ->capture_default_str();
  cmd->add_option("--where", r.selection.where, "keep the runs where COLUMN OP VALUE holds");
  cmd->add_option("--group-by", r.selection.group_by, "one isoflop and frontier per value");
  cmd->add_option("--reference-slopes",
                  flags->reference_slopes,
                  "dashed slopes on the frontier: X[,D] for x* and D*, or none (default: 0.40 "
                  "and 0.78, the paper's, for x = mu_rec only)");
  cmd->add_option("--bootstrap", r.bootstrap, "bootstrap resamples for the isoFLOP fit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", r.seed, "bootstrap seed")->capture_default_str();
  cmd->callback(
      [flags, &context] { context.run = [flags, &context] { return run_plot(*flags, context); }; });
}

}  // namespace parcae::cli
