// The test-time law of §5, L(T) = L_inf + Z e^(-z T), and [P]'s comparison forms, fitted in log
// parameters (L_inf = e^lambda, Z = e^zeta, z = e^omega) by Levenberg-Marquardt (Ceres Problem,
// automatic differentiation) on log-loss residuals, from variable-projection starts.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <ceres/autodiff_cost_function.h>
#include <ceres/loss_function.h>
#include <ceres/problem.h>
#include <ceres/solver.h>

#include "fitting/detail/checks.h"
#include "fitting/detail/minimize.h"
#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

// A fit whose decay past the second sampled T is under this share of its whole decay over the
// sampled T is reported as not resolving Z and z (a warning, not a status of §5).
constexpr double kUnresolvedShare = 0.01;

bool has_floor(TestTimeForm form) {
  return form != TestTimeForm::kPowerNoFloor;
}

// basis(z, T): e^(-z T), (1 + T)^-z or T^-z; the decaying factor that multiplies Z.
template <typename T>
T basis(TestTimeForm form, const T& rate, double test_time) {
  using std::exp;
  switch (form) {
    case TestTimeForm::kExponential:
      return exp(-rate * test_time);
    case TestTimeForm::kShiftedPower:
      return exp(-rate * std::log1p(test_time));
    case TestTimeForm::kPower:
    case TestTimeForm::kPowerNoFloor:
      break;
  }
  return exp(-rate * std::log(test_time));
}

// d basis / d z divided by basis: -T, -ln(1 + T) or -ln T.
double basis_log_slope(TestTimeForm form, double test_time) {
  switch (form) {
    case TestTimeForm::kExponential:
      return -test_time;
    case TestTimeForm::kShiftedPower:
      return -std::log1p(test_time);
    case TestTimeForm::kPower:
    case TestTimeForm::kPowerNoFloor:
      break;
  }
  return -std::log(test_time);
}

// r = ln(e^lambda + e^zeta basis(e^omega, T)) - ln L, parameters (lambda, zeta, omega); with
// linear, r = Lhat - L.
struct FloorResidual {
  TestTimeForm form;
  double test_time;
  double loss;
  bool linear;
  template <typename T>
  bool operator()(const T* p, T* residual) const {
    using std::exp;
    using std::log;
    const T value = exp(p[0]) + exp(p[1]) * basis(form, exp(p[2]), test_time);
    residual[0] = linear ? value - loss : log(value) - std::log(loss);
    return true;
  }
};

// r = zeta - e^omega ln T - ln L for Z T^-z, parameters (zeta, omega); with linear, Lhat - L.
struct NoFloorResidual {
  double test_time;
  double loss;
  bool linear;
  template <typename T>
  bool operator()(const T* p, T* residual) const {
    using std::exp;
    const T log_value = p[0] - exp(p[1]) * std::log(test_time);
    residual[0] = linear ? exp(log_value) - loss : log_value - std::log(loss);
    return true;
  }
};

// The residual of one point on the chosen scale.
double residual_of(ResidualScale scale, double predicted, double loss) {
  return scale == ResidualScale::kLinear ? predicted - loss : std::log(predicted) - std::log(loss);
}

struct Curve {
  std::vector<double> test_time;
  std::vector<double> loss;
};

double model_value(TestTimeForm form, double l_inf, double amplitude, double rate, double t) {
  return (has_floor(form) ? l_inf : 0.0) + amplitude * basis(form, rate, t);
}

// Variable-projection starts of §5 (log parameters, 3 entries; lambda unused without a floor).
std::vector<std::array<double, 3>> starts_for(const Curve& curve, const SatExpOptions& options) {
  const std::size_t n = curve.loss.size();
  const double min_loss = *std::min_element(curve.loss.begin(), curve.loss.end());
  std::vector<std::array<double, 3>> starts;
  for (double rate : options.start_rates) {
    if (!has_floor(options.form)) {
      // ln L = zeta - z ln T: with z fixed, zeta is the mean of ln L + z ln T.
      double zeta = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        zeta += std::log(curve.loss[i]) + rate * std::log(curve.test_time[i]);
      }
      starts.push_back({0.0, zeta / n, std::log(rate)});
      continue;
    }
    double mb = 0.0, ml = 0.0;
    std::vector<double> b(n);
    for (std::size_t i = 0; i < n; ++i) {
      b[i] = basis(options.form, rate, curve.test_time[i]);
      mb += b[i];
      ml += curve.loss[i];
    }
    mb /= n;
    ml /= n;
    double sbb = 0.0, sbl = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      sbb += (b[i] - mb) * (b[i] - mb);
      sbl += (b[i] - mb) * (curve.loss[i] - ml);
    }
    const double c1 = sbb > 0.0 ? sbl / sbb : 0.0;
    const double c0 = ml - c1 * mb;
    double l_inf = std::min(c0, 0.999 * min_loss);
    if (!(l_inf > 0.0)) {
      l_inf = 0.5 * min_loss;  // a floor must stay positive for its logarithm
    }
    const double amplitude = std::max(c1, 1e-6);
    starts.push_back({std::log(l_inf), std::log(amplitude), std::log(rate)});
  }
  return starts;
}

