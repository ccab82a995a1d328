// The isoFLOP analysis of §2 (Approach 2 of Hoffmann et al.): group runs by budget, fit a centred
// parabola of loss in ln x to each budget's window, take its vertex with a delta-method sigma,
// turn x* into D*, fit x*, D* and L* against C, and bootstrap the exponents by resampling
// residuals (or runs) inside each budget.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include <Eigen/Dense>

#include "fitting/detail/checks.h"
#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

constexpr double kBudgetUnit = 1e18;  // k18 = k * (1e18)^a, the prefactor for C in units of 1e18

// L = d0 + d1 v + d2 v^2 with v = u - center, fitted by least squares. projection maps the losses
// to (d0, d1, d2), so refits on the same design (the residual bootstrap) are one product.
struct Parabola {
  double center = 0.0;
  Eigen::Vector3d d = Eigen::Vector3d::Zero();
  Eigen::Matrix3d xtx_inverse = Eigen::Matrix3d::Zero();
  Eigen::MatrixXd projection;  // 3 x n
  double rss = 0.0;
  int n = 0;
  double span = 0.0;  // max v - min v

  double c0() const { return d[0] - d[1] * center + d[2] * center * center; }
  double c1() const { return d[1] - 2.0 * d[2] * center; }
  double c2() const { return d[2]; }
};

int count_distinct(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return static_cast<int>(std::unique(values.begin(), values.end()) - values.begin());
}

// Needs >= 3 distinct u (checked by the caller).
Parabola fit_parabola(const std::vector<double>& u, const std::vector<double>& y) {
  Parabola p;
  p.n = static_cast<int>(u.size());
  double sum = 0.0;
  for (double value : u) {
    sum += value;
  }
  p.center = sum / p.n;
  Eigen::MatrixXd design(p.n, 3);
  Eigen::VectorXd losses(p.n);
  for (int i = 0; i < p.n; ++i) {
    const double v = u[i] - p.center;
    design(i, 0) = 1.0;
    design(i, 1) = v;
    design(i, 2) = v * v;
    losses[i] = y[i];
  }
  const auto [low, high] = std::minmax_element(u.begin(), u.end());
  p.span = *high - *low;
  p.xtx_inverse = (design.transpose() * design).ldlt().solve(Eigen::Matrix3d::Identity());
  p.projection = p.xtx_inverse * design.transpose();
  p.d = p.projection * losses;
  p.rss = (design * p.d - losses).squaredNorm();
  return p;
}

// c2 <= 0 up to rounding: constant losses give d2 of order 1e-17 rather than exactly 0.
bool opens_upwards(double d2, double span, double loss_scale) {
  const double rounding =
      64.0 * std::numeric_limits<double>::epsilon() * loss_scale / std::max(span * span, 1e-300);
  return d2 > rounding;
}

// sigma of the vertex u* = center - d1 / (2 d2) by the delta method (§2 step 5).
double vertex_sigma(const Parabola& p) {
  if (p.n < 4) {
    return kNotComputed;
  }
  const double s2 = p.rss / (p.n - 3);
  const Eigen::Vector3d g(0.0, -1.0 / (2.0 * p.d[2]), p.d[1] / (2.0 * p.d[2] * p.d[2]));
  return std::sqrt(std::max(0.0, s2 * g.dot(p.xtx_inverse * g)));
}

// Indices into the x-sorted runs of a budget that form its window (§2 step 2).
std::pair<int, int> window_range(const std::vector<double>& sorted_loss, int neighbours) {
  const int n = static_cast<int>(sorted_loss.size());
  if (neighbours < 0) {
    if (n <= 7) {
      return {0, n};
    }
    neighbours = 3;
  }
  const int argmin = static_cast<int>(std::min_element(sorted_loss.begin(), sorted_loss.end()) -
                                      sorted_loss.begin());
  return {std::max(0, argmin - neighbours), std::min(n, argmin + neighbours + 1)};
}

double tokens_at(const IsoflopOptions& options, double budget_flops, double x_star) {
  if (options.x_is_tokens) {
    return x_star;
  }
  if (!options.flops_per_token) {
    return kNotComputed;
  }
  // A parabola that barely opens upwards (often so in a bootstrap replicate of a flat, noisy
  // budget) puts its vertex out at infinity, or where no finite step costs it: no D* there.
  if (!std::isfinite(x_star)) {
    return kNotComputed;
  }
  const double flops = options.flops_per_token(x_star);
  if (std::isinf(flops) && flops > 0.0) {
    return kNotComputed;
  }
  if (!(flops > 0.0) || !std::isfinite(flops)) {
    throw InputError("options.flops_per_token(" + detail::format_number(x_star) + ")",
                     flops,
                     "expected a positive, finite number of FLOPs per token");
  }
  return budget_flops / flops;
}

