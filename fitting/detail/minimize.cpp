// Ceres L-BFGS on our objectives, the success rule of §1 and the deterministic multi-start.
#include "fitting/detail/minimize.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include <ceres/first_order_function.h>
#include <ceres/gradient_problem.h>
#include <ceres/gradient_problem_solver.h>
#include <ceres/iteration_callback.h>
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

// SciPy's L-BFGS-B test (lbfgsb.f, factr * epsmch): (J_k - J_k+1) / max(|J_k|, |J_k+1|, 1) <=
// tolerance. Ceres reports cost_change = J_k - J_k+1 after every accepted step.
class ScipyFunctionRule : public ceres::IterationCallback {
 public:
  explicit ScipyFunctionRule(double tolerance) : tolerance_(tolerance) {}
  ceres::CallbackReturnType operator()(const ceres::IterationSummary& summary) override {
    if (summary.iteration == 0 || !summary.step_is_successful) {
      return ceres::SOLVER_CONTINUE;
    }
    const double before = summary.cost + summary.cost_change;
    const double scale = std::max({std::abs(before), std::abs(summary.cost), 1.0});
    return summary.cost_change <= tolerance_ * scale ? ceres::SOLVER_TERMINATE_SUCCESSFULLY
                                                     : ceres::SOLVER_CONTINUE;
  }

 private:
  double tolerance_;
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

  ScipyFunctionRule scipy_rule(options.scipy_function_tolerance);
  if (options.scipy_function_tolerance > 0.0) {
    solver_options.callbacks.push_back(&scipy_rule);
  }

  ceres::GradientProblem problem(new BorrowedFunction(objective));
  ceres::GradientProblemSolver::Summary summary;
  ceres::Solve(solver_options, problem, result.x.data(), &summary);

  result.converged = summary.termination_type == ceres::CONVERGENCE ||
                     summary.termination_type == ceres::USER_SUCCESS;
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
                                     int threads,
                                     const ProgressCallback& progress) {
  MultiStartResult result;
  result.runs.resize(starts.size());
  std::mutex progress_lock;
  int finished = 0;
  parallel_for(static_cast<int>(starts.size()), threads, [&](int i) {
    result.runs[i] = minimize_lbfgs(objective, starts[i], options);
    if (progress) {
      const std::lock_guard<std::mutex> hold(progress_lock);
      progress(++finished, static_cast<int>(starts.size()));
    }
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

namespace {

// The successful runs among `candidates`, by J (ties to the lower index), skipping any whose
// point lies within `tolerance` (relative to max(1, |y_j|), in every entry) of one already
// chosen; at most max_count.
std::vector<int> distinct_runs(const std::vector<MinimizeResult>& runs,
                               std::vector<int> candidates,
                               double tolerance,
                               int max_count) {
  candidates.erase(
      std::remove_if(candidates.begin(), candidates.end(), [&](int i) { return !runs[i].success; }),
      candidates.end());
  std::stable_sort(candidates.begin(), candidates.end(), [&](int l, int r) {
    return runs[l].value < runs[r].value;
  });
  std::vector<int> kept;
  for (int i : candidates) {
    if (static_cast<int>(kept.size()) >= max_count) {
      break;
    }
    const std::vector<double>& x = runs[i].x;
    const bool duplicate = std::any_of(kept.begin(), kept.end(), [&](int k) {
      const std::vector<double>& y = runs[k].x;
      for (std::size_t j = 0; j < x.size(); ++j) {
        if (std::abs(x[j] - y[j]) > tolerance * std::max(1.0, std::abs(y[j]))) {
          return false;
        }
      }
      return true;
    });
    if (!duplicate) {
      kept.push_back(i);
    }
  }
  return kept;
}

std::vector<int> all_indices(std::size_t count) {
  std::vector<int> indices(count);
  for (std::size_t i = 0; i < count; ++i) {
    indices[i] = static_cast<int>(i);
  }
  return indices;
}

}  // namespace

MultiStartResult minimize_multistart_screened(const Objective& objective,
                                              const std::vector<std::vector<double>>& starts,
                                              const MinimizerOptions& screening,
                                              const MinimizerOptions& polish,
                                              int polish_count,
                                              int threads,
                                              const ProgressCallback& progress) {
  MultiStartResult result = minimize_multistart(objective, starts, screening, threads, progress);
  // Screening end points of one basin scatter along its flat directions (the A-B ridge of §3) by
  // much more than the polished ones do, hence a coarser test for "the same optimum" here.
  constexpr double kSameBasin = 1e-2;
  result.polished =
      distinct_runs(result.runs, all_indices(result.runs.size()), kSameBasin, polish_count);
  std::vector<MinimizeResult> polished(result.polished.size());
  parallel_for(static_cast<int>(result.polished.size()), threads, [&](int k) {
    polished[k] = minimize_lbfgs(objective, result.runs[result.polished[k]].x, polish);
  });
  result.best = -1;
  for (std::size_t k = 0; k < polished.size(); ++k) {
    const int i = result.polished[k];
    polished[k].iterations += result.runs[i].iterations;
    result.successes += (polished[k].success ? 1 : 0) - (result.runs[i].success ? 1 : 0);
    result.runs[i] = std::move(polished[k]);
    const MinimizeResult& run = result.runs[i];
    if (run.success && (result.best < 0 || run.value < result.runs[result.best].value ||
                        (run.value == result.runs[result.best].value && i < result.best))) {
      result.best = i;
    }
  }
  return result;
}

std::vector<std::vector<double>> distinct_optima(const MultiStartResult& result, int max_count) {
  const std::vector<int> candidates =
      result.polished.empty() ? all_indices(result.runs.size()) : result.polished;
  std::vector<std::vector<double>> kept;
  for (int i : distinct_runs(result.runs, candidates, 1e-6, max_count)) {
    kept.push_back(result.runs[i].x);
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
                               options.success_gradient,
                               options.scipy_function_tolerance};
  const char* names[] = {"function_tolerance",
                         "gradient_tolerance",
                         "parameter_tolerance",
                         "success_gradient",
                         "scipy_function_tolerance"};
  for (int k = 0; k < 5; ++k) {
    if (!(tolerances[k] >= 0.0) || !std::isfinite(tolerances[k])) {
      throw InputError(prefix + "." + names[k], tolerances[k], "expected a finite value >= 0");
    }
  }
}

}  // namespace parcae::fitting::detail
