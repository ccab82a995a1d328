// `parcae-scale plot SWEEP --out DIR`: the study's figures as gnuplot scripts, data, PNG and SVG.
// isoflop (loss against mu_rec per budget, with the fitted parabolas), mu_star and tokens_star
// (the optima against C with their power laws), test_time_<budget> (L(T) per run with its
// saturating exponential) and curves_<budget> (training loss against tokens).
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "orchestrator/analysis.h"
#include "orchestrator/cli/cli_context.h"
#include "orchestrator/plots.h"
#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

using orchestrator::Figure;
using orchestrator::Series;
using orchestrator::SeriesStyle;

struct PlotOptions {
  std::string sweep;
  std::string out_dir;
  int bootstrap = 200;
  uint64_t seed = 42;
};

std::string safe(const std::string& id) {
  std::string out;
  for (char c : id)
    out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '_';
  return out;
}

Series line_of(
    const std::function<double(double)>& f, double lo, double hi, bool log_x, int color) {
  Series s;
  s.style = SeriesStyle::kLines;
  s.color = color;
  for (int i = 0; i <= 120; ++i) {
    const double t = static_cast<double>(i) / 120;
    const double x = log_x ? lo * std::pow(hi / lo, t) : lo + (hi - lo) * t;
    s.x.push_back(x);
    s.y.push_back(f(x));
  }
  return s;
}

std::vector<std::string> plot_isoflop(const orchestrator::SweepRuns& runs,
                                      const fitting::IsoflopFit& fit,
                                      const std::string& sweep,
                                      const std::string& dir) {
  std::vector<std::string> written;
  Figure isoflop;
  isoflop.name = "isoflop";
  isoflop.title = sweep + ": final validation loss at T = mu_rec, per FLOP budget";
  isoflop.x_label = "mean recurrence mu_rec (log scale)";
  isoflop.y_label = "validation loss (nats)";
  isoflop.log_x = true;
  std::set<double> mus;
  int color = 0;
  for (const auto& budget : fit.budgets) {
    Series points;
    points.title = fmt::format("C = {} ({})", budget.budget_id, fitting::to_string(budget.status));
    points.color = color;
    points.x = budget.x;
    points.y = budget.loss;
    for (double x : budget.x)
      mus.insert(x);
    isoflop.series.push_back(points);
    if (std::isfinite(budget.c2) && !budget.x.empty()) {
      const double lo = *std::min_element(budget.x.begin(), budget.x.end());
      const double hi = *std::max_element(budget.x.begin(), budget.x.end());
      const double c0 = budget.c0, c1 = budget.c1, c2 = budget.c2;
      isoflop.series.push_back(line_of(
          [=](double x) {
            const double u = std::log(x);
            return c0 + c1 * u + c2 * u * u;
          },
          lo,
          hi,
          true,
          color));
    }
    if (std::isfinite(budget.x_star) && budget.status == fitting::FitStatus::kOk) {
      Series star;
      star.style = SeriesStyle::kLinesPoints;
      star.color = color;
      star.x = {budget.x_star};
      star.y = {budget.loss_star};
      isoflop.series.push_back(star);
    }
    ++color;
  }
  Series fixed;
  fixed.title = "mu_rec = 1 fixed";
  fixed.color = 6;
  for (const auto& run : runs.runs) {
    if (!run.fixed_depth)
      continue;
    fixed.x.push_back(1.0);
    fixed.y.push_back(run.loss);
    mus.insert(1.0);
  }
  if (!fixed.x.empty())
    isoflop.series.push_back(fixed);
  isoflop.x_tics.assign(mus.begin(), mus.end());
  for (const auto& p : orchestrator::render_figure(isoflop, dir))
    written.push_back(p);

  auto law_figure = [&](const std::string& name,
                        const std::string& what,
                        const fitting::PowerLawFit& law,
                        bool tokens) {
    Figure f;
    f.name = name;
    f.title = fmt::format("{}: {} against the FLOP budget", sweep, what);
    f.x_label = "training FLOPs C";
    f.y_label = what;
    f.log_x = f.log_y = true;
    Series used, unused;
    used.title = "parabola minima";
    used.color = 0;
    unused.title = "not in the fit (edge or no minimum)";
    unused.color = 1;
    double lo = INFINITY, hi = 0;
    for (const auto& b : fit.budgets) {
      const double y = tokens ? b.tokens_star : b.x_star;
      if (!std::isfinite(y) || y <= 0)
        continue;
      (b.used ? used : unused).x.push_back(b.budget_flops);
      (b.used ? used : unused).y.push_back(y);
      lo = std::min(lo, b.budget_flops);
      hi = std::max(hi, b.budget_flops);
    }
    f.series.push_back(used);
    if (!unused.x.empty())
      f.series.push_back(unused);
    if (law.status == fitting::FitStatus::kOk && hi > 0) {
      Series line = line_of([&](double c) { return law.predict(c); }, lo, hi, true, 0);
      line.title = fmt::format(
          "fit: {:.3g} C^{:.3f} (+/- {:.3f})", law.predict(1.0), law.exponent, law.exponent_se);
      f.series.push_back(line);
    }
    if (used.x.empty() && unused.x.empty())
      return;
    for (const auto& p : orchestrator::render_figure(f, dir))
      written.push_back(p);
  };
  law_figure("mu_star", "optimal mean recurrence mu*", fit.x_star_law, false);
  law_figure("tokens_star", "optimal tokens D*", fit.tokens_star_law, true);
  return written;
}