// ln y = ln k + a ln x, unweighted, for the bootstrap's inner loop.
void fit_line(const std::vector<double>& lx,
              const std::vector<double>& ly,
              double* slope,
              double* intercept) {
  const double n = static_cast<double>(lx.size());
  double mx = 0.0, my = 0.0;
  for (std::size_t i = 0; i < lx.size(); ++i) {
    mx += lx[i];
    my += ly[i];
  }
  mx /= n;
  my /= n;
  double sxx = 0.0, sxy = 0.0;
  for (std::size_t i = 0; i < lx.size(); ++i) {
    sxx += (lx[i] - mx) * (lx[i] - mx);
    sxy += (lx[i] - mx) * (ly[i] - my);
  }
  *slope = sxy / sxx;
  *intercept = my - *slope * mx;
}

void analyse_budget(BudgetMinimum& budget,
                    const std::vector<IsoflopRun>& runs,
                    const IsoflopOptions& options) {
  std::vector<IsoflopRun> finite;
  for (const IsoflopRun& run : runs) {
    if (std::isfinite(run.loss)) {
      finite.push_back(run);
    } else {
      ++budget.dropped_runs;
    }
  }
  budget.runs = static_cast<int>(finite.size());
  std::stable_sort(finite.begin(), finite.end(), [](const IsoflopRun& l, const IsoflopRun& r) {
    return l.x < r.x;
  });
  std::vector<double> sorted_loss;
  for (const IsoflopRun& run : finite) {
    sorted_loss.push_back(run.loss);
  }
  const auto [first, last] = finite.empty() ? std::pair<int, int>{0, 0}
                                            : window_range(sorted_loss, options.window_neighbours);
  std::vector<double> u;
  std::vector<double> log_tokens;
  bool all_tokens = true;
  for (int i = first; i < last; ++i) {
    budget.x.push_back(finite[i].x);
    budget.loss.push_back(finite[i].loss);
    u.push_back(std::log(finite[i].x));
    all_tokens = all_tokens && std::isfinite(finite[i].tokens);
    log_tokens.push_back(std::log(finite[i].tokens));
  }

  const int distinct = count_distinct(u);
  if (distinct < 3) {
    budget.status = FitStatus::kFailed;
    budget.message = std::to_string(distinct) + " distinct x among " + std::to_string(budget.runs) +
                     " finite-loss runs; a parabola needs at least 3";
    return;
  }

  const Parabola p = fit_parabola(u, budget.loss);
  budget.c0 = p.c0();
  budget.c1 = p.c1();
  budget.c2 = p.c2();
  budget.rss = p.rss;
  budget.residuals.resize(u.size());
  for (std::size_t i = 0; i < u.size(); ++i) {
    const double v = u[i] - p.center;
    budget.residuals[i] = budget.loss[i] - (p.d[0] + p.d[1] * v + p.d[2] * v * v);
  }
  const double loss_scale = *std::max_element(budget.loss.begin(), budget.loss.end());
  if (!opens_upwards(p.d[2], p.span, loss_scale)) {
    budget.status = FitStatus::kNoMinimum;
    budget.message = "c2 = " + detail::format_number(budget.c2) +
                     " <= 0: the losses do not curve upwards in ln x";
    return;
  }

  const double v_star = -p.d[1] / (2.0 * p.d[2]);
  budget.log_x_star = p.center + v_star;
  budget.x_star = std::exp(budget.log_x_star);
  budget.loss_star = p.d[0] - p.d[1] * p.d[1] / (4.0 * p.d[2]);
  budget.sigma_log_x = vertex_sigma(p);
  if (std::isfinite(budget.sigma_log_x)) {
    budget.x_star_low = std::exp(budget.log_x_star - budget.sigma_log_x);
    budget.x_star_high = std::exp(budget.log_x_star + budget.sigma_log_x);
  }
  budget.tokens_star = tokens_at(options, budget.budget_flops, budget.x_star);

  const double u_min = *std::min_element(u.begin(), u.end());
  const double u_max = *std::max_element(u.begin(), u.end());
  if (budget.log_x_star < u_min || budget.log_x_star > u_max) {
    budget.status = FitStatus::kExtrapolated;
    budget.message = "x* = " + detail::format_number(budget.x_star) + " lies " +
                     (budget.log_x_star < u_min ? "below" : "above") + " the sampled range [" +
                     detail::format_number(std::exp(u_min)) + ", " +
                     detail::format_number(std::exp(u_max)) + "]; add runs beyond that edge";
  } else {
    budget.status = FitStatus::kOk;
  }

  // Cross-check of §2 step 6: the vertex of a parabola in ln D over the same runs.
  if (all_tokens && std::isfinite(budget.tokens_star) && count_distinct(log_tokens) >= 3) {
    const Parabola q = fit_parabola(log_tokens, budget.loss);
    if (opens_upwards(q.d[2], q.span, loss_scale)) {
      const double log_check = q.center - q.d[1] / (2.0 * q.d[2]);
      budget.tokens_star_check = std::exp(log_check);
      budget.sigma_log_tokens_check = vertex_sigma(q);
      budget.tokens_check_log_difference = std::log(budget.tokens_star) - log_check;
      budget.tokens_check_flagged =
          std::isfinite(budget.sigma_log_tokens_check) &&
          std::abs(budget.tokens_check_log_difference) > 2.0 * budget.sigma_log_tokens_check;
    }
  }
}

