// parcae-train: `parcae-train --job JOB.json --out DIR` trains one sweep cell (trainer/trainer.h).
// This file maps flags and signals onto parcae::trainer::train and its result onto an exit code:
// 0 done or diverged, 143 preempted after a checkpoint, 1 error, 2 bad input (docs/trainer.md).
// With rank variables in the environment it trains that rank; a job of gpus > 1 without them
// is launched here as that many ranks (trainer/launcher.h).
#include <stdlib.h>

#include <csignal>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>

#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "trainer/launcher.h"
#include "trainer/trainer.h"

namespace {

// Set by SIGTERM, SIGINT and SIGUSR2 (the preemption signals of Slurm and most schedulers).
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "needed inside a signal handler");

extern "C" void request_stop(int /*signal*/) {
  stop_requested.store(true);
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigset_t stops;
  sigemptyset(&stops);
  for (const int signal : {SIGTERM, SIGINT, SIGUSR2}) {
    sigaction(signal, &action, nullptr);
    sigaddset(&stops, signal);
  }
  // The rank launcher starts its ranks with these blocked; a stop sent meanwhile arrives now.
  sigprocmask(SIG_UNBLOCK, &stops, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  // Intel MKL (the CPU BLAS of PyTorch's x86 builds) may pick code paths by the alignment of its
  // operands, and a resumed process lays out memory unlike an uninterrupted one; its conditional
  // reproducibility mode gives the same results for any alignment, so that a CPU run resumes
  // bitwise. Set before the first product; a value from the environment wins.
  setenv("MKL_CBWR", "AUTO", /*overwrite=*/0);
  CLI::App app{"parcae-train: train one cell of a Parcae scaling sweep"};
  parcae::trainer::TrainOptions options;
  app.add_option("--job", options.job_path, "Job file written by `parcae-scale sweep plan`")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", options.out_dir, "Run folder for events.jsonl and checkpoint/")
      ->required();
  std::string kernels = "fused";
  app.add_option("--kernels",
                 kernels,
                 "fused: the fused GPU kernels; aten: their ATen compositions, to compare")
      ->check(CLI::IsMember({"fused", "aten"}));
  app.add_option("--profile",
                 options.profile_path,
                 "Write a Kineto trace (Chrome JSON) of a few steps to this file");
  app.add_option("--profile-from",
                 options.profile_first_step,
                 "First optimizer step (0-based) of the trace")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--profile-steps", options.profile_steps, "Steps in the trace")
      ->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : parcae::trainer::kExitBadInput;
  }

  options.aten_kernels = kernels == "aten";
  install_signal_handlers();
  options.stop_requested = &stop_requested;
  options.progress = &std::cerr;
  std::string prefix = "parcae-train: ";
  try {
    options.ranks = parcae::trainer::ranks_from_environment();
    if (options.ranks && options.ranks->world_size > 1)
      prefix += "rank " + std::to_string(options.ranks->rank) + ": ";
    if (!options.ranks) {
      // A job file that does not read is reported by train() below, with its error event.
      std::optional<parcae::sweeps::JobConfig> job;
      try {
        job = parcae::sweeps::read_job_file(options.job_path);
      } catch (const parcae::Error&) {
      }
      if (job && job->gpus > 1) {
        parcae::trainer::LaunchOptions launch;
        launch.executable = "/proc/self/exe";
        launch.args.assign(argv + 1, argv + argc);
        launch.ranks = job->gpus;
        launch.assign_gpus = job->device != "cpu";
        launch.out_dir = options.out_dir;
        launch.stop_requested = &stop_requested;
        launch.progress = &std::cerr;
        return parcae::trainer::launch_ranks(launch);
      }
    }
    const parcae::trainer::TrainResult result = parcae::trainer::train(options);
    if (!options.ranks || options.ranks->rank == 0)
      std::cerr << prefix << result.summary() << "\n";
    return result.exit_code();
  } catch (const parcae::InputError& e) {
    std::cerr << prefix << e.what() << "\n";
    return parcae::trainer::kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << prefix << e.what() << "\n";
    return parcae::trainer::kExitError;
  }
}
