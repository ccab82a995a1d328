// The figures of `parcae-scale plot`: isoFLOP parabolas and the compute-optimal frontier over
// any swept variable (one figure per --group-by group), test-time curves and training curves.
// Each is a Figure (figure.h) rendered through gnuplot by render_figure().
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "analysis/analysis.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

const std::vector<std::string> kKinds = {"isoflop", "frontier", "test-time", "curves", "all"};

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

// How a swept variable reads on an axis, and its symbol.
struct Variable {
  std::string label;
  std::string symbol;
  bool counts = false;  // small integers (ticks 1, 1.5, 2, 3, ...)
};

Variable variable_of(const std::string& column) {
  if (column == "mean_recurrence")
    return {"mean recurrence mu_rec", "mu", true};
  if (column == "params" || column == "parameters_total")
    return {"parameters N", "N", false};
  if (column == "params_effective")
    return {"effective parameters N(mu_rec)", "N", false};
  if (column == "tokens" || column == "train_tokens")
    return {"training tokens D", "D", false};
  if (column == "d_model")
    return {"width d_model", "d", true};
  return {column, column, true};
}

struct Context {
  const results::Store& store;
  const SweepRuns& runs;
  const PlotRequest& request;
  std::vector<std::string> written;

  void render(const Figure& figure) {
    for (const auto& p : render_figure(figure, request.out_dir, request.formats))
      written.push_back(p);
  }
};

std::string title_of(const Context& c, const RowGroup& group) {
  return group.key.empty() ? c.runs.sweep : c.runs.sweep + " (" + group.label() + ")";
}

std::string suffix_of(const RowGroup& group) {
  std::string out;
  for (const auto& [column, value] : group.key)
    out += "_" + safe(column) + "-" + safe(value);
  return out;
}

void plot_isoflop(Context& c, const IsoflopAnalysis& analysis, const IsoflopGroupFit& g) {
  const fitting::IsoflopFit& fit = g.fit;
  const Variable v = variable_of(analysis.x_column);
  const bool mu_axis = analysis.x_column == "mean_recurrence";
  Figure isoflop;
  isoflop.name = "isoflop" + suffix_of(g.group);
  isoflop.title = title_of(c, g.group) + ": validation loss per FLOP budget";
  isoflop.x_label = v.label;
  isoflop.y_label = "validation loss (nats)";
  isoflop.log_x = true;
  double lo = INFINITY, hi = 0;
  int color = 0;
  Series minima;
  minima.title = "minimum (" + v.symbol + "*, L*) with its 1-sigma band";
  minima.style = SeriesStyle::kXErrorBars;
  minima.color = 6;
  Series edges;
  edges.title = "vertex off the grid or no interval";
  edges.style = SeriesStyle::kOpenPoints;
  edges.color = 6;
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
    for (double x : budget.x) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    isoflop.series.push_back(points);
    if (std::isfinite(budget.c2) && !budget.x.empty()) {
      const double x_lo = *std::min_element(budget.x.begin(), budget.x.end());
      const double x_hi = *std::max_element(budget.x.begin(), budget.x.end());
      const double c0 = budget.c0, c1 = budget.c1, c2 = budget.c2;
      isoflop.series.push_back(line_of(
          [=](double x) {
            const double u = std::log(x);
            return c0 + c1 * u + c2 * u * u;
          },
          x_lo,
          x_hi,
          true,
          color));
    }
    if (std::isfinite(budget.x_star) && std::isfinite(budget.loss_star)) {
      const bool bars = budget.status == fitting::FitStatus::kOk &&
                        std::isfinite(budget.x_star_low) && std::isfinite(budget.x_star_high);
      Series& s = bars ? minima : edges;
      s.x.push_back(budget.x_star);
      s.y.push_back(budget.loss_star);
      if (bars) {
        s.low.push_back(budget.x_star_low);
        s.high.push_back(budget.x_star_high);
      }
    }
    ++color;
  }
  if (!minima.x.empty())
    isoflop.series.push_back(minima);
  if (!edges.x.empty())
    isoflop.series.push_back(edges);
  // The mu_rec = 1 controls in their budget's colour, open squares for the fixed-depth one and
  // open circles for the Poisson one, so the two are never read as one point; one legend entry
  // stands for each kind.
  if (mu_axis) {
    struct ControlKind {
      const char* recurrence;
      SeriesStyle style;
      const char* title;
    };
    const ControlKind kinds[] = {
        {"1-fixed", SeriesStyle::kOpenSquares, "mu_rec = 1, fixed depth"},
        {"1-poisson", SeriesStyle::kOpenPoints, "mu_rec = 1, Poisson (charged as T = 1)"}};
    for (const ControlKind& kind : kinds) {
      bool titled = false;
      for (size_t b = 0; b < fit.budgets.size(); ++b) {
        Series control;
        control.style = kind.style;
        control.color = static_cast<int>(b);
        for (const auto& run : c.runs.runs) {
          if (run.control && run.recurrence == kind.recurrence &&
              run.budget_id == fit.budgets[b].budget_id) {
            control.x.push_back(1.0);
            control.y.push_back(run.loss);
            lo = std::min(lo, 1.0);
          }
        }
        if (control.x.empty())
          continue;
        if (!titled)
          control.title = kind.title;
        titled = true;
        isoflop.series.push_back(control);
      }
    }
  }
  if (hi > 0)
    log_axis(lo, hi, 1.12, v.counts, false, &isoflop);
  c.render(isoflop);
}