// What a bootstrap replicate needs of one used budget.
struct BudgetDesign {
  double budget_flops = 0.0;
  std::vector<double> u;
  std::vector<double> loss;
  std::vector<double> fitted;
  std::vector<double> residuals;  // inflated by sqrt(n / (n - 3))
  Parabola parabola;
};

// Quantities collected per replicate, in this order.
enum Draw { kA, kK18, kAD, kK18D, kAL, kK18L, kDrawCount };

struct Replicate {
  bool discarded = true;
  double values[kDrawCount] = {};
  std::vector<double> predictions;
  std::vector<double> tokens_predictions;  // empty when D* is not computed
};

Replicate run_replicate(const std::vector<BudgetDesign>& designs,
                        const IsoflopOptions& options,
                        int index) {
  detail::Random random(options.seed, static_cast<std::uint64_t>(index));
  Replicate replicate;
  const std::size_t m = designs.size();
  std::vector<double> log_c(m), log_x(m), log_tokens(m), log_loss(m);
  bool have_tokens = true;
  for (std::size_t b = 0; b < m; ++b) {
    const BudgetDesign& design = designs[b];
    const int n = static_cast<int>(design.u.size());
    Eigen::Vector3d d;
    double center = design.parabola.center;
    double span = design.parabola.span;
    if (options.bootstrap_scheme == BootstrapScheme::kResidual) {
      Eigen::VectorXd y(n);
      for (int i = 0; i < n; ++i) {
        y[i] = design.fitted[i] + design.residuals[random.index(n)];
      }
      d = design.parabola.projection * y;
    } else {
      std::vector<double> u(n), y(n);
      for (int i = 0; i < n; ++i) {
        const int pick = random.index(n);
        u[i] = design.u[pick];
        y[i] = design.loss[pick];
      }
      if (count_distinct(u) < 3) {
        return replicate;
      }
      const Parabola p = fit_parabola(u, y);
      d = p.d;
      center = p.center;
      span = p.span;
    }
    const double loss_scale = *std::max_element(design.loss.begin(), design.loss.end());
    if (!opens_upwards(d[2], span, loss_scale)) {
      return replicate;  // discarded: some used budget has c2 <= 0 (§2 step 8)
    }
    const double log_x_star = center - d[1] / (2.0 * d[2]);
    const double loss_star = d[0] - d[1] * d[1] / (4.0 * d[2]);
    log_c[b] = std::log(design.budget_flops);
    log_x[b] = log_x_star;
    log_loss[b] = loss_star > 0.0 ? std::log(loss_star) : kNotComputed;
    const double tokens = tokens_at(options, design.budget_flops, std::exp(log_x_star));
    have_tokens = have_tokens && std::isfinite(tokens);
    log_tokens[b] = std::log(tokens);
  }
  replicate.discarded = false;
  const double log_unit = std::log(kBudgetUnit);
  double a = 0.0, ln_k = 0.0;
  fit_line(log_c, log_x, &a, &ln_k);
  replicate.values[kA] = a;
  replicate.values[kK18] = std::exp(ln_k + a * log_unit);
  for (double budget : options.prediction_budgets) {
    replicate.predictions.push_back(std::exp(ln_k + a * std::log(budget)));
  }
  replicate.values[kAD] = replicate.values[kK18D] = kNotComputed;
  if (have_tokens) {
    fit_line(log_c, log_tokens, &a, &ln_k);
    replicate.values[kAD] = a;
    replicate.values[kK18D] = std::exp(ln_k + a * log_unit);
    for (double budget : options.prediction_budgets) {
      replicate.tokens_predictions.push_back(std::exp(ln_k + a * std::log(budget)));
    }
  }
  replicate.values[kAL] = replicate.values[kK18L] = kNotComputed;
  if (std::all_of(log_loss.begin(), log_loss.end(), [](double v) { return std::isfinite(v); })) {
    fit_line(log_c, log_loss, &a, &ln_k);
    replicate.values[kAL] = a;
    replicate.values[kK18L] = std::exp(ln_k + a * log_unit);
  }
  return replicate;
}