std::vector<std::string> plot_runs(const results::Store& store,
                                   const orchestrator::SweepRuns& runs,
                                   const std::string& sweep,
                                   const std::string& dir) {
  std::vector<std::string> written;
  std::map<std::string, std::vector<const orchestrator::RunResult*>> by_budget;
  for (const auto& run : runs.runs)
    by_budget[run.budget_id.empty() ? "all" : run.budget_id].push_back(&run);
  for (const auto& [budget, members] : by_budget) {
    Figure test_time;
    test_time.name = "test_time_" + safe(budget);
    test_time.title = fmt::format("{}: loss against test-time depth T, C = {}", sweep, budget);
    test_time.x_label = "test-time loop count T";
    test_time.y_label = "validation loss (nats)";
    Figure curves;
    curves.name = "curves_" + safe(budget);
    curves.title = fmt::format("{}: training loss, C = {}", sweep, budget);
    curves.x_label = "tokens";
    curves.y_label = "training loss (nats)";
    curves.log_x = true;
    int color = 0;
    std::set<double> depths;
    for (const auto* run : members) {
      const std::string label =
          run->fixed_depth ? "mu_rec = 1 fixed" : fmt::format("mu_rec = {}", run->mean_recurrence);
      if (run->loss_at_depth.size() >= 2) {
        Series points;
        points.title = label;
        points.color = color;
        for (const auto& [t, l] : run->loss_at_depth) {
          points.x.push_back(t);
          points.y.push_back(l);
          depths.insert(t);
        }
        test_time.series.push_back(points);
        if (run->loss_at_depth.size() >= 4) {
          fitting::SatExpOptions options;
          options.mean_recurrence = run->mean_recurrence;
          const fitting::SatExpFit fit = fitting::fit_satexp(points.x, points.y, options);
          if (fit.status == fitting::FitStatus::kOk || fit.status == fitting::FitStatus::kFlat) {
            test_time.series.push_back(line_of([&](double t) { return fit.predict(t); },
                                               points.x.front(),
                                               points.x.back(),
                                               false,
                                               color));
          }
        }
      }
      Series curve;
      curve.title = label;
      curve.style = SeriesStyle::kLines;
      curve.color = color;
      for (const auto& point : store.curve(run->job_id)) {
        if (point.loss && point.tokens > 0) {
          curve.x.push_back(static_cast<double>(point.tokens));
          curve.y.push_back(*point.loss);
        }
      }
      if (!curve.x.empty())
        curves.series.push_back(curve);
      ++color;
    }
    test_time.x_tics.assign(depths.begin(), depths.end());
    if (!test_time.series.empty()) {
      for (const auto& p : orchestrator::render_figure(test_time, dir))
        written.push_back(p);
    }
    if (!curves.series.empty()) {
      for (const auto& p : orchestrator::render_figure(curves, dir))
        written.push_back(p);
    }
  }
  return written;
}

int run_plot(const PlotOptions& o, const CliContext& context) {
  const results::Store store =
      results::Store::open(context.db_path, results::Store::Mode::kExisting);
  const orchestrator::SweepRuns runs = orchestrator::collect_runs(store, o.sweep);
  if (runs.runs.empty()) {
    throw InputError(context.db_path, "sweep", o.sweep, "has no finished runs to plot");
  }
  std::vector<std::string> written;
  bool has_budgets = false;
  for (const auto& run : runs.runs)
    has_budgets = has_budgets || (!run.budget_id.empty() && !run.fixed_depth);
  if (has_budgets) {
    fitting::IsoflopOptions options;
    options.bootstrap_resamples = o.bootstrap;
    options.seed = o.seed;
    const fitting::IsoflopFit fit = orchestrator::fit_sweep_isoflop(runs, options);
    for (const auto& p : plot_isoflop(runs, fit, o.sweep, o.out_dir))
      written.push_back(p);
  }
  for (const auto& p : plot_runs(store, runs, o.sweep, o.out_dir))
    written.push_back(p);
  for (const auto& path : written)
    std::cout << path << "\n";
  return 0;
}

}  // namespace

void add_plot_commands(CLI::App& app, CliContext& context) {
  auto o = std::make_shared<PlotOptions>();
  CLI::App* cmd = app.add_subcommand("plot", "Draw a sweep's figures (gnuplot scripts, PNG, SVG)");
  cmd->add_option("sweep", o->sweep, "sweep name in the database")->required();
  cmd->add_option("--out", o->out_dir, "folder for the figures")->required();
  cmd->add_option("--bootstrap", o->bootstrap, "bootstrap resamples for the isoFLOP fit")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "bootstrap seed")->capture_default_str();
  cmd->callback([o, &context] { context.run = [o, &context] { return run_plot(*o, context); }; });
}

}  // namespace parcae::cli
