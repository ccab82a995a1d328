// The Slurm backend's pieces that need no cluster, exposed for their tests: shell quoting, the
// batch script rendered from a template, the cluster limits read from `scontrol show config`, the
// split of a sweep's jobs into job arrays, the parsing of squeue and sacct output, and the run log
// that each batch script keeps in its job's run folder.
//
// The run log (<run folder>/slurm-runs.log) is how a worker tells the orchestrator about each run
// of its batch script without touching the database: one line when the script starts and one when
// the trainer has exited,
//   start <slurm id> <restart count> <host> <unix s>
//   end <slurm id> <restart count> <exit code> <unix s>
// where <slurm id> is "<job id>" or "<array job id>_<task id>" and the restart count is Slurm's
// SLURM_RESTART_COUNT (0, then 1 after the first requeue, ...). A run with a start line and no end
// line was killed (node failure, time limit without a save, a requeue past KillWait).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "results/results.h"

namespace parcae::orchestrator::detail {

// `value` as one POSIX shell word: single-quoted, with each ' written as '\''. Safe for any bytes
// but NUL (which no argument can hold).
std::string shell_quote(const std::string& value);

// The default batch script template. A template is a bash script with one line that is exactly
// {{parcae_variables}}; that line is replaced by assignments of PARCAE_SWEEP, PARCAE_TRAINER,
// PARCAE_TASKS, PARCAE_MASTER_PORT_BASE, PARCAE_JOB_ID, PARCAE_CELL and PARCAE_OUT_DIR (the
// last three chosen by $SLURM_ARRAY_TASK_ID in an array), every value shell-quoted.
extern const char kDefaultBatchTemplate[];

struct BatchTask {
  std::string job_id;
  std::string cell;
  std::string out_dir;
};

struct BatchScript {
  std::string sweep;
  std::string trainer;  // parcae-train, absolute
  // One task: a plain job. Several: array task i runs tasks[i].
  std::vector<BatchTask> tasks;
  int ranks = 1;  // processes per job (srun --ntasks) when > 1, one per GPU
  int master_port_base = 29500;
};

// Throws InputError naming `template_name` when the template has no {{parcae_variables}} line.
std::string render_batch_script(const std::string& template_text,
                                const std::string& template_name,
                                const BatchScript& script);

// What limits submission, from `scontrol show config`.
struct SlurmLimits {
  int max_array_size = 1001;  // array indices must be below this
  int max_job_count = 10000;  // jobs slurmctld holds at once
  std::string cluster_name;
};
SlurmLimits parse_slurm_config(const std::string& scontrol_show_config);

// [first, last) ranges of `count` jobs, each at most `max_array_size` long (>= 1).
std::vector<std::pair<size_t, size_t>> split_into_arrays(size_t count, int max_array_size);

// One run of a batch script, from the run log.
struct SlurmRun {
  std::string slurm_id;
  int restart = 0;
  std::string host;
  double started_at = 0.0;
  std::optional<int> exit_code;  // nullopt while running, or when the script was killed
};

// The runs of `slurm_id` in the order they started. Lines of other ids (earlier submissions of the
// same job) and lines that do not parse are skipped.
std::vector<SlurmRun> parse_run_log(const std::string& text, const std::string& slurm_id);

// Slurm job state names, as squeue %T and sacct State print them.
enum class SlurmStateClass {
  kQueued,    // PENDING, REQUEUED, REQUEUE_HOLD, ...: will run (again)
  kActive,    // RUNNING, CONFIGURING, COMPLETING, SUSPENDED, ...: running or about to stop
  kFinished,  // COMPLETED, FAILED, TIMEOUT, NODE_FAIL, CANCELLED, PREEMPTED, OUT_OF_MEMORY, ...
};
SlurmStateClass classify_slurm_state(const std::string& state);

struct SlurmJobState {
  std::string state;   // e.g. RUNNING
  std::string reason;  // squeue %r, or sacct's ExitCode
};

// Lines "<id>|<state>|<reason>" (squeue -h -r -o '%i|%T|%r', sacct -n -P -X -o
// JobID,State,ExitCode) by id. sacct's "CANCELLED by 0" is read as CANCELLED; lines of job steps
// (id with a '.') are skipped.
std::map<std::string, SlurmJobState> parse_job_states(const std::string& text);

// The output and exit status of a command run without a shell.
struct CommandResult {
  int exit_code = -1;  // 127 when it could not be run; 128 + n when killed by signal n
  std::string out;
  std::string err;
};
CommandResult run_command(const std::vector<std::string>& argv);

// For `sweep cancel`: of `job_ids` (jobs cancel_jobs() reported running), those whose open attempt
// is a Slurm job are scancelled and their attempts ended as cancelled. Returns those ids; the rest
// are left to the local path. Throws parcae::Error when scancel fails.
std::vector<std::string> cancel_slurm_attempts(results::Store& store,
                                               const std::vector<std::string>& job_ids);

}  // namespace parcae::orchestrator::detail
