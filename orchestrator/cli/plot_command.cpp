// `parcae-scale plot KIND --sweep NAME -o DIR [--format svg|png|pdf]`: a sweep's figures as gnuplot
// scripts, data and images. Kinds:
//   isoflop    loss against mu_rec per budget, with the fitted parabolas and their minima
//   frontier   mu* and D* against C (log-log) with the fitted power law, its bootstrap band, and
//              the paper's exponents (0.40 for mu_rec, 0.78 for tokens) as dashed references
//   test-time  L(T) per run with its saturating exponential, one figure per budget
//   curves     training loss against tokens, one figure per budget
//   all        every kind that the sweep's data allow
// The older form `plot NAME --out DIR` draws all of them.
#include <algorithm>
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

// [P]'s exponents of the compute-optimal frontier (scaling-laws.md §9): mu* ~ C^0.40, D* ~ C^0.78.
constexpr double kPaperMuExponent = 0.40;
constexpr double kPaperTokensExponent = 0.78;

const std::vector<std::string> kKinds = {"isoflop", "frontier", "test-time", "curves", "all"};

struct PlotOptions {
  std::string target;  // KIND with --sweep, else the sweep name (the older form)
  std::string sweep;
  std::string out_dir;
  std::string format;  // empty: png and svg
  int bootstrap = 1000;
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

// "1e+18" as "1e18", for tick labels and legends.
std::string short_number(double v) {
  std::string s = fmt::format("{:.3g}", v);
  const auto e = s.find("e+");
  if (e != std::string::npos) {
    s.erase(e + 1, 1);
    while (s.size() > e + 2 && s[e + 1] == '0')
      s.erase(e + 1, 1);
  }
  return s;
}

// Ticks 1, 2, 5 x 10^k (for a count such as mu_rec: 1, 1.5, 2, 3, 4, 6, 8 x 10^k) inside
// [lo, hi], labelled "5e11" or "6": on a log axis spanning a decade or two, gnuplot's own ticks
// would label one or two powers of ten only.
void log_ticks(double lo,
               double hi,
               bool counts,
               std::vector<double>* ticks,
               std::vector<std::string>* labels) {
  // A narrow range (less than a factor of about 3) gets every integer mantissa instead.
  const std::vector<std::vector<double>> choices = {
      counts ? std::vector<double>{1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0}
             : std::vector<double>{1.0, 2.0, 5.0},
      {1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0}};
  for (const auto& mantissas : choices) {
    ticks->clear();
    labels->clear();
    for (int e = static_cast<int>(std::floor(std::log10(lo))) - 1;
         e <= static_cast<int>(std::ceil(std::log10(hi))) + 1;
         ++e) {
      for (double m : mantissas) {
        const double t = m * std::pow(10.0, e);
        if (t >= lo && t <= hi) {
          ticks->push_back(t);
          labels->push_back(short_number(t));
        }
      }
    }
    if (ticks->size() >= 3)
      return;
  }
}

// The range of a log axis, [lo, hi] widened by the factor pad on each side, with its ticks.
void log_axis(double lo, double hi, double pad, bool counts, bool y_axis, Figure* f) {
  lo /= pad;
  hi *= pad;
  if (y_axis) {
    f->y_min = lo;
    f->y_max = hi;
    log_ticks(lo, hi, counts, &f->y_tics, &f->y_tic_labels);
  } else {
    f->x_min = lo;
    f->x_max = hi;
    log_ticks(lo, hi, counts, &f->x_tics, &f->x_tic_labels);
  }
}

struct Context {
  const results::Store& store;
  const orchestrator::SweepRuns& runs;
  const PlotOptions& options;
  std::vector<std::string> formats;
  std::vector<std::string> written;