struct Solution {
  std::array<double, 3> p{};
  double objective = std::numeric_limits<double>::infinity();
  bool usable = false;
};

Solution solve_from(const Curve& curve,
                    const SatExpOptions& options,
                    const std::array<double, 3>& start) {
  Solution solution;
  solution.p = start;
  ceres::Problem::Options problem_options;
  problem_options.loss_function_ownership = ceres::DO_NOT_TAKE_OWNERSHIP;
  ceres::Problem problem(problem_options);
  ceres::HuberLoss huber_loss(options.huber_delta);
  ceres::LossFunction* loss =
      options.objective == SatExpObjective::kHuberSum ? &huber_loss : nullptr;
  const bool floor = has_floor(options.form);
  double* block = floor ? solution.p.data() : solution.p.data() + 1;
  const bool linear = options.residuals == ResidualScale::kLinear;
  for (std::size_t i = 0; i < curve.loss.size(); ++i) {
    if (floor) {
      problem.AddResidualBlock(
          new ceres::AutoDiffCostFunction<FloorResidual, 1, 3>(
              new FloorResidual{options.form, curve.test_time[i], curve.loss[i], linear}),
          loss,
          block);
    } else {
      problem.AddResidualBlock(new ceres::AutoDiffCostFunction<NoFloorResidual, 1, 2>(
                                   new NoFloorResidual{curve.test_time[i], curve.loss[i], linear}),
                               loss,
                               block);
    }
  }
  detail::quiet_solver_logging();
  ceres::Solver::Options solver_options;
  solver_options.minimizer_type = ceres::TRUST_REGION;
  solver_options.trust_region_strategy_type = ceres::LEVENBERG_MARQUARDT;
  solver_options.linear_solver_type = ceres::DENSE_QR;
  solver_options.max_num_iterations = options.max_iterations;
  solver_options.function_tolerance = 1e-15;
  solver_options.gradient_tolerance = 1e-16;
  solver_options.parameter_tolerance = 1e-14;
  solver_options.logging_type = ceres::SILENT;
  solver_options.num_threads = 1;
  ceres::Solver::Summary summary;
  ceres::Solve(solver_options, &problem, &summary);
  solution.usable =
      summary.IsSolutionUsable() &&
      std::all_of(solution.p.begin(), solution.p.end(), [](double v) { return std::isfinite(v); });
  if (solution.usable) {
    solution.objective = 2.0 * summary.final_cost;  // Ceres reports (1/2) sum rho(r^2)
  }
  return solution;
}

void check_curve(const std::vector<double>& test_time,
                 const std::vector<double>& loss,
                 const std::string& prefix) {
  detail::check_same_size(prefix + "loss", loss.size(), prefix + "test_time", test_time.size());
  detail::check_positive(test_time, prefix + "test_time", "test-time recurrence T");
  detail::check_positive(loss, prefix + "loss", "loss in nats");
  std::vector<double> distinct = test_time;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.size() < 4) {
    throw InputError(prefix + "test_time",
                     "has " + std::to_string(distinct.size()) +
                         " distinct T; a saturating fit needs at least 4");
  }
}

void validate(const SatExpOptions& options) {
  if (!(options.huber_delta > 0.0)) {
    throw InputError("options.huber_delta", options.huber_delta, "expected a positive delta");
  }
  if (options.start_rates.empty()) {
    throw InputError("options.start_rates", "is empty; expected rates such as 0.05 ... 4");
  }
  detail::check_positive(options.start_rates, "options.start_rates", "rate z0");
  if (!(options.flat_amplitude >= 0.0)) {
    throw InputError("options.flat_amplitude", options.flat_amplitude, "expected a value >= 0");
  }
  if (options.max_iterations < 1) {
    throw InputError("options.max_iterations", options.max_iterations, "expected a count >= 1");
  }
}