void add_power_law_coefficients(IsoflopFit& fit,
                                const PowerLawFit& law,
                                const std::string& suffix,
                                bool with_k) {
  fit.coefficients.push_back({"a" + suffix, law.exponent, law.exponent_se});
  if (with_k) {
    const double k = std::exp(law.log_prefactor);
    fit.coefficients.push_back({"k" + suffix, k, k * law.log_prefactor_se});
  }
  fit.coefficients.push_back(
      {"k18" + suffix, law.prefactor_at(kBudgetUnit), law.prefactor_at_se(kBudgetUnit)});
  if (with_k) {
    fit.coefficients.push_back({"ln_k" + suffix, law.log_prefactor, law.log_prefactor_se});
  }
}

void set_interval(Coefficient& c, std::vector<double> draws, double level) {
  c.ci_low = detail::quantile(draws, 0.5 * (1.0 - level));
  c.ci_high = detail::quantile(std::move(draws), 0.5 * (1.0 + level));
}

void run_bootstrap(IsoflopFit& fit, const IsoflopOptions& options) {
  // A parabola through exactly three distinct x fits them exactly: its residuals are zero, so
  // residual resampling redraws the same losses (and case resampling keeps only the replicates
  // that redraw all three) and every replicate reproduces the fit. The interval would be the
  // point estimate, 0 wide, however noisy the losses are; leave it unknown instead.
  for (const BudgetMinimum& budget : fit.budgets) {
    std::vector<double> u;
    for (double x : budget.x) {
      u.push_back(std::log(x));
    }
    if (budget.used && count_distinct(u) <= 3) {
      fit.warnings.push_back("no bootstrap intervals: budget " + budget.budget_id +
                             " has 3 distinct x, so its parabola fits them exactly and "
                             "resampling cannot see the noise of its losses; a fourth x gives it "
                             "one");
      return;
    }
  }
  std::vector<BudgetDesign> designs;
  for (const BudgetMinimum& budget : fit.budgets) {
    if (!budget.used) {
      continue;
    }
    BudgetDesign design;
    design.budget_flops = budget.budget_flops;
    design.loss = budget.loss;
    for (double x : budget.x) {
      design.u.push_back(std::log(x));
    }
    design.parabola = fit_parabola(design.u, design.loss);
    const int n = static_cast<int>(design.u.size());
    // Residuals shrink by (n - 3) / n on average when 3 coefficients are fitted.
    const double inflation = n > 3 ? std::sqrt(static_cast<double>(n) / (n - 3)) : 1.0;
    for (int i = 0; i < n; ++i) {
      design.fitted.push_back(design.loss[i] - budget.residuals[i]);
      design.residuals.push_back(inflation * budget.residuals[i]);
    }
    designs.push_back(std::move(design));
  }

  const int resamples = options.bootstrap_resamples;
  std::vector<Replicate> replicates(resamples);
  detail::parallel_for(resamples, options.threads, [&](int i) {
    replicates[i] = run_replicate(designs, options, i);
  });

  std::vector<std::vector<double>> draws(kDrawCount);
  std::vector<std::vector<double>> predictions(options.prediction_budgets.size());
  std::vector<std::vector<double>> tokens_predictions(options.prediction_budgets.size());
  for (const Replicate& replicate : replicates) {
    if (replicate.discarded) {
      ++fit.bootstrap_discarded;
      continue;
    }
    for (int q = 0; q < kDrawCount; ++q) {
      draws[q].push_back(replicate.values[q]);
    }
    for (std::size_t p = 0; p < predictions.size(); ++p) {
      predictions[p].push_back(replicate.predictions[p]);
      if (!replicate.tokens_predictions.empty()) {
        tokens_predictions[p].push_back(replicate.tokens_predictions[p]);
      }
    }
  }
  fit.ci_level = options.ci_level;
  fit.bootstrap_replicates = resamples;
  fit.bootstrap_failed = fit.bootstrap_discarded;
  if (fit.bootstrap_discarded > 0.05 * resamples) {
    fit.warnings.push_back(std::to_string(fit.bootstrap_discarded) + " of " +
                           std::to_string(resamples) +
                           " bootstrap replicates discarded (some used budget had c2 <= 0); the "
                           "intervals are conditional on a minimum existing");
  }
  if (draws[kA].empty()) {
    return;
  }
  const std::pair<const char*, Draw> named[] = {
      {"a", kA}, {"k18", kK18}, {"a_D", kAD}, {"k18_D", kK18D}, {"a_L", kAL}, {"k18_L", kK18L}};
  for (Coefficient& c : fit.coefficients) {
    for (const auto& [name, draw] : named) {
      if (c.name == name) {
        set_interval(c, draws[draw], options.ci_level);
      }
    }
  }
  for (std::size_t p = 0; p < predictions.size(); ++p) {
    fit.predictions[p].ci_low = detail::quantile(predictions[p], 0.5 * (1.0 - options.ci_level));
    fit.predictions[p].ci_high = detail::quantile(predictions[p], 0.5 * (1.0 + options.ci_level));
    if (tokens_predictions[p].size() == predictions[p].size()) {
      fit.predictions[p].tokens_ci_low =
          detail::quantile(tokens_predictions[p], 0.5 * (1.0 - options.ci_level));
      fit.predictions[p].tokens_ci_high =
          detail::quantile(tokens_predictions[p], 0.5 * (1.0 + options.ci_level));
    }
  }
}

}  // namespace