void plot_frontier(Context& c, const IsoflopAnalysis& analysis, const IsoflopGroupFit& g) {
  const fitting::IsoflopFit& fit = g.fit;
  const Variable v = variable_of(analysis.x_column);
  const bool mu_axis = analysis.x_column == "mean_recurrence";
  const double x_slope = c.request.reference_slopes_set ? c.request.reference_x_slope
                         : mu_axis                      ? kPaperMuExponent
                                                        : fitting::kNotComputed;
  const double tokens_slope = c.request.reference_slopes_set ? c.request.reference_tokens_slope
                              : mu_axis                      ? kPaperTokensExponent
                                                             : fitting::kNotComputed;
  auto figure = [&](const std::string& name,
                    const std::string& what,
                    const std::string& symbol,
                    const fitting::PowerLawFit& law,
                    bool tokens,
                    double reference,
                    bool counts) {
    Figure f;
    f.name = name + suffix_of(g.group);
    f.title =
        fmt::format("{}: compute-optimal {} against the FLOP budget", title_of(c, g.group), what);
    f.x_label = "training FLOPs C";
    f.y_label = fmt::format("{} ({})", what, symbol);
    f.log_x = f.log_y = true;
    f.key = "inside left top";
    Series used, unused;
    used.title = "parabola minima, 1-sigma bars";
    used.style = SeriesStyle::kYErrorBars;
    used.color = 0;
    unused.title = "not in the fit (edge or no minimum)";
    unused.style = SeriesStyle::kOpenPoints;
    unused.color = 1;
    double lo = INFINITY, hi = 0, y_lo = INFINITY, y_hi = 0;
    for (const auto& b : fit.budgets) {
      const double y = tokens ? b.tokens_star : b.x_star;
      if (!std::isfinite(y) || y <= 0)
        continue;
      // The band of x* carried to D* through F: D = C / F(x) falls as x grows.
      double low = b.x_star_low, high = b.x_star_high;
      if (tokens) {
        if (g.tokens_rule == TokensRule::kXIsTokens) {
          // the same band
        } else if (g.flops_per_token && std::isfinite(low)) {
          const double a = b.budget_flops / g.flops_per_token(high);
          const double d = b.budget_flops / g.flops_per_token(low);
          low = std::min(a, d);
          high = std::max(a, d);
        } else {
          low = high = fitting::kNotComputed;
        }
      }
      const bool bars = b.used && std::isfinite(low) && std::isfinite(high);
      Series& s = bars ? used : unused;
      s.x.push_back(b.budget_flops);
      s.y.push_back(y);
      if (bars) {
        s.low.push_back(low);
        s.high.push_back(high);
        y_lo = std::min(y_lo, low);
        y_hi = std::max(y_hi, high);
      }
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
      if (std::isfinite(reference)) {
        // The reference slope through the fitted line at the geometric middle of the budgets.
        const double middle = std::sqrt(lo * hi);
        const double anchor = law.predict(middle);
        Series slope = line_of(
            [&](double x) { return anchor * std::pow(x / middle, reference); }, lo, hi, true, 6);
        slope.style = SeriesStyle::kDashedLines;
        slope.title =
            mu_axis && !c.request.reference_slopes_set
                ? fmt::format("Parcae paper: {} \u221d C^{:.2f} (slope only)", symbol, reference)
                : fmt::format("reference: {} \u221d C^{:.2f} (slope only)", symbol, reference);
        f.series.push_back(slope);
        y_lo = std::min({y_lo, slope.y.front(), slope.y.back()});
        y_hi = std::max({y_hi, slope.y.front(), slope.y.back()});
      }
    }
    if (!used.x.empty())
      f.series.push_back(used);
    if (!unused.x.empty())
      f.series.push_back(unused);
    log_axis(lo, hi, 1.3, false, false, &f);
    log_axis(y_lo, y_hi, 1.15, counts, true, &f);
    c.render(f);
  };
  const std::string x_name = mu_axis ? "mu_star" : safe(analysis.x_column) + "_star";
  figure("frontier_" + x_name,
         mu_axis ? "mean recurrence" : v.label,
         v.symbol + "*",
         fit.x_star_law,
         false,
         x_slope,
         v.counts);
  if (g.tokens_rule != TokensRule::kNone && g.tokens_rule != TokensRule::kXIsTokens) {
    figure("frontier_tokens_star",
           "training tokens",
           "D*",
           fit.tokens_star_law,
           true,
           tokens_slope,
           false);
  }
}

