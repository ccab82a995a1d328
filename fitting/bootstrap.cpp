// The bootstrap over runs of §6 for the parametric laws: each replicate draws runs with
// replacement (a run carries all of its points), refits from the full-sample optimum plus
// structured starts, and recomputes every reported quantity. Draws are weights on the rows, so a
// replicate copies no data; each replicate has its own random stream, so the result does not
// depend on the number of threads.
#include <cmath>
#include <string>
#include <vector>

#include "fitting/detail/checks.h"
#include "fitting/detail/minimize.h"
#include "fitting/detail/numerics.h"
#include "fitting/detail/objectives.h"
#include "fitting/detail/training_law.h"
#include "fitting/detail/unified_law.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

void validate(const BootstrapOptions& options) {
  if (options.resamples < 2) {
    throw InputError(
        "bootstrap.resamples", options.resamples, "expected at least 2 resamples, such as 1000");
  }
  detail::check_ci_level(options.ci_level, "bootstrap.ci_level");
  if (options.local_optima_starts < 0) {
    throw InputError(
        "bootstrap.local_optima_starts", options.local_optima_starts, "expected a count >= 0");
  }
  if (options.threads < 0) {
    throw InputError("bootstrap.threads", options.threads, "expected 0 (all cores) or a count");
  }
}

void require_ok(const Fit& fit) {
  if (fit.status != FitStatus::kOk) {
    throw InputError("fit",
                     std::string("has status ") + to_string(fit.status) +
                         "; the bootstrap starts from an ok full-sample fit");
  }
}

// Writes se, CIs and counts into fit from each replicate's coefficient values (in fit's order;
// an empty vector is a failed replicate).
void summarize_replicates(Fit& fit,
                          const std::vector<std::vector<double>>& values,
                          const BootstrapOptions& options) {
  const int resamples = static_cast<int>(values.size());
  fit.ci_level = options.ci_level;
  fit.bootstrap_replicates = resamples;
  fit.bootstrap_failed = 0;
  std::vector<std::vector<double>> draws(fit.coefficients.size());
  for (const std::vector<double>& replicate : values) {
    if (replicate.empty()) {
      ++fit.bootstrap_failed;
      continue;
    }
    for (std::size_t j = 0; j < draws.size(); ++j) {
      draws[j].push_back(replicate[j]);
    }
  }
  for (std::size_t j = 0; j < draws.size(); ++j) {
    Coefficient& c = fit.coefficients[j];
    c.se = detail::standard_deviation(draws[j]);
    c.ci_low = detail::quantile(draws[j], 0.5 * (1.0 - options.ci_level));
    c.ci_high = detail::quantile(draws[j], 0.5 * (1.0 + options.ci_level));
  }
  if (fit.bootstrap_failed > 0.05 * resamples) {
    fit.warnings.push_back(std::to_string(fit.bootstrap_failed) + " of " +
                           std::to_string(resamples) +
                           " bootstrap replicates found no successful refit (more than 5%)");
  }
}

// Runs the replicates and writes se, CIs and counts into fit. refit(weights) returns the
// replicate's coefficient values in fit's order, or an empty vector when the refit failed.
template <typename Refit>
void bootstrap_runs(Fit& fit,
                    const std::vector<int>& run_of_point,
                    int run_count,
                    const BootstrapOptions& options,
                    const Refit& refit) {
  const int resamples = options.resamples;
  std::vector<std::vector<double>> values(resamples);
  detail::parallel_for(resamples, options.threads, [&](int r) {
    detail::Random random(options.seed, static_cast<std::uint64_t>(r));
    std::vector<double> run_weight(run_count, 0.0);
    for (int k = 0; k < run_count; ++k) {
      run_weight[random.index(run_count)] += 1.0;
    }
    std::vector<double> weights(run_of_point.size());
    for (std::size_t i = 0; i < weights.size(); ++i) {
      weights[i] = run_weight[run_of_point[i]];
    }
    values[r] = refit(weights);
  });
  summarize_replicates(fit, values, options);
}

std::vector<double> values_of(const std::vector<Coefficient>& coefficients) {
  std::vector<double> values;
  for (const Coefficient& c : coefficients) {
    values.push_back(c.value);
  }
  return values;
}

// The full-sample optimum, further distinct local optima and the caller's extra starts.
template <typename LawFit>
std::vector<std::vector<double>> training_law_starts(const LawFit& fit,
                                                     const BootstrapOptions& options) {
  std::vector<std::vector<double>> starts = {detail::to_vector(fit.theta)};
  int added = 0;
  for (const TrainingLawParameters& theta : fit.local_optima) {
    const std::vector<double> x = detail::to_vector(theta);
    if (x == starts.front()) {
      continue;  // the optimum itself, already first
    }
    if (added++ >= options.local_optima_starts) {
      break;
    }
    starts.push_back(x);
  }
  for (const TrainingLawParameters& theta : options.extra_starts) {
    starts.push_back(detail::to_vector(theta));
  }
  return starts;
}