  void render(const Figure& figure) {
    for (const auto& p : orchestrator::render_figure(figure, options.out_dir, formats))
      written.push_back(p);
  }
};

bool has_budgets(const orchestrator::SweepRuns& runs) {
  for (const auto& run : runs.runs) {
    if (!run.budget_id.empty() && !run.fixed_depth && run.model.is_looped())
      return true;
  }
  return false;
}

// The isoFLOP fit of the figures, with x*(C) and D*(C) predicted on a grid of budgets for the
// frontier's band.
fitting::IsoflopFit isoflop_fit(const Context& c) {
  fitting::IsoflopOptions options;
  options.bootstrap_resamples = c.options.bootstrap;
  options.seed = c.options.seed;
  double lo = INFINITY, hi = 0;
  for (const auto& run : c.runs.runs) {
    if (run.budget_flops > 0) {
      lo = std::min(lo, run.budget_flops);
      hi = std::max(hi, run.budget_flops);
    }
  }
  for (int i = 0; i <= 60 && hi > 0; ++i)
    options.prediction_budgets.push_back(lo * std::pow(hi / lo, i / 60.0));
  return orchestrator::fit_sweep_isoflop(c.runs, options);
}

void plot_isoflop(Context& c, const fitting::IsoflopFit& fit) {
  Figure isoflop;
  isoflop.name = "isoflop";
  isoflop.title = c.options.sweep + ": validation loss at T = mu_rec per FLOP budget";
  isoflop.x_label = "mean recurrence mu_rec";
  isoflop.y_label = "validation loss (nats)";
  isoflop.log_x = true;
  std::set<double> mus;
  int color = 0;
  Series minima;
  minima.title = "minimum (mu*, L*)";
  minima.style = SeriesStyle::kOpenPoints;
  minima.color = 6;
  for (const auto& budget : fit.budgets) {
    Series points;
    points.title = fmt::format("C = {}{}",
                               budget.budget_id,
                               budget.status == fitting::FitStatus::kOk
                                   ? ""
                                   : fmt::format(" ({})", fitting::to_string(budget.status)));
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
      minima.x.push_back(budget.x_star);
      minima.y.push_back(budget.loss_star);
    }
    ++color;
  }
  if (!minima.x.empty())
    isoflop.series.push_back(minima);
  // The fixed-depth controls at mu_rec = 1, as open squares in their budget's colour; one legend
  // entry stands for all of them.
  std::map<std::string, int> color_of;
  for (size_t b = 0; b < fit.budgets.size(); ++b)
    color_of[fit.budgets[b].budget_id] = static_cast<int>(b);
  bool titled = false;
  for (const auto& budget : fit.budgets) {
    Series fixed;
    fixed.style = SeriesStyle::kOpenSquares;
    fixed.color = color_of[budget.budget_id];
    for (const auto& run : c.runs.runs) {
      if (run.fixed_depth && run.budget_id == budget.budget_id) {
        fixed.x.push_back(1.0);
        fixed.y.push_back(run.loss);
        mus.insert(1.0);
      }
    }
    if (fixed.x.empty())
      continue;
    if (!titled)
      fixed.title = "mu_rec = 1, fixed depth";
    titled = true;
    isoflop.series.push_back(fixed);
  }
  isoflop.x_tics.assign(mus.begin(), mus.end());
  isoflop.x_min = *mus.begin() / 1.12;
  isoflop.x_max = *mus.rbegin() * 1.12;
  c.render(isoflop);
}

