// The unified law of §4.2: the training law's floor plus a test-time term Z e^(-z T / mu), fitted
// jointly (the default) or with the floor held at a §4.1 fit, by multi-start L-BFGS on the summed
// Huber loss of log residuals, with the learned-gamma and no-mu variants.
#include "fitting/detail/unified_law.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>

#include "fitting/detail/checks.h"
#include "fitting/detail/minimize.h"
#include "fitting/detail/numerics.h"
#include "fitting/detail/objectives.h"
#include "fitting/detail/training_law.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace detail {
namespace {

int parameter_count(UnifiedVariant variant) {
  return variant == UnifiedVariant::kLearnedGamma ? 8 : 7;
}

double time_scale(UnifiedVariant variant, double gamma, double mean_recurrence, double test_time) {
  switch (variant) {
    case UnifiedVariant::kGammaOne:
      return test_time / mean_recurrence;
    case UnifiedVariant::kLearnedGamma:
      return test_time * std::pow(mean_recurrence, -gamma);
    case UnifiedVariant::kNoMu:
      break;
  }
  return test_time;
}

}  // namespace

std::vector<double> to_vector(const UnifiedLawParameters& theta, UnifiedVariant variant) {
  std::vector<double> x = to_vector(theta.floor);
  x.push_back(theta.log_Z);
  x.push_back(theta.log_z);
  if (variant == UnifiedVariant::kLearnedGamma) {
    x.push_back(theta.gamma);
  }
  return x;
}

UnifiedLawParameters to_unified_parameters(const std::vector<double>& x, UnifiedVariant variant) {
  UnifiedLawParameters theta;
  theta.floor = to_parameters(x);
  theta.log_Z = x[5];
  theta.log_z = x[6];
  theta.gamma = variant == UnifiedVariant::kLearnedGamma ? x[7]
                : variant == UnifiedVariant::kGammaOne   ? 1.0
                                                         : 0.0;
  return theta;
}

UnifiedRows unified_rows(const UnifiedData& data, const EffectiveParameters& params_of_mu) {
  const std::size_t n = data.loss.size();
  check_same_size("data.mean_recurrence", data.mean_recurrence.size(), "data.loss", n);
  check_same_size("data.tokens", data.tokens.size(), "data.loss", n);
  check_same_size("data.test_time", data.test_time.size(), "data.loss", n);
  if (!data.run.empty()) {
    check_same_size("data.run", data.run.size(), "data.loss", n);
  }
  check_at_least(data.mean_recurrence, 1.0, "data.mean_recurrence", "a mean recurrence >= 1");
  check_positive(data.tokens, "data.tokens", "token count");
  check_positive(data.test_time, "data.test_time", "test-time recurrence T");
  check_positive(data.loss, "data.loss", "loss in nats");
  UnifiedRows rows;
  for (std::size_t i = 0; i < n; ++i) {
    const double params = params_of_mu.count(data.mean_recurrence[i]);
    if (!(params > 0.0) || !std::isfinite(params)) {
      throw InputError("params_of_mu.count(data.mean_recurrence[" + std::to_string(i) + "])",
                       params,
                       "expected a positive parameter count");
    }
    rows.log_params.push_back(std::log(params));
    rows.log_tokens.push_back(std::log(data.tokens[i]));
    rows.log_mu.push_back(std::log(data.mean_recurrence[i]));
    rows.test_time.push_back(data.test_time[i]);
    rows.time_per_mu.push_back(data.test_time[i] / data.mean_recurrence[i]);
    rows.log_loss.push_back(std::log(data.loss[i]));
  }
  return rows;
}

std::vector<int> unified_runs(const UnifiedData& data, int* run_count) {
  std::vector<int> runs(data.loss.size());
  if (!data.run.empty()) {
    std::map<int, int> numbering;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      runs[i] = numbering.emplace(data.run[i], static_cast<int>(numbering.size())).first->second;
    }
    *run_count = static_cast<int>(numbering.size());
    return runs;
  }
  std::map<std::pair<double, double>, int> numbering;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const std::pair<double, double> key{data.mean_recurrence[i], data.tokens[i]};
    runs[i] = numbering.emplace(key, static_cast<int>(numbering.size())).first->second;
  }
  *run_count = static_cast<int>(numbering.size());
  return runs;
}

