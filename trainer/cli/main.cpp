// parcae-train: `parcae-train --job JOB.json --out DIR` trains one sweep cell (trainer/trainer.h).
// This file maps flags and signals onto parcae::trainer::train and its result onto an exit code:
// 0 done or diverged, 143 preempted after a checkpoint, 1 error, 2 bad input (docs/trainer.md).
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

#include "sweeps/error.h"
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
  for (const int signal : {SIGTERM, SIGINT, SIGUSR2})
    sigaction(signal, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parcae-train: train one cell of a Parcae scaling sweep"};
  parcae::trainer::TrainOptions options;
  app.add_option("--job", options.job_path, "Job file written by `parcae-scale sweep plan`")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", options.out_dir, "Run folder for events.jsonl and checkpoint/")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : parcae::trainer::kExitBadInput;
  }

  install_signal_handlers();
  options.stop_requested = &stop_requested;
  options.progress = &std::cerr;
  try {
    const parcae::trainer::TrainResult result = parcae::trainer::train(options);
    std::cerr << "parcae-train: " << result.summary() << "\n";
    return result.exit_code();
  } catch (const parcae::InputError& e) {
    std::cerr << "parcae-train: " << e.what() << "\n";
    return parcae::trainer::kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "parcae-train: " << e.what() << "\n";
    return parcae::trainer::kExitError;
  }
}
