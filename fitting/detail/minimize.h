// L-BFGS from many starts (§1): Ceres GradientProblemSolver on an Objective, the success rule,
// and the deterministic choice of the best run whatever the number of threads.
#pragma once

#include <string>
#include <vector>

#include "fitting/detail/objectives.h"
#include "fitting/fitting.h"

namespace parcae::fitting::detail {

struct MinimizeResult {
  std::vector<double> x;
  double value = kNotComputed;
  bool converged = false;  // the solver reported convergence
  // Finite J and parameters, and convergence or a max-norm gradient <= success_gradient (§1).
  bool success = false;
  double gradient_max_norm = kNotComputed;
  int iterations = 0;
};

// One L-BFGS solve from `start`; never throws for a bad start (it comes back with success false).
MinimizeResult minimize_lbfgs(const Objective& objective,
                              const std::vector<double>& start,
                              const MinimizerOptions& options);

struct MultiStartResult {
  std::vector<MinimizeResult> runs;  // one per start, in start order
  int best = -1;                     // lowest J among successes, ties to the lower index
  int successes = 0;
  // Starts whose screening end point was polished (minimize_multistart_screened), best screening
  // J first; empty for a one-stage multi-start.
  std::vector<int> polished;
};

// Every start on up to `threads` threads; the result does not depend on the thread count.
// progress (optional) is told (finished, starts.size()) after each start, under a lock.
MultiStartResult minimize_multistart(const Objective& objective,
                                     const std::vector<std::vector<double>>& starts,
                                     const MinimizerOptions& options,
                                     int threads,
                                     const ProgressCallback& progress = nullptr);

// Two stages (docs/fitting.md, "Screening and polishing"). Every start runs with `screening`;
// then the successful end points with the lowest J, skipping any within 1e-2 (relative, max-norm)
// of one already chosen, up to polish_count of them, are continued with `polish`. runs[i] is start
// i's run (screening, then polishing where i is in `polished`, iterations summed), successes
// counts each run by the rule of the stage it ended in, and best is the lowest J among the
// polished successes only, so the kept point always meets the tight rule. Polishing only lowers
// J, so no unpolished run can be better than the best polished one. Deterministic in the thread
// count, as minimize_multistart.
MultiStartResult minimize_multistart_screened(const Objective& objective,
                                              const std::vector<std::vector<double>>& starts,
                                              const MinimizerOptions& screening,
                                              const MinimizerOptions& polish,
                                              int polish_count,
                                              int threads,
                                              const ProgressCallback& progress = nullptr);

// Successful end points (of the polished runs only, when there are any), best first, skipping any
// within 1e-6 (relative, max-norm) of one already kept; at most max_count.
std::vector<std::vector<double>> distinct_optima(const MultiStartResult& result, int max_count);

// Raises glog's minimum level to ERROR once, so Ceres's solver chatter stays off stderr.
void quiet_solver_logging();

// Checks the shared minimizer options; throws InputError naming the bad field.
void validate_minimizer_options(const MinimizerOptions& options, const std::string& prefix);

}  // namespace parcae::fitting::detail