void IsoflopOptions::validate() const {
  std::string problems;
  auto note = [&](const std::string& problem) {
    problems += (problems.empty() ? "" : "; ") + problem;
  };
  if (window_neighbours < -1 || window_neighbours == 0) {
    note("window_neighbours = " + std::to_string(window_neighbours) +
         ": expected -1 (the spec's rule) or a number of neighbours >= 1");
  }
  if (bootstrap_resamples < 0) {
    note("bootstrap_resamples = " + std::to_string(bootstrap_resamples) +
         ": expected 0 (no bootstrap) or a positive count such as 2000");
  }
  if (!(ci_level > 0.0 && ci_level < 1.0)) {
    note("ci_level = " + detail::format_number(ci_level) + ": expected a level in (0, 1)");
  }
  for (std::size_t i = 0; i < prediction_budgets.size(); ++i) {
    if (!(prediction_budgets[i] > 0.0) || !std::isfinite(prediction_budgets[i])) {
      note("prediction_budgets[" + std::to_string(i) + "] = " +
           detail::format_number(prediction_budgets[i]) + ": expected a positive budget in FLOPs");
    }
  }
  if (x_is_tokens && flops_per_token) {
    note("x_is_tokens is set and flops_per_token is given: expected one way to get D*");
  }
  if (!problems.empty()) {
    throw InputError("options", problems);
  }
}

