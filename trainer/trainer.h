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
// FLOPs: every step spends batch_tokens * train_flops_per_token(model, job.flop_convention)
// (sweeps/flop_model.h), the planner's formula, so a job planned for budget C spends C up to the
// rounding of D to whole steps.
//
// Data parallel (docs/trainer.md, "Ranks"): a job with gpus = N trains on N processes, one per
// GPU, each holding the whole model. Rank r computes the gradient of its share of the global
// batch; the gradients are summed across ranks (NCCL on the GPU, Gloo on the CPU) while the
// backward pass runs, and every rank applies the same optimizer step. Rows, depth draws and h0
// are keyed by their position in the global batch, so N ranks train the same model as one rank
// with the same batch_tokens, up to the order of floating-point sums. Rank 0 alone writes
// events and checkpoints, and a checkpoint resumes on any number of ranks.
//
// This header needs no LibTorch, so the command line compiles without it.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>

#include "sweeps/run_contract.h"

namespace parcae::trainer {

// Exit codes of parcae-train: the contract's (sweeps/run_contract.h, docs/trainer.md).
using sweeps::kExitBadInput;
using sweeps::kExitDone;
using sweeps::kExitError;
using sweeps::kExitPreempted;

// Where this process sits in a data-parallel job, and where its rendezvous is.
struct RankOptions {
  int rank = 0;        // 0 .. world_size - 1; rank 0 writes events and checkpoints
  int world_size = 1;  // must equal the job's gpus
  int local_rank = 0;  // rank on this host: picks the GPU when several are visible
  std::string master_addr = "127.0.0.1";  // host of rank 0, which serves the TCP store
  int master_port = 0;                    // its port
  std::string source;                     // "RANK", "SLURM_PROCID": which variables said so
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR (default 127.0.0.1) and
// MASTER_PORT, or, when RANK is unset, Slurm's SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID with
// the same MASTER_ADDR and MASTER_PORT. nullopt when neither RANK nor SLURM_PROCID is set, or
// when only Slurm's variables are set and SLURM_NTASKS is missing or 1 (a batch script's own
// shell, not an `srun` task). Throws InputError naming the variable on a malformed value, a rank
// outside [0, world_size), or a missing MASTER_PORT when world_size > 1.
std::optional<RankOptions> ranks_from_environment();

struct TrainOptions {
  std::string job_path;  // JOB.json
  std::string out_dir;   // DIR: events.jsonl and checkpoint/ go here; created when missing
  // When it becomes true (a signal handler sets it), the current step finishes, a checkpoint is
  // written, a `preempted` event follows and train() returns with status kPreempted.
  const std::atomic<bool>* stop_requested = nullptr;
  // Human progress, one line per logged step and evaluation; null for none. Only rank 0 writes.
  std::ostream* progress = nullptr;
  // Run the models' memory-bound operations as their ATen compositions instead of the fused
  // kernels (trainer/fused_ops.h), to compare the two. The CPU always uses the compositions.
  bool aten_kernels = false;
  // With a path, a Kineto trace of optimizer steps [profile_first_step, + profile_steps) (0-based)
  // is written there (CUDA builds of LibTorch 2.x; elsewhere a note says there is none).
  std::string profile_path;
  int64_t profile_first_step = 10;
  int64_t profile_steps = 3;
  // This process's rank. nullopt trains alone, without a process group, and needs job.gpus = 1.
  // Set (world_size 1 included), the ranks meet through a TCP store at master_addr:master_port
  // and sum their gradients through c10d: NCCL on CUDA, Gloo on the CPU.
  std::optional<RankOptions> ranks;
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

// Runs or resumes the job on this rank. Throws parcae::InputError for a bad job file, bad shards or
// a run folder holding another job's checkpoint (exit kExitBadInput), and parcae::Error or
// std::exception for failures while running (exit kExitError); in both cases rank 0 appends an
// `error` event first when DIR/events.jsonl could be opened. A job with gpus > 1 and no `ranks`
// is bad input: the command line launches the ranks (trainer/launcher.h).
TrainResult train(const TrainOptions& options);

}  // namespace parcae::trainer