void plot_frontier(Context& c, const fitting::IsoflopFit& fit) {
  auto figure = [&](const std::string& name,
                    const std::string& what,
                    const std::string& symbol,
                    const fitting::PowerLawFit& law,
                    bool tokens,
                    double paper_exponent) {
    Figure f;
    f.name = name;
    f.title = fmt::format("{}: compute-optimal {} against the FLOP budget", c.options.sweep, what);
    f.x_label = "training FLOPs C";
    f.y_label = fmt::format("{} ({})", what, symbol);
    f.log_x = f.log_y = true;
    f.key = "inside left top";
    Series used, unused;
    used.title = "parabola minima";
    used.color = 0;
    unused.title = "not in the fit (edge or no minimum)";
    unused.style = SeriesStyle::kOpenPoints;
    unused.color = 1;
    double lo = INFINITY, hi = 0, y_lo = INFINITY, y_hi = 0;
    for (const auto& b : fit.budgets) {
      const double y = tokens ? b.tokens_star : b.x_star;
      if (!std::isfinite(y) || y <= 0)
        continue;
      Series& s = b.used ? used : unused;
      s.x.push_back(b.budget_flops);
      s.y.push_back(y);
      lo = std::min(lo, b.budget_flops);
      hi = std::max(hi, b.budget_flops);
      y_lo = std::min(y_lo, y);
      y_hi = std::max(y_hi, y);
    }
    if (used.x.empty() && unused.x.empty())
      return;
    if (law.status == fitting::FitStatus::kOk) {
      Series band;
      band.style = SeriesStyle::kBand;
      band.color = 0;
      band.title = fmt::format("{:g}% bootstrap band", 100 * fit.ci_level);
      for (const auto& p : fit.predictions) {
        const double low = tokens ? p.tokens_ci_low : p.ci_low;
        const double high = tokens ? p.tokens_ci_high : p.ci_high;
        if (std::isfinite(low) && std::isfinite(high)) {
          band.x.push_back(p.budget_flops);
          band.y.push_back(low);
          band.y_high.push_back(high);
          y_lo = std::min(y_lo, low);
          y_hi = std::max(y_hi, high);
        }
      }
      if (!band.x.empty())
        f.series.push_back(band);
      const auto& a = fit.coefficient(tokens ? "a_D" : "a");
      Series line = line_of([&](double x) { return law.predict(x); }, lo, hi, true, 0);
      line.title =
          std::isfinite(a.ci_low)
              ? fmt::format("fit: {} \u221d C^{:.3f}, {:g}% CI [{:.3f}, {:.3f}]",
                            symbol,
                            law.exponent,
                            100 * fit.ci_level,
                            a.ci_low,
                            a.ci_high)
              : fmt::format(
                    "fit: {} \u221d C^{:.3f} \u00b1 {:.3f}", symbol, law.exponent, law.exponent_se);
      f.series.push_back(line);
      // The paper's slope through the fitted line at the geometric middle of the budgets.
      const double middle = std::sqrt(lo * hi);
      const double anchor = law.predict(middle);
      Series paper = line_of(
          [&](double x) { return anchor * std::pow(x / middle, paper_exponent); }, lo, hi, true, 6);
      paper.style = SeriesStyle::kDashedLines;
      paper.title =
          fmt::format("Parcae paper: {} \u221d C^{:.2f} (slope only)", symbol, paper_exponent);
      f.series.push_back(paper);
      y_lo = std::min(y_lo, paper.y.front());
      y_hi = std::max(y_hi, paper.y.back());
    }
    f.series.push_back(used);
    if (!unused.x.empty())
      f.series.push_back(unused);
    log_axis(lo, hi, 1.3, false, false, &f);
    log_axis(y_lo, y_hi, 1.15, !tokens, true, &f);
    c.render(f);
  };
  figure("frontier_mu_star", "mean recurrence", "mu*", fit.x_star_law, false, kPaperMuExponent);
  figure("frontier_tokens_star",
         "training tokens",
         "D*",
         fit.tokens_star_law,
         true,
         kPaperTokensExponent);
}

std::map<std::string, std::vector<const orchestrator::RunResult*>> runs_by_budget(
    const orchestrator::SweepRuns& runs) {
  std::map<std::string, std::vector<const orchestrator::RunResult*>> by_budget;
  for (const auto& run : runs.runs)
    by_budget[run.budget_id.empty() ? "all" : run.budget_id].push_back(&run);
  return by_budget;
}

std::string run_label(const orchestrator::RunResult& run) {
  return run.fixed_depth ? "mu_rec = 1 fixed" : fmt::format("mu_rec = {}", run.mean_recurrence);
}