// Standard errors of (L_inf, Z, z) from (J'J)^-1 s^2, J the Jacobian of the residuals (log or
// linear) with respect to the natural (not log) parameters; +infinity when J'J is singular.
std::vector<double> standard_errors(const SatExpFit& fit,
                                    const Curve& curve,
                                    ResidualScale residuals) {
  const bool floor = has_floor(fit.form);
  const int p = floor ? 3 : 2;
  const int n = static_cast<int>(curve.loss.size());
  if (n <= p) {
    return std::vector<double>(p, kNotComputed);
  }
  Eigen::MatrixXd jacobian(n, p);
  double rss = 0.0;
  for (int i = 0; i < n; ++i) {
    const double t = curve.test_time[i];
    const double b = basis(fit.form, fit.rate, t);
    // d ln Lhat = d Lhat / Lhat; a linear residual's derivative is d Lhat itself.
    const double value = residuals == ResidualScale::kLinear
                             ? 1.0
                             : model_value(fit.form, fit.l_inf, fit.amplitude, fit.rate, t);
    int column = 0;
    if (floor) {
      jacobian(i, column++) = 1.0 / value;
    }
    jacobian(i, column++) = b / value;
    jacobian(i, column) = fit.amplitude * b * basis_log_slope(fit.form, t) / value;
    rss += fit.residuals[i] * fit.residuals[i];
  }
  const Eigen::MatrixXd normal = jacobian.transpose() * jacobian;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(normal);
  const double largest = eigen.eigenvalues().maxCoeff();
  if (!(largest > 0.0) || eigen.eigenvalues().minCoeff() <= 1e-13 * largest) {
    return std::vector<double>(p, std::numeric_limits<double>::infinity());
  }
  const Eigen::MatrixXd covariance = (rss / (n - p)) * normal.inverse();
  std::vector<double> se(p);
  for (int j = 0; j < p; ++j) {
    se[j] = std::sqrt(std::max(0.0, covariance(j, j)));
  }
  return se;
}

SatExpFit fit_curve(const Curve& curve, const SatExpOptions& options) {
  SatExpFit fit;
  fit.law = "satexp";
  fit.form = options.form;
  fit.n = static_cast<int>(curve.loss.size());
  const auto starts = starts_for(curve, options);
  fit.starts = static_cast<int>(starts.size());
  Solution best;
  for (const auto& start : starts) {
    const Solution solution = solve_from(curve, options, start);
    if (!solution.usable) {
      continue;
    }
    ++fit.successes;
    if (solution.objective < best.objective) {
      best = solution;
    }
  }
  const bool floor = has_floor(options.form);
  if (!best.usable) {
    fit.status = FitStatus::kFailed;
    fit.message = "no start gave a finite fit";
    fit.coefficients = {{"y_inf"}, {"Z"}, {"z"}};
    if (!floor) {
      fit.coefficients.erase(fit.coefficients.begin());
    }
    return fit;
  }
  fit.l_inf = floor ? std::exp(best.p[0]) : 0.0;
  fit.amplitude = std::exp(best.p[1]);
  fit.rate = std::exp(best.p[2]);
  if (options.form == TestTimeForm::kExponential) {
    fit.half_life = std::log(2.0) / fit.rate;
  }
  fit.huber_sum = 0.0;
  double squares = 0.0;
  for (int i = 0; i < fit.n; ++i) {
    const double value =
        model_value(fit.form, fit.l_inf, fit.amplitude, fit.rate, curve.test_time[i]);
    const double r = residual_of(options.residuals, value, curve.loss[i]);
    fit.residuals.push_back(r);
    fit.huber_sum += detail::huber_value(r, options.huber_delta);
    squares += r * r;
  }
  fit.huber_mean = fit.huber_sum / fit.n;
  fit.objective = options.objective == SatExpObjective::kHuberSum ? fit.huber_sum : squares;
  fit.objective_per_point = fit.objective / fit.n;

  const auto [t_min, t_max] = std::minmax_element(curve.test_time.begin(), curve.test_time.end());
  const double decay = fit.amplitude * std::abs(basis(fit.form, fit.rate, *t_min) -
                                                basis(fit.form, fit.rate, *t_max));
  if (floor && (fit.amplitude < options.flat_amplitude || decay < options.flat_amplitude)) {
    fit.status = FitStatus::kFlat;
    fit.message = "the fitted curve falls by " + detail::format_number(decay) +
                  " nats over the sampled T: no decay to fit, so Z and z are not identified";
  } else {
    fit.status = FitStatus::kOk;
    // A decay that is over by the second sampled T is seen by the first point alone: the data fix
    // Z basis(z, T_1) and nothing else, so Z and z can run off together (Z = 3e7, z = 22).
    std::vector<double> sampled(curve.test_time.begin(), curve.test_time.end());
    std::sort(sampled.begin(), sampled.end());
    sampled.erase(std::unique(sampled.begin(), sampled.end()), sampled.end());
    const double after_first = fit.amplitude * std::abs(basis(fit.form, fit.rate, sampled[1]) -
                                                        basis(fit.form, fit.rate, *t_max));
    if (after_first < kUnresolvedShare * decay) {
      fit.warnings.push_back(
          "the fitted decay is " + detail::format_number(100.0 * (1.0 - after_first / decay)) +
          "% over by T = " + detail::format_number(sampled[1]) +
          ", so only T = " + detail::format_number(sampled[0]) +
          " sees it: Z and z are not separately identified; sample smaller T to resolve them");
    }
  }

  if (floor && std::isfinite(options.mean_recurrence)) {
    for (int i = 0; i < fit.n; ++i) {
      if (std::abs(curve.test_time[i] - options.mean_recurrence) <=
          1e-9 * options.mean_recurrence) {
        fit.floor_gap = std::abs(fit.l_inf - curve.loss[i]) / curve.loss[i];
        break;
      }
    }
  }

  const std::vector<double> se = standard_errors(fit, curve, options.residuals);
  if (floor) {
    fit.coefficients = {
        {"y_inf", fit.l_inf, se[0]}, {"Z", fit.amplitude, se[1]}, {"z", fit.rate, se[2]}};
  } else {
    fit.coefficients = {{"Z", fit.amplitude, se[0]}, {"z", fit.rate, se[1]}};
  }
  return fit;
}

}  // namespace

