// parcae::trainer — trains one cell of a sweep: `parcae-train --job JOB.json --out DIR`.
//
// train() reads the job file (sweeps/job_config.h), builds the model of parcae.md §2–§5 in
// LibTorch, trains it for exactly job.max_steps() optimizer steps with the sampler, optimizer
// and schedule of §6 and §8, evaluates the validation loss at every test-time depth of
// eval.depths (§10), and writes DIR/events.jsonl (docs/events.md) and checkpoints under
// DIR/checkpoint/. It never opens the results database: the orchestrator ingests the events.
// Started again on the same DIR it resumes from the newest checkpoint and replays the same
// random draws, so the loss curve equals an uninterrupted run's (bitwise on the CPU).
//
// FLOPs: every step spends batch_tokens * train_flops_per_token(model) (sweeps/flop_model.h),
// the planner's formula, so a job planned for budget C spends C up to the rounding of D to
// whole steps.
//
// This header needs no LibTorch, so the command line compiles without it.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>

namespace parcae::trainer {

// Exit codes of parcae-train (docs/trainer.md).
inline constexpr int kExitDone = 0;         // finished; the last event says done or diverged
inline constexpr int kExitError = 1;        // failed; the last event is an error
inline constexpr int kExitBadInput = 2;     // bad job file, data or run folder; nothing trained
inline constexpr int kExitPreempted = 143;  // 128 + SIGTERM: checkpointed, run again to resume

struct TrainOptions {
  std::string job_path;  // JOB.json
  std::string out_dir;   // DIR: events.jsonl and checkpoint/ go here; created when missing
  // When it becomes true (a signal handler sets it), the current step finishes, a checkpoint is
  // written, a `preempted` event follows and train() returns with status kPreempted.
  const std::atomic<bool>* stop_requested = nullptr;
  // Human progress, one line per logged step and evaluation; null for none.
  std::ostream* progress = nullptr;
};

enum class TrainStatus {
  kDone,       // ran every step and evaluated
  kDiverged,   // the training loss became non-finite; stopped there
  kPreempted,  // stopped on request after a checkpoint
};

std::string to_string(TrainStatus status);

struct TrainResult {
  TrainStatus status = TrainStatus::kDone;
  int64_t steps = 0;   // optimizer steps completed, including any before a resume
  int64_t tokens = 0;  // training tokens consumed
  double flops = 0.0;  // training FLOPs spent (tokens * F)
  double loss_train = std::numeric_limits<double>::quiet_NaN();  // last step's mean, nats/token
  // Validation loss at T = mu_rec (the single depth of a Transformer); NaN unless done.
  double loss_val = std::numeric_limits<double>::quiet_NaN();
  double wall_time_s = 0.0;  // training wall time over every session of this run
  std::string checkpoint;    // newest checkpoint written by this session, "" if none

  int exit_code() const { return status == TrainStatus::kPreempted ? kExitPreempted : kExitDone; }
  std::string summary() const;  // one line for stderr
};

// Runs or resumes the job. Throws parcae::InputError for a bad job file, bad shards or a run
// folder holding another job's checkpoint (exit kExitBadInput), and parcae::Error or
// std::exception for failures while running (exit kExitError); in both cases an `error` event
// is appended first when DIR/events.jsonl could be opened.
TrainResult train(const TrainOptions& options);

}  // namespace parcae::trainer