std::map<std::string, std::vector<const RunResult*>> runs_by_budget(const SweepRuns& runs) {
  std::map<std::string, std::vector<const RunResult*>> by_budget;
  for (const auto& run : runs.runs)
    by_budget[run.budget_id.empty() ? "all" : run.budget_id].push_back(&run);
  return by_budget;
}

std::string run_label(const SweepRuns& runs, const RunResult& run) {
  const bool several_models =
      std::any_of(runs.runs.begin(), runs.runs.end(), [&](const RunResult& other) {
        return other.model_label != run.model_label;
      });
  const std::string mu = run.recurrence == "1-fixed" ? std::string("mu_rec = 1 fixed")
                         : run.recurrence == "1-poisson"
                             ? std::string("mu_rec = 1 poisson")
                             : fmt::format("mu_rec = {}", run.mean_recurrence);
  return several_models ? run.model_label + ", " + mu : mu;
}

void plot_test_time(Context& c) {
  for (const auto& [budget, members] : runs_by_budget(c.runs)) {
    Figure test_time;
    test_time.name = "test_time_" + safe(budget);
    test_time.title =
        fmt::format("{}: loss against test-time depth T, C = {}", c.runs.sweep, budget);
    test_time.x_label = "test-time recurrence T";
    test_time.y_label = "validation loss (nats)";
    int color = 0;
    std::set<double> depths;
    for (const auto* run : members) {
      if (run->loss_at_depth.size() >= 2) {
        Series points;
        points.title = run_label(c.runs, *run);
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
    curves.title = fmt::format("{}: training loss, C = {}", c.runs.sweep, budget);
    curves.x_label = "training tokens";
    curves.y_label = "training loss (nats)";
    curves.log_x = true;
    int color = 0;
    double lo = INFINITY, hi = 0;
    for (const auto* run : members) {
      Series curve;
      curve.title = run_label(c.runs, *run);
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

bool has_budgets(const SweepRuns& runs) {
  return std::any_of(runs.runs.begin(), runs.runs.end(), [](const RunResult& run) {
    return !run.budget_id.empty() && !run.control;
  });
}

}  // namespace

std::vector<std::string> draw_figures(const results::Store& store,
                                      const SweepRuns& runs,
                                      const PlotRequest& request) {
  const std::string& kind = request.kind;
  if (std::find(kKinds.begin(), kKinds.end(), kind) == kKinds.end())
    throw InputError("", "KIND", kind, "expected isoflop, frontier, test-time, curves or all");
  if (runs.runs.empty())
    throw InputError(store.path(), "sweep", runs.sweep, "has no finished runs to plot");
  Context c{store, runs, request, {}};
  const bool all = kind == "all";
  if (kind == "isoflop" || kind == "frontier" || (all && has_budgets(runs))) {
    if (!has_budgets(runs)) {
      throw InputError(store.path(),
                       "sweep",
                       runs.sweep,
                       "has no finished runs with a FLOP budget",
                       "isoflop and frontier figures need an isoFLOP sweep");
    }
    Source source;
    source.runs = &runs;
    source.table = runs_table(runs);
    IsoflopRequest iso;
    iso.x = request.x;
    iso.selection = request.selection;
    iso.options.bootstrap_resamples = request.bootstrap;
    iso.options.seed = request.seed;
    iso.options.ci_level = request.ci;
    double lo = INFINITY, hi = 0;
    for (const auto& run : runs.runs) {
      if (run.budget_flops > 0) {
        lo = std::min(lo, run.budget_flops);
        hi = std::max(hi, run.budget_flops);
      }
    }
    for (int i = 0; i <= 60 && hi > 0; ++i)
      iso.options.prediction_budgets.push_back(lo * std::pow(hi / lo, i / 60.0));
    const IsoflopAnalysis analysis = analyse_isoflop(source, iso);
    for (const auto& g : analysis.groups) {
      if (all || kind == "isoflop")
        plot_isoflop(c, analysis, g);
      if (all || kind == "frontier")
        plot_frontier(c, analysis, g);
    }
  }
  if (all || kind == "test-time")
    plot_test_time(c);
  if (all || kind == "curves")
    plot_curves(c);
  if (c.written.empty())
    throw InputError(store.path(), "sweep", runs.sweep, "has no data for the " + kind + " figures");
  return c.written;
}

}  // namespace parcae::analysis