const char* to_string(TestTimeForm form) {
  switch (form) {
    case TestTimeForm::kExponential:
      return "exp";
    case TestTimeForm::kShiftedPower:
      return "(1+T)^-z";
    case TestTimeForm::kPower:
      return "T^-z";
    case TestTimeForm::kPowerNoFloor:
      break;
  }
  return "no floor";
}

double SatExpFit::predict(double test_time) const {
  return model_value(form, l_inf, amplitude, rate, test_time);
}

SatExpFit fit_satexp(const std::vector<double>& test_time,
                     const std::vector<double>& loss,
                     const SatExpOptions& options) {
  validate(options);
  check_curve(test_time, loss, "");
  return fit_curve({test_time, loss}, options);
}

SatExpExtrapolation satexp_extrapolation(const std::vector<double>& test_time,
                                         const std::vector<double>& loss,
                                         double mean_recurrence,
                                         const SatExpOptions& options) {
  validate(options);
  detail::check_same_size("loss", loss.size(), "test_time", test_time.size());
  detail::check_positive(test_time, "test_time", "test-time recurrence T");
  detail::check_positive(loss, "loss", "loss in nats");
  if (!(mean_recurrence > 0.0) || !std::isfinite(mean_recurrence)) {
    throw InputError("mean_recurrence", mean_recurrence, "expected a positive mu_rec");
  }
  Curve inside, outside;
  for (std::size_t i = 0; i < loss.size(); ++i) {
    Curve& part = test_time[i] <= mean_recurrence ? inside : outside;
    part.test_time.push_back(test_time[i]);
    part.loss.push_back(loss[i]);
  }
  if (outside.loss.empty()) {
    throw InputError("test_time",
                     "has no T above mu_rec = " + detail::format_number(mean_recurrence) +
                         "; the extrapolation protocol scores T > mu_rec");
  }
  check_curve(inside.test_time, inside.loss, "(T <= mu_rec) ");

  SatExpExtrapolation result;
  result.fit = fit_curve(inside, options);
  result.scored_points = static_cast<int>(outside.loss.size());
  if (result.fit.status == FitStatus::kFailed) {
    return result;
  }
  double huber_sum = 0.0, relative = 0.0;
  for (std::size_t i = 0; i < outside.loss.size(); ++i) {
    const double predicted = result.fit.predict(outside.test_time[i]);
    huber_sum += detail::huber_value(residual_of(options.residuals, predicted, outside.loss[i]),
                                     options.huber_delta);
    relative += std::abs(predicted - outside.loss[i]) / outside.loss[i];
  }
  result.huber_mean = huber_sum / result.scored_points;
  result.mean_relative_error_percent = 100.0 * relative / result.scored_points;
  return result;
}

TestTimeFormComparison compare_test_time_forms(const std::vector<double>& test_time,
                                               const std::vector<double>& loss,
                                               const SatExpOptions& options) {
  TestTimeFormComparison comparison;
  for (TestTimeForm form : {TestTimeForm::kExponential,
                            TestTimeForm::kShiftedPower,
                            TestTimeForm::kPower,
                            TestTimeForm::kPowerNoFloor}) {
    SatExpOptions form_options = options;
    form_options.form = form;
    comparison.fits.push_back(fit_satexp(test_time, loss, form_options));
    const SatExpFit& fit = comparison.fits.back();
    if (fit.status != FitStatus::kFailed &&
        (comparison.best < 0 || fit.huber_mean < comparison.fits[comparison.best].huber_mean)) {
      comparison.best = static_cast<int>(comparison.fits.size()) - 1;
    }
  }
  return comparison;
}

}  // namespace parcae::fitting
