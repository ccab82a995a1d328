// Ceres L-BFGS on our objectives, the success rule of §1 and the deterministic multi-start.
#include "fitting/detail/minimize.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include <ceres/first_order_function.h>
#include <ceres/gradient_problem.h>
#include <ceres/gradient_problem_solver.h>
#include <glog/logging.h>

#include "fitting/detail/numerics.h"

namespace parcae::fitting::detail {
namespace {

// Ceres owns the FirstOrderFunction it is given, so each solve wraps the shared objective.
class BorrowedFunction : public ceres::FirstOrderFunction {
 public:
  explicit BorrowedFunction(const Objective& objective) : objective_(objective) {}
  bool Evaluate(const double* parameters, double* cost, double* gradient) const override {
    return objective_.evaluate(parameters, cost, gradient);
  }
  int NumParameters() const override { return objective_.size(); }

 private:
  const Objective& objective_;
};

bool all_finite(const std::vector<double>& x) {
  return std::all_of(x.begin(), x.end(), [](double v) { return std::isfinite(v); });
}

}  // namespace

void quiet_solver_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Ceres's line search logs through glog at WARNING when its interpolating polynomial
    // degenerates near an optimum; a library must not print, and the outcome is in the result.
    if (FLAGS_minloglevel < google::GLOG_ERROR) {
      FLAGS_minloglevel = google::GLOG_ERROR;
    }
  });
}

MinimizeResult minimize_lbfgs(const Objective& objective,
                              const std::vector<double>& start,
                              const MinimizerOptions& options) {
  MinimizeResult result;
  result.x = start;
  double value = 0.0;
  if (!all_finite(start) || !objective.evaluate(start.data(), &value, nullptr)) {
    return result;  // J is not finite at the start: nothing to descend from
  }

  quiet_solver_logging();
  ceres::GradientProblemSolver::Options solver_options;
  solver_options.line_search_direction_type = ceres::LBFGS;
  solver_options.max_num_iterations = options.max_iterations;
  solver_options.function_tolerance = options.function_tolerance;
  solver_options.gradient_tolerance = options.gradient_tolerance;
  solver_options.parameter_tolerance = options.parameter_tolerance;
  solver_options.logging_type = ceres::SILENT;
  solver_options.minimizer_progress_to_stdout = false;

  ceres::GradientProblem problem(new BorrowedFunction(objective));
  ceres::GradientProblemSolver::Summary summary;
  ceres::Solve(solver_options, problem, result.x.data(), &summary);

  result.converged = summary.termination_type == ceres::CONVERGENCE;
  result.iterations = static_cast<int>(summary.iterations.size());
  std::vector<double> gradient(start.size());
  const bool finite = all_finite(result.x) &&
                      objective.evaluate(result.x.data(), &result.value, gradient.data()) &&
                      all_finite(gradient);
  if (!finite) {
    result.value = kNotComputed;
    return result;
  }
  result.gradient_max_norm = 0.0;
  for (double g : gradient) {
    result.gradient_max_norm = std::max(result.gradient_max_norm, std::abs(g));
  }
  result.success = result.converged || result.gradient_max_norm <= options.success_gradient;
  return result;
}

MultiStartResult minimize_multistart(const Objective& objective,
                                     const std::vector<std::vector<double>>& starts,
                                     const MinimizerOptions& options,
                                     int threads) {
  MultiStartResult result;
  result.runs.resize(starts.size());
  parallel_for(static_cast<int>(starts.size()), threads, [&](int i) {
    result.runs[i] = minimize_lbfgs(objective, starts[i], options);
  });
  for (std::size_t i = 0; i < result.runs.size(); ++i) {
    const MinimizeResult& run = result.runs[i];
    if (!run.success) {
      continue;
    }
    ++result.successes;
    // Strictly lower J replaces the best, so equal J keeps the lower start index.
    if (result.best < 0 || run.value < result.runs[result.best].value) {
      result.best = static_cast<int>(i);
    }
  }
  return result;
}

std::vector<std::vector<double>> distinct_optima(const MultiStartResult& result, int max_count) {
  std::vector<int> order;
  for (std::size_t i = 0; i < result.runs.size(); ++i) {
    if (result.runs[i].success) {
      order.push_back(static_cast<int>(i));
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](int l, int r) {
    return result.runs[l].value < result.runs[r].value;
  });
  std::vector<std::vector<double>> kept;
  for (int i : order) {
    if (static_cast<int>(kept.size()) >= max_count) {
      break;
    }
    const std::vector<double>& x = result.runs[i].x;
    const bool duplicate = std::any_of(kept.begin(), kept.end(), [&](const auto& y) {
      for (std::size_t j = 0; j < x.size(); ++j) {
        if (std::abs(x[j] - y[j]) > 1e-6 * std::max(1.0, std::abs(y[j]))) {
          return false;
        }
      }
      return true;
    });
    if (!duplicate) {
      kept.push_back(x);
    }
  }
  return kept;
}

void validate_minimizer_options(const MinimizerOptions& options, const std::string& prefix) {
  if (options.max_iterations < 1) {
    throw InputError(prefix + ".max_iterations",
                     options.max_iterations,
                     "expected a positive number of iterations, such as 10000");
  }
  const double tolerances[] = {options.function_tolerance,
                               options.gradient_tolerance,
                               options.parameter_tolerance,
                               options.success_gradient};
  const char* names[] = {
      "function_tolerance", "gradient_tolerance", "parameter_tolerance", "success_gradient"};
  for (int k = 0; k < 4; ++k) {
    if (!(tolerances[k] >= 0.0) || !std::isfinite(tolerances[k])) {
      throw InputError(prefix + "." + names[k], tolerances[k], "expected a finite value >= 0");
    }
  }
}

}  // namespace parcae::fitting::detail