void validate_unified_options(const UnifiedOptions& options) {
  if (!(options.huber_delta > 0.0) || !std::isfinite(options.huber_delta)) {
    throw InputError("options.huber_delta", options.huber_delta, "expected a positive delta");
  }
  if (options.random_starts < 0) {
    throw InputError("options.random_starts", options.random_starts, "expected a count >= 0");
  }
  if (options.threads < 0) {
    throw InputError("options.threads", options.threads, "expected 0 (all cores) or a count");
  }
  validate_minimizer_options(options.minimizer, "options.minimizer");
  for (std::size_t i = 0; i < options.predictions.size(); ++i) {
    const UnifiedLawQuery& q = options.predictions[i];
    if (!(q.mean_recurrence >= 1.0) || !(q.tokens > 0.0) || !(q.test_time > 0.0) ||
        !std::isfinite(q.tokens) || !std::isfinite(q.test_time)) {
      throw InputError(
          "options.predictions[" + std::to_string(i) + "]",
          "mu = " + format_number(q.mean_recurrence) + ", D = " + format_number(q.tokens) +
              ", T = " + format_number(q.test_time) + ": expected mu >= 1, D > 0 and T > 0");
    }
  }
}

std::vector<std::vector<double>> unified_structured_starts(const TrainingLawParameters& floor,
                                                           UnifiedVariant variant) {
  const double log_amplitudes[] = {-3.0, -2.0, -1.0, 0.0, 1.0};
  const double rates[] = {0.5, 1.0, 2.0, 4.0, 8.0, 16.0};
  const double gammas[] = {1.0, 0.0, 0.5, 1.5, 2.0};  // gamma = 1 first: [P]'s adopted value
  const int gamma_count = variant == UnifiedVariant::kLearnedGamma ? 5 : 1;
  std::vector<std::vector<double>> starts;
  for (int g = 0; g < gamma_count; ++g) {
    for (double zeta : log_amplitudes) {
      for (double rate : rates) {
        std::vector<double> x = to_vector(floor);
        x.push_back(zeta);
        x.push_back(std::log(rate));
        if (variant == UnifiedVariant::kLearnedGamma) {
          x.push_back(gammas[g]);
        }
        starts.push_back(std::move(x));
      }
    }
  }
  return starts;
}

std::vector<int> unified_free_indices(UnifiedVariant variant, bool floor_fixed) {
  std::vector<int> free;
  for (int j = floor_fixed ? 5 : 0; j < parameter_count(variant); ++j) {
    free.push_back(j);
  }
  return free;
}

std::vector<Coefficient> unified_coefficients(const UnifiedLawParameters& theta,
                                              const EffectiveParameters& params_of_mu,
                                              const UnifiedOptions& options) {
  std::vector<Coefficient> c = {{"E", theta.floor.E()},
                                {"X", theta.floor.A()},
                                {"x", theta.floor.alpha},
                                {"Y", theta.floor.B()},
                                {"y", theta.floor.beta},
                                {"Z", std::exp(theta.log_Z)},
                                {"z", std::exp(theta.log_z)}};
  if (options.variant == UnifiedVariant::kLearnedGamma) {
    c.push_back({"gamma", theta.gamma});
  }
  for (const UnifiedLawQuery& q : options.predictions) {
    c.push_back({"L(mu=" + format_number(q.mean_recurrence) + ",D=" + format_number(q.tokens) +
                     ",T=" + format_number(q.test_time) + ")",
                 predict_unified_law(theta,
                                     options.variant,
                                     params_of_mu.count(q.mean_recurrence),
                                     q.mean_recurrence,
                                     q.tokens,
                                     q.test_time)});
  }
  return c;
}

}  // namespace detail

double predict_unified_law(const UnifiedLawParameters& theta,
                           UnifiedVariant variant,
                           double params,
                           double mean_recurrence,
                           double tokens,
                           double test_time) {
  const double s = detail::time_scale(variant, theta.gamma, mean_recurrence, test_time);
  return predict_training_law(theta.floor, params, tokens) +
         std::exp(theta.log_Z - std::exp(theta.log_z) * s);
}

double UnifiedLawFit::predict_with_oracle_floor(double measured_floor,
                                                double mean_recurrence,
                                                double test_time) const {
  const double s = detail::time_scale(variant, theta.gamma, mean_recurrence, test_time);
  return measured_floor + std::exp(theta.log_Z - std::exp(theta.log_z) * s);
}

double unified_objective(const UnifiedData& data,
                         const EffectiveParameters& params_of_mu,
                         const UnifiedLawParameters& theta,
                         UnifiedVariant variant,
                         double huber_delta) {
  const detail::UnifiedRows rows = detail::unified_rows(data, params_of_mu);
  const detail::UnifiedObjective objective(rows, variant, huber_delta);
  const std::vector<double> x = detail::to_vector(theta, variant);
  double value = 0.0;
  objective.evaluate(x.data(), &value, nullptr);
  return value;
}

