// The scheduler's one decision, exposed for its tests and shared with the Slurm backend: how an
// attempt ended, and what its job becomes, from the exit code, the events ingested and the job's
// retry budgets.
//
//   exit 0 with a done event      -> done (or diverged, as the event says)
//   exit 0 without one           -> failed attempt (counted, retried within the budget)
//   exit 143 (SIGTERM, saved)    -> preempted: requeued on the preemption budget; while the
//                                   orchestrator itself is stopping, requeued without counting
//   exit 2 (bad input), 125-127  -> failed at once: a deterministic error is not retried
//   killed for silence (no event for --silence-limit s) -> failed attempt, retried
//   any other exit or signal     -> failed attempt, retried while failures <= retries
//   unknown exit (adopted, or the process vanished) -> done/diverged when a done event is in,
//                                   else lost: requeued from its checkpoint on the preemption
//                                   budget
#pragma once

#include <optional>
#include <string>

#include "orchestrator/detail/resources.h"
#include "orchestrator/orchestrator.h"
#include "results/results.h"

namespace parcae::orchestrator::detail {

struct ExitFacts {
  std::optional<int> exit_code;              // nullopt when not known
  std::optional<std::string> final_status;   // the done event's status, if one was ingested
  std::optional<std::string> error_message;  // the last error event's message, if any
  int failures = 0;                          // failed attempts so far (before this one)
  int preemptions = 0;                       // preempted or lost attempts so far
  bool stopping = false;                     // the orchestrator is stopping on a signal
  // Set when the orchestrator killed the trainer for writing no event for this many seconds.
  std::optional<double> silent_s;
};

struct RetryBudgets {
  int retries = 2;
  int preemption_retries = 100;
};

results::AttemptEnd decide_attempt_end(const ExitFacts& facts, const RetryBudgets& budgets);

// The slots of a local run: --gpus against the GPUs this process may use (CUDA_VISIBLE_DEVICES,
// Slurm's allocation, nvidia-smi), --jobs-per-gpu (else the sweep's resources.jobs_per_gpu, else
// default_jobs_per_gpu) and --max-parallel. InputError for a --gpus list outside those GPUs.
SlotPlan slot_plan_for(const RunOptions& o,
                       const std::optional<results::SweepRecord>& sweep,
                       int default_jobs_per_gpu = 1);

// The options every backend reads (--retries, --preemption-retries, --poll-interval); InputError
// naming the flag and its value when one is out of range.
void check_shared_run_options(const RunOptions& o);

}  // namespace parcae::orchestrator::detail