void plot_test_time(Context& c) {
  for (const auto& [budget, members] : runs_by_budget(c.runs)) {
    Figure test_time;
    test_time.name = "test_time_" + safe(budget);
    test_time.title =
        fmt::format("{}: loss against test-time depth T, C = {}", c.options.sweep, budget);
    test_time.x_label = "test-time recurrence T";
    test_time.y_label = "validation loss (nats)";
    int color = 0;
    std::set<double> depths;
    for (const auto* run : members) {
      if (run->loss_at_depth.size() >= 2) {
        Series points;
        points.title = run_label(*run);
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
      ++color;
    }
    test_time.x_tics.assign(depths.begin(), depths.end());
    if (!test_time.series.empty())
      c.render(test_time);
  }
}

void plot_curves(Context& c) {
  for (const auto& [budget, members] : runs_by_budget(c.runs)) {
    Figure curves;
    curves.name = "curves_" + safe(budget);
    curves.title = fmt::format("{}: training loss, C = {}", c.options.sweep, budget);
    curves.x_label = "training tokens";
    curves.y_label = "training loss (nats)";
    curves.log_x = true;
    int color = 0;
    double lo = INFINITY, hi = 0;
    for (const auto* run : members) {
      Series curve;
      curve.title = run_label(*run);
      curve.style = SeriesStyle::kLines;
      curve.color = color++;
      for (const auto& point : c.store.curve(run->job_id)) {
        if (point.loss && point.tokens > 0) {
          curve.x.push_back(static_cast<double>(point.tokens));
          curve.y.push_back(*point.loss);
        }
      }
      if (!curve.x.empty()) {
        lo = std::min(lo, curve.x.front());
        hi = std::max(hi, curve.x.back());
        curves.series.push_back(curve);
      }
    }
    if (!curves.series.empty()) {
      log_axis(lo, hi, 1.05, false, false, &curves);
      c.render(curves);
    }
  }
}

int run_plot(PlotOptions o, const CliContext& context) {
  std::string kind = "all";
  if (o.sweep.empty()) {
    if (std::find(kKinds.begin(), kKinds.end(), o.target) != kKinds.end()) {
      throw InputError(
          "", "--sweep", "(missing)", "expected --sweep NAME after the kind " + o.target);
    }
    o.sweep = o.target;  // the older form: plot NAME --out DIR
  } else {
    kind = o.target;
    if (std::find(kKinds.begin(), kKinds.end(), kind) == kKinds.end()) {
      throw InputError("", "KIND", kind, "expected isoflop, frontier, test-time, curves or all");
    }
  }
  if (o.out_dir.empty())
    throw InputError("", "-o/--out", "(missing)", "expected the folder for the figures");

  const results::Store store =
      results::Store::open(context.db_path, results::Store::Mode::kExisting);
  const orchestrator::SweepRuns runs = orchestrator::collect_runs(store, o.sweep);
  if (runs.runs.empty())
    throw InputError(context.db_path, "sweep", o.sweep, "has no finished runs to plot");
  Context c{store, runs, o, {}, {}};
  c.formats = o.format.empty() ? std::vector<std::string>{"png", "svg"}
                               : std::vector<std::string>{o.format};

  const bool all = kind == "all";
  if (kind == "isoflop" || kind == "frontier" || (all && has_budgets(runs))) {
    if (!has_budgets(runs)) {
      throw InputError(context.db_path,
                       "sweep",
                       o.sweep,
                       "has no finished looped runs with a FLOP budget",
                       "isoflop and frontier figures need an isoFLOP sweep over mu_rec");
    }
    const fitting::IsoflopFit fit = isoflop_fit(c);
    if (all || kind == "isoflop")
      plot_isoflop(c, fit);
    if (all || kind == "frontier")
      plot_frontier(c, fit);
  }
  if (all || kind == "test-time")
    plot_test_time(c);
  if (all || kind == "curves")
    plot_curves(c);
  if (c.written.empty()) {
    throw InputError(context.db_path, "sweep", o.sweep, "has no data for the " + kind + " figures");
  }
  for (const auto& path : c.written)
    std::cout << path << "\n";
  return 0;
}

}  // namespace

void add_plot_commands(CLI::App& app, CliContext& context) {
  auto o = std::make_shared<PlotOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plot", "Draw a sweep's figures: gnuplot scripts, their data, and PNG, SVG or PDF");
  cmd->add_option("kind",
                  o->target,
                  "isoflop, frontier, test-time, curves or all (with --sweep); without --sweep, "
                  "the sweep name, for all figures")
      ->required();
  cmd->add_option("--sweep", o->sweep, "sweep name in the database");
  cmd->add_option("-o,--out", o->out_dir, "folder for the figures")->required();
  cmd->add_option("--format", o->format, "png, svg or pdf (default: png and svg)")
      ->check(CLI::IsMember({"png", "svg", "pdf"}));
  cmd->add_option("--bootstrap", o->bootstrap, "bootstrap resamples for the isoFLOP fit")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "bootstrap seed")->capture_default_str();
  cmd->callback([o, &context] { context.run = [o, &context] { return run_plot(*o, context); }; });
}

}  // namespace parcae::cli