// Multi-start on one thread (the replicates are already parallel); the best θ or nothing.
std::vector<double> refit_training_law(const detail::TrainingLawRows& rows,
                                       const std::vector<std::vector<double>>& starts,
                                       double huber_delta,
                                       ResidualScale residuals,
                                       const MinimizerOptions& minimizer) {
  const detail::TrainingLawObjective objective(rows, huber_delta, residuals);
  const detail::MultiStartResult result =
      detail::minimize_multistart(objective, starts, minimizer, 1);
  if (result.best < 0) {
    return {};
  }
  return result.runs[result.best].x;
}

std::vector<int> one_run_per_row(std::size_t rows) {
  std::vector<int> runs(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    runs[i] = static_cast<int>(i);
  }
  return runs;
}

}  // namespace

PowerLawFit bootstrap_power_law(const std::vector<double>& x,
                                const std::vector<double>& y,
                                const std::vector<double>& weights,
                                const PowerLawFit& fit,
                                const BootstrapOptions& bootstrap) {
  validate(bootstrap);
  require_ok(fit);
  if (static_cast<int>(x.size()) != fit.n) {
    throw InputError("x",
                     "has " + std::to_string(x.size()) + " points but the fit has n = " +
                         std::to_string(fit.n) + "; expected the data the fit came from");
  }
  PowerLawFit result = fit;
  bootstrap_runs(result,
                 one_run_per_row(x.size()),
                 static_cast<int>(x.size()),
                 bootstrap,
                 [&](const std::vector<double>& counts) -> std::vector<double> {
                   // A point drawn k times enters once with k times its weight.
                   std::vector<double> rx, ry, rw;
                   for (std::size_t i = 0; i < x.size(); ++i) {
                     if (counts[i] > 0.0) {
                       rx.push_back(x[i]);
                       ry.push_back(y[i]);
                       rw.push_back(counts[i] * (weights.empty() ? 1.0 : weights[i]));
                     }
                   }
                   try {
                     return values_of(fit_power_law(rx, ry, rw).coefficients);
                   } catch (const InputError&) {
                     return {};  // fewer than 3 distinct points or one distinct x: no line
                   }
                 });
  return result;
}

SatExpFit bootstrap_satexp(const std::vector<double>& test_time,
                           const std::vector<double>& loss,
                           const SatExpFit& fit,
                           const SatExpOptions& options,
                           const BootstrapOptions& bootstrap) {
  validate(bootstrap);
  require_ok(fit);
  const std::size_t n = loss.size();
  if (test_time.size() != n || static_cast<int>(n) != fit.n || fit.residuals.size() != n) {
    throw InputError("loss",
                     "has " + std::to_string(n) + " points but the fit has n = " +
                         std::to_string(fit.n) + "; expected the data the fit came from");
  }
  const int parameters = static_cast<int>(fit.coefficients.size());
  if (static_cast<int>(n) <= parameters) {
    throw InputError("loss",
                     "has " + std::to_string(n) + " points; a residual bootstrap of " +
                         std::to_string(parameters) + " parameters needs more");
  }
  // Residuals of ln L about the fitted curve, inflated by sqrt(n / (n - p)) as in §2 step 8.
  const double inflation = std::sqrt(static_cast<double>(n) / static_cast<double>(n - parameters));
  std::vector<double> log_fitted(n);
  for (std::size_t i = 0; i < n; ++i) {
    log_fitted[i] = std::log(fit.predict(test_time[i]));
  }
  std::vector<std::vector<double>> values(bootstrap.resamples);
  detail::parallel_for(bootstrap.resamples, bootstrap.threads, [&](int r) {
    detail::Random random(bootstrap.seed, static_cast<std::uint64_t>(r));
    std::vector<double> replicate(n);
    for (std::size_t i = 0; i < n; ++i) {
      // fit.residuals are ln Lhat - ln L, so ln L = ln Lhat - residual.
      const double residual = fit.residuals[random.index(static_cast<int>(n))];
      replicate[i] = std::exp(log_fitted[i] - inflation * residual);
    }
    const SatExpFit refit = fit_satexp(test_time, replicate, options);
    if (refit.status == FitStatus::kFailed ||
        refit.coefficients.size() != fit.coefficients.size()) {
      values[r].clear();
      return;
    }
    values[r] = values_of(refit.coefficients);
  });
  SatExpFit result = fit;
  summarize_replicates(result, values, bootstrap);
  return result;
}

ChinchillaFit bootstrap_chinchilla(const ChinchillaData& data,
                                   const ChinchillaFit& fit,
                                   const ChinchillaOptions& options,
                                   const BootstrapOptions& bootstrap) {
  validate(bootstrap);
  require_ok(fit);
  const detail::TrainingLawRows rows = detail::chinchilla_rows(data);
  if (static_cast<int>(rows.log_loss.size()) != fit.n) {
    throw InputError("data",
                     "has " + std::to_string(rows.log_loss.size()) + " rows but the fit has n = " +
                         std::to_string(fit.n) + "; expected the data the fit came from");
  }
  const auto starts = training_law_starts(fit, bootstrap);
  ChinchillaFit result = fit;
  bootstrap_runs(
      result,
      one_run_per_row(rows.log_loss.size()),
      static_cast<int>(rows.log_loss.size()),
      bootstrap,
      [&](const std::vector<double>& weights) -> std::vector<double> {
        detail::TrainingLawRows replicate = rows;
        replicate.weights = weights;
        const std::vector<double> x =
            refit_training_law(replicate,
                               starts,
                               detail::penalty_delta(options.penalty, options.huber_delta),
                               options.residuals,
                               options.minimizer);
        if (x.empty()) {
          return {};
        }
        return values_of(detail::chinchilla_coefficients(detail::to_parameters(x), options));
      });
  return result;
}