IsoflopFit fit_isoflop(const std::vector<IsoflopRun>& runs, const IsoflopOptions& options) {
  options.validate();
  if (runs.empty()) {
    throw InputError("runs", "is empty; expected the runs of at least 3 budgets");
  }
  std::map<std::string, std::vector<IsoflopRun>> groups;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const IsoflopRun& run = runs[i];
    const std::string at = "runs[" + std::to_string(i) + "]";
    if (run.budget_id.empty()) {
      throw InputError(at + ".budget_id", "is empty; expected the label of the run's budget");
    }
    if (!(run.budget_flops > 0.0) || !std::isfinite(run.budget_flops)) {
      throw InputError(
          at + ".budget_flops", run.budget_flops, "expected a positive budget in FLOPs");
    }
    if (!(run.x > 0.0) || !std::isfinite(run.x)) {
      throw InputError(at + ".x", run.x, "expected a positive, finite x (a logarithm is taken)");
    }
    if (std::isfinite(run.loss) && !(run.loss > 0.0)) {
      throw InputError(
          at + ".loss", run.loss, "expected a positive loss in nats (NaN marks a diverged run)");
    }
    if (!std::isnan(run.tokens) && (!(run.tokens > 0.0) || !std::isfinite(run.tokens))) {
      throw InputError(at + ".tokens", run.tokens, "expected a positive token count, or NaN");
    }
    auto& group = groups[run.budget_id];
    if (!group.empty() && group.front().budget_flops != run.budget_flops) {
      throw InputError(at + ".budget_flops",
                       run.budget_flops,
                       "expected " + detail::format_number(group.front().budget_flops) +
                           ", the budget of the other runs with budget_id \"" + run.budget_id +
                           "\"");
    }
    group.push_back(run);
  }

  IsoflopFit fit;
  fit.law = "isoflop";
  for (const auto& [id, group] : groups) {
    BudgetMinimum budget;
    budget.budget_id = id;
    budget.budget_flops = group.front().budget_flops;
    analyse_budget(budget, group, options);
    fit.dropped_runs += budget.dropped_runs;
    fit.budgets.push_back(std::move(budget));
  }
  std::stable_sort(
      fit.budgets.begin(), fit.budgets.end(), [](const BudgetMinimum& l, const BudgetMinimum& r) {
        return l.budget_flops < r.budget_flops;
      });

  std::vector<double> budgets, x_star, tokens_star, loss_star;
  std::string excluded;
  for (BudgetMinimum& budget : fit.budgets) {
    budget.used = budget.status == FitStatus::kOk ||
                  (budget.status == FitStatus::kExtrapolated && options.include_extrapolated);
    if (!budget.used) {
      excluded +=
          (excluded.empty() ? "" : ", ") + budget.budget_id + " " + to_string(budget.status);
      continue;
    }
    budgets.push_back(budget.budget_flops);
    x_star.push_back(budget.x_star);
    tokens_star.push_back(budget.tokens_star);
    loss_star.push_back(budget.loss_star);
  }
  if (fit.dropped_runs > 0) {
    fit.warnings.push_back(std::to_string(fit.dropped_runs) +
                           " runs with a non-finite loss were dropped");
  }
  fit.starts = 1;
  if (budgets.size() < 3) {
    fit.status = FitStatus::kFailed;
    fit.message = std::to_string(budgets.size()) +
                  " budgets have a usable minimum; the power law needs at least 3" +
                  (excluded.empty() ? std::string() : " (" + excluded + ")");
    return fit;
  }
  if (!excluded.empty()) {
    fit.message = "left out of the power laws: " + excluded;
  }
  std::vector<double> distinct_budgets = budgets;
  if (count_distinct(distinct_budgets) < 2) {
    throw InputError("runs", "every budget id has the same budget_flops; expected distinct C");
  }

  fit.x_star_law = fit_power_law(budgets, x_star);
  fit.loss_star_law = fit_power_law(budgets, loss_star);
  const bool have_tokens = std::all_of(
      tokens_star.begin(), tokens_star.end(), [](double v) { return std::isfinite(v); });
  if (have_tokens) {
    fit.tokens_star_law = fit_power_law(budgets, tokens_star);
  } else {
    fit.tokens_star_law.law = "power";
    fit.tokens_star_law.message = "D* not computed: give flops_per_token or set x_is_tokens";
  }

  fit.status = FitStatus::kOk;
  fit.successes = 1;
  fit.n = fit.x_star_law.n;
  fit.objective = fit.x_star_law.objective;
  fit.objective_per_point = fit.x_star_law.objective_per_point;
  fit.residuals = fit.x_star_law.residuals;
  add_power_law_coefficients(fit, fit.x_star_law, "", true);
  if (have_tokens) {
    add_power_law_coefficients(fit, fit.tokens_star_law, "_D", false);
  }
  add_power_law_coefficients(fit, fit.loss_star_law, "_L", false);
  for (double budget : options.prediction_budgets) {
    IsoflopPrediction prediction;
    prediction.budget_flops = budget;
    prediction.x_star = fit.x_star_law.predict(budget);
    if (fit.tokens_star_law.status == FitStatus::kOk) {
      prediction.tokens_star = fit.tokens_star_law.predict(budget);
    }
    fit.predictions.push_back(prediction);
  }
  for (const BudgetMinimum& budget : fit.budgets) {
    if (budget.used && budget.tokens_check_flagged) {
      fit.warnings.push_back("budget " + budget.budget_id +
                             ": D* from x and from a parabola in ln D differ by more than 2 sigma");
    }
  }
  if (options.bootstrap_resamples > 0) {
    run_bootstrap(fit, options);
  }
  return fit;
}

}  // namespace parcae::fitting
