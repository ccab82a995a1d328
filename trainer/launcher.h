// The rank launcher of parcae-train: one process per GPU of a data-parallel job, like torchrun.
//
// The local orchestrator starts one parcae-train per job, with CUDA_VISIBLE_DEVICES listing the
// job's GPUs, and signals that process's group. When the job has gpus = N > 1 and no rank
// variables are set (trainer.h, ranks_from_environment), parcae-train runs launch_ranks(): it
// starts N copies of itself with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
// MASTER_PORT, each seeing one of the visible GPUs, forwards SIGTERM to them when a stop is
// requested, and returns the worst of their exit codes (trainer.h): a failure (1 or a death by
// signal) before bad input (2) before preempted (143) before done (0). When one rank fails, the
// others get kFailureGraceSeconds to fail on their own (all ranks usually meet the same bad
// input, and rank 0 writes its error event), then are killed, since a survivor would wait in a
// collective forever; an `error` event naming the rank is appended when rank 0 wrote none.
// Under Slurm, `srun` starts the ranks and this is not used. Needs no LibTorch.
#pragma once

#include <atomic>
#include <ostream>
#include <string>
#include <vector>

namespace parcae::trainer {

inline constexpr int kFailureGraceSeconds = 10;

struct LaunchOptions {
  std::string executable;         // the program to start per rank, usually /proc/self/exe
  std::vector<std::string> args;  // its arguments, without argv[0]
  int ranks = 1;                  // world size: the job's gpus
  // Assign one GPU per rank through CUDA_VISIBLE_DEVICES: rank r gets the r-th entry of the
  // launcher's own list, or "r" when the launcher has none. False for CPU jobs.
  bool assign_gpus = true;
  std::string out_dir;  // the run folder: where the error event of a failed rank goes
  // Set by the signal handler of the caller; forwarded to the ranks as SIGTERM.
  const std::atomic<bool>* stop_requested = nullptr;
  std::ostream* progress = nullptr;  // one line per rank started and per rank ended
};

// Starts the ranks, waits for all of them and returns the exit code for the job. Throws
// InputError when CUDA_VISIBLE_DEVICES lists fewer GPUs than ranks, and parcae::Error when a
// process cannot be started; nothing has run in either case.
int launch_ranks(const LaunchOptions& options);

// The worse of two parcae-train exit codes, in the order above.
int worse_exit_code(int a, int b);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
int free_local_port();

}  // namespace parcae::trainer