ParcaeLawFit bootstrap_parcae_law(const ParcaeData& data,
                                  const EffectiveParameters& params_of_mu,
                                  const ParcaeLawFit& fit,
                                  const ParcaeLawOptions& options,
                                  const BootstrapOptions& bootstrap) {
  validate(bootstrap);
  require_ok(fit);
  detail::validate_parcae_options(options);
  const detail::TrainingLawRows rows = detail::parcae_rows(data, params_of_mu);
  if (static_cast<int>(rows.log_loss.size()) != fit.n) {
    throw InputError("data",
                     "has " + std::to_string(rows.log_loss.size()) + " rows but the fit has n = " +
                         std::to_string(fit.n) + "; expected the data the fit came from");
  }
  const auto starts = training_law_starts(fit, bootstrap);
  ParcaeLawFit result = fit;
  bootstrap_runs(result,
                 one_run_per_row(rows.log_loss.size()),
                 static_cast<int>(rows.log_loss.size()),
                 bootstrap,
                 [&](const std::vector<double>& weights) -> std::vector<double> {
                   detail::TrainingLawRows replicate = rows;
                   replicate.weights = weights;
                   const std::vector<double> x = refit_training_law(
                       replicate,
                       starts,
                       detail::penalty_delta(options.penalty, options.huber_delta),
                       options.residuals,
                       options.minimizer);
                   if (x.empty()) {
                     return {};
                   }
                   return values_of(detail::parcae_coefficients(
                       detail::to_parameters(x), params_of_mu, options, nullptr));
                 });
  return result;
}

UnifiedLawFit bootstrap_unified_law(const UnifiedData& data,
                                    const EffectiveParameters& params_of_mu,
                                    const ParcaeLawFit& training_law,
                                    const UnifiedLawFit& fit,
                                    const UnifiedOptions& options,
                                    const BootstrapOptions& bootstrap) {
  validate(bootstrap);
  require_ok(fit);
  detail::validate_unified_options(options);
  if (fit.variant != options.variant || fit.floor_fixed != options.floor_fixed) {
    throw InputError("options",
                     "variant or floor_fixed differ from the fit's; expected the fit's options");
  }
  const detail::UnifiedRows rows = detail::unified_rows(data, params_of_mu);
  if (static_cast<int>(rows.log_loss.size()) != fit.n) {
    throw InputError("data",
                     "has " + std::to_string(rows.log_loss.size()) +
                         " points but the fit has n = " + std::to_string(fit.n) +
                         "; expected the data the fit came from");
  }
  int run_count = 0;
  const std::vector<int> runs = detail::unified_runs(data, &run_count);
  const std::vector<int> free = detail::unified_free_indices(options.variant, options.floor_fixed);

  // The full-sample optimum, then the structured starts of §4.2 (a floor-fixed fit keeps the
  // floor of training_law in every replicate: its intervals are conditional on that floor).
  std::vector<std::vector<double>> full_starts = {detail::to_vector(fit.theta, options.variant)};
  for (auto& x : detail::unified_structured_starts(training_law.theta, options.variant)) {
    full_starts.push_back(std::move(x));
  }
  std::vector<double> fixed = detail::to_vector(training_law.theta);
  fixed.resize(full_starts.front().size(), 0.0);
  std::vector<std::vector<double>> starts;
  for (const auto& x : full_starts) {
    std::vector<double> s;
    for (int j : free) {
      s.push_back(x[j]);
    }
    starts.push_back(std::move(s));
  }

  UnifiedLawFit result = fit;
  bootstrap_runs(result,
                 runs,
                 run_count,
                 bootstrap,
                 [&](const std::vector<double>& weights) -> std::vector<double> {
                   detail::UnifiedRows replicate = rows;
                   replicate.weights = weights;
                   const detail::UnifiedObjective full(
                       replicate,
                       options.variant,
                       detail::penalty_delta(options.penalty, options.huber_delta),
                       options.residuals);
                   const detail::SubsetObjective subset(full, fixed, free);
                   const detail::MultiStartResult refit =
                       detail::minimize_multistart(subset, starts, options.minimizer, 1);
                   if (refit.best < 0) {
                     return {};
                   }
                   const std::vector<double> x = subset.expand(refit.runs[refit.best].x.data());
                   return values_of(detail::unified_coefficients(
                       detail::to_unified_parameters(x, options.variant), params_of_mu, options));
                 });
  return result;
}

}  // namespace parcae::fitting