UnifiedLawFit fit_unified_law(const UnifiedData& data,
                              const EffectiveParameters& params_of_mu,
                              const ParcaeLawFit& training_law,
                              const UnifiedOptions& options) {
  detail::validate_unified_options(options);
  if (training_law.status != FitStatus::kOk) {
    throw InputError("training_law",
                     std::string("has status ") + to_string(training_law.status) +
                         "; expected an ok fit of the training law (§4.1) to start from");
  }
  const detail::UnifiedRows rows = detail::unified_rows(data, params_of_mu);
  const std::vector<int> free = detail::unified_free_indices(options.variant, options.floor_fixed);
  if (rows.log_loss.size() < free.size() + 1) {
    throw InputError("data",
                     "has " + std::to_string(rows.log_loss.size()) + " points; fitting " +
                         std::to_string(free.size()) + " parameters needs at least " +
                         std::to_string(free.size() + 1));
  }

  // Full-vector starts: structured, then random (§4.2), then the caller's.
  std::vector<std::vector<double>> full_starts =
      detail::unified_structured_starts(training_law.theta, options.variant);
  detail::Random random(options.seed, 0);
  for (int i = 0; i < options.random_starts; ++i) {
    std::vector<double> x = detail::to_vector(training_law.theta);
    if (!options.floor_fixed) {
      x[0] = random.uniform(0.0, 25.0);  // ln X
      x[1] = random.uniform(0.0, 25.0);  // ln Y
      x[2] = random.uniform(-1.0, 1.0);  // e
      x[3] = random.uniform(0.0, 2.0);   // x
      x[4] = random.uniform(0.0, 2.0);   // y
    }
    x.push_back(random.uniform(-4.0, 1.0));                      // zeta
    x.push_back(random.uniform(std::log(0.1), std::log(16.0)));  // ln z
    if (options.variant == UnifiedVariant::kLearnedGamma) {
      x.push_back(random.uniform(0.0, 2.0));  // gamma
    }
    full_starts.push_back(std::move(x));
  }
  for (const UnifiedLawParameters& theta : options.extra_starts) {
    full_starts.push_back(detail::to_vector(theta, options.variant));
  }

  const detail::UnifiedObjective full(rows,
                                      options.variant,
                                      detail::penalty_delta(options.penalty, options.huber_delta),
                                      options.residuals);
  std::vector<double> fixed = detail::to_vector(training_law.theta);
  fixed.resize(full.size(), 0.0);
  const detail::SubsetObjective subset(full, fixed, free);
  std::vector<std::vector<double>> starts;
  for (const auto& x : full_starts) {
    std::vector<double> s;
    for (int j : free) {
      s.push_back(x[j]);
    }
    starts.push_back(std::move(s));
  }
  const detail::MultiStartResult result = detail::minimize_multistart(
      subset, starts, options.minimizer, options.threads, options.progress);

  UnifiedLawFit fit;
  fit.law = "unified";
  fit.variant = options.variant;
  fit.floor_fixed = options.floor_fixed;
  fit.params_of_mu = params_of_mu;
  fit.requires_validation = true;
  fit.starts = static_cast<int>(starts.size());
  fit.successes = result.successes;
  fit.n = static_cast<int>(rows.log_loss.size());
  if (result.best < 0) {
    fit.status = FitStatus::kFailed;
    fit.message = "none of the " + std::to_string(fit.starts) +
                  " starts reached a stationary point with a finite objective";
    fit.theta.floor = {kNotComputed, kNotComputed, kNotComputed, kNotComputed, kNotComputed};
    fit.theta.log_Z = fit.theta.log_z = fit.theta.gamma = kNotComputed;
  } else {
    const detail::MinimizeResult& best = result.runs[result.best];
    const std::vector<double> x = subset.expand(best.x.data());
    fit.status = FitStatus::kOk;
    fit.theta = detail::to_unified_parameters(x, options.variant);
    fit.best_start = result.best;
    fit.gradient_max_norm = best.gradient_max_norm;
    fit.objective = best.value;
    fit.objective_per_point = best.value / fit.n;
    fit.residuals = full.residuals(x.data());
  }
  fit.coefficients = detail::unified_coefficients(fit.theta, params_of_mu, options);
  detail::check_physical_range(
      fit,
      {{"x", fit.theta.floor.alpha}, {"y", fit.theta.floor.beta}, {"z", std::exp(fit.theta.log_z)}},
      fit.theta.floor.E(),
      *std::min_element(data.loss.begin(), data.loss.end()));
  return fit;
}

}  // namespace parcae::fitting
