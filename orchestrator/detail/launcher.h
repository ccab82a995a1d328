// Launchers start trainer processes for the scheduler and tell it when they end. The scheduler
// knows nothing of how: the local launcher forks processes on this machine; a cluster backend
// (Slurm, a later issue) implements the same interface with batch jobs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace parcae::orchestrator::detail {

struct LaunchRequest {
  std::string job_id;
  int attempt = 0;
  std::string trainer;   // executable
  std::string job_file;  // <out_dir>/job.json, already written
  std::string out_dir;
  std::string log_file;  // the trainer's stdout and stderr are appended here
  // GPUs to pin the job to with CUDA_VISIBLE_DEVICES; empty = CPU (and GPUs hidden).
  std::vector<int> gpus;
  std::vector<std::pair<std::string, std::string>> environment;  // added to the inherited one
};

struct Launched {
  int64_t pid = 0;
  std::string backend_id;  // local: "<pid>/<start ticks>"
};

struct Exited {
  std::string job_id;
  int attempt = 0;
  // Exit status, 128 + n for death by signal n; nullopt for an adopted process (not our child).
  std::optional<int> exit_code;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // "local", "slurm", ...: recorded with each attempt.
  virtual std::string backend() const = 0;
  // Starts `request` held: the process exists (so its id can be recorded) but the trainer does
  // not run until release(). If the orchestrator dies in between, the held process exits without
  // running anything, so a job is never trained by a process the database does not name.
  // Throws parcae::Error when it cannot start; an executable that fails to run shows up as an
  // exit with code 127.
  virtual Launched launch(const LaunchRequest& request) = 0;
  // Lets a held process run the trainer.
  virtual void release(const std::string& job_id) = 0;
  // Watches a process started by an earlier orchestrator. False when it is no longer alive.
  virtual bool adopt(const std::string& job_id, int attempt, const std::string& backend_id) = 0;
  // Waits up to timeout_s for processes to end (less when a signal arrives) and returns those
  // that did.
  virtual std::vector<Exited> wait(double timeout_s) = 0;
  // Sends `signal` to a job's process group.
  virtual void signal(const std::string& job_id, int signal) = 0;
  // Jobs launched or adopted and not yet returned by wait().
  virtual std::vector<std::string> active() const = 0;
};

std::unique_ptr<Launcher> make_local_launcher();

}  // namespace parcae::orchestrator::detail
