// parcae::orchestrator — from a sweep file to finished jobs in the results database.
//
// plan_sweep_file() reads a sweep file, prepares its data on first use when the file says how,
// plans its cells (sweeps/planner.h), records them as jobs and writes each new job's run folder
// with its job.json. run_sweep() dispatches a sweep's
// planned jobs as trainer processes (`parcae-train --job DIR/job.json --out DIR`), one per slot: on
// a GPU machine each job is pinned with CUDA_VISIBLE_DEVICES and several small jobs may share a
// GPU; without GPUs up to max_parallel jobs run on the CPU. While they run it ingests their
// events.jsonl; when one exits it decides the attempt's outcome from the exit code and the events
// (docs/cli.md has the table), retries failures within a budget, requeues preemptions (exit 143) on
// a separate budget, and fails bad input (exit 2) at once. It is safe to stop at any moment: on a
// stop signal it stops dispatching, passes SIGTERM to its trainers, waits for them to save, ingests
// and returns; after a SIGKILL the next run_sweep() adopts trainers still alive and resumes those
// that are gone from their checkpoints. Only this library writes the database, through
// parcae::results.
//
// Run folders live at <jobs root>/<sweep>/<job id>/ with job.json, events.jsonl, checkpoint/
// and trainer.log (the trainer's stdout and stderr); the jobs root defaults to `runs` beside the
// database. The launcher is an interface (detail/launcher.h), so that a cluster backend can be
// added beside the local one.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "results/results.h"
#include "sweeps/planner.h"
#include "sweeps/refine.h"
#include "sweeps/sweep_spec.h"
#include "sweeps/token_shards.h"

namespace parcae::orchestrator {

// <folder of db_path>/runs: the default root of run folders.
std::string default_jobs_root(const std::string& db_path);

// Throws InputError naming `flag` and `path` when `path` cannot become a folder: it, or the
// nearest part of it that exists, is not a folder. Checked before anything is written, so that a
// mistyped flag leaves the database as it was.
void check_folder_path(const std::string& path, const std::string& flag);

// ---------------------------------------------------------------------------------------------
// data

// The tokenizer `options` ask for. "sentencepiece" without a model learns a BPE model from
// `text_files` (byte fallback, identity normalization, so that decoding gives back the exact
// text; BOS id 1; parcae.md §9). Throws InputError naming `file` and `field_prefix` + the field
// (kind, vocab_size, model) for a bad value, an unreadable model, or text SentencePiece cannot
// learn from.
std::unique_ptr<sweeps::TextTokenizer> make_tokenizer(const sweeps::TokenizerOptions& options,
                                                      const std::vector<std::string>& text_files,
                                                      const std::string& file,
                                                      const std::string& field_prefix);

// The tokenizer recorded beside shards (`shard_dir`/tokenizer.json and its model), to decode
// them. InputError naming the file when it is missing or names an unknown tokenizer.
std::unique_ptr<sweeps::TextTokenizer> load_tokenizer(const std::string& shard_dir);

// ---------------------------------------------------------------------------------------------
// plan

struct PlanOptions {
  std::string sweep_file;
  // Hydra-style KEY=VALUE changes to the file's document (sweeps::apply_overrides), applied
  // before it is read; the sweep is recorded with them.
  std::vector<std::string> overrides;
  std::string db_path = "parcae.sqlite";
  std::string data_dir;      // resolves relative data paths instead of the sweep file's folder
  std::string jobs_root;     // run folders go to <jobs_root>/<sweep>/<job id>; empty = default
  bool dry_run = false;      // plan and report, write nothing (the database is not even opened)
  bool require_data = true;  // data patterns must match files (off only for reports)
  // Told what first-use data preparation (the sweep file's data.prepare) is doing.
  std::function<void(const std::string&)> on_note;
};

struct PlanOutcome {
  sweeps::SweepSpec spec;
  sweeps::Plan plan;
  std::optional<results::PlanRecordResult> recorded;  // nullopt for a dry run
  // A dry run against an existing database: what recording would do. Planning a sweep whose
  // started cells changed is refused here as it would be for real (InputError).
  std::optional<results::PlanRecordResult> would_record;
  std::string jobs_dir;  // <jobs_root>/<sweep>
};

// Throws SweepFileError / InputError for a bad sweep file or database (nothing written).
PlanOutcome plan_sweep_file(const PlanOptions& options);

// ---------------------------------------------------------------------------------------------
// run

// One line's worth of news from run_sweep(), for the progress display.
struct ProgressEvent {
  enum class Kind {
    kStarted,    // a job was launched (attempt, pid, devices in `message`)
    kAdopted,    // a trainer left by a killed orchestrator is still alive and is watched again
    kFinished,   // an attempt ended; `state` is the job's new state, `message` the reason
    kBadEvents,  // events.jsonl had lines that are not events (message names them)
    kProgress,   // new steps were ingested (for a redrawn status line; not a state change)
    kNote,       // anything else worth a line (stopping, waiting for trainers to save, ...)
  };
  Kind kind = Kind::kNote;
  std::string job_id;
  std::string cell;
  results::JobState state = results::JobState::kPlanned;
  int attempt = 0;
  std::string message;
  // kProgress: the job's last step ingested, its planned steps and its training loss there.
  int64_t steps_done = 0;
  int64_t steps = 0;
  std::optional<double> loss;
  std::map<results::JobState, int> counts;  // the sweep's jobs by state after this event
  int jobs = 0;                             // the sweep's jobs
  double flops_done = 0.0;                  // FLOPs reported by the trainers so far
  double flops_total = 0.0;                 // FLOPs of every job as planned
};

// The Slurm backend's settings (docs/slurm.md). Each value reaches sbatch as one argument, never
// through a shell.
struct SlurmOptions {
  std::string partition;      // sbatch --partition; empty = the cluster's default
  std::string account;        // --account; empty = the user's default
  std::string qos;            // --qos; empty = the default
  std::string time;           // --time, such as 04:00:00; empty = the partition's default
  int array_throttle = 0;     // tasks of one array running at once (--array=...%K); 0 = no limit
  std::string template_file;  // batch script template; empty = the built-in one
  int signal_grace_s = 300;   // --signal=B:USR2@SECONDS: warning before the time limit, s
  int cpus_per_task = 0;      // --cpus-per-task; 0 = the cluster's default
  // Most jobs of this sweep queued or running at once (an association's MaxSubmitJobs, which
  // scontrol does not show); 0 = the controller's MaxJobCount. The rest are submitted by a later
  // `sweep run` as slots free up.
  int max_submit = 0;
  std::vector<std::string> sbatch_args;  // more sbatch arguments, passed as they are
  // A law ("isoflop", ...): after the training jobs (afterok), a job runs
  // `parcae-scale --db DB fit LAW --sweep NAME`. Empty = none.
  std::string fit_after;
  bool detach = false;  // submit and return; else poll until no job is queued or running
};

struct RunOptions {
  std::string db_path = "parcae.sqlite";
  // A sweep name in the database, or a sweep file (planned first, as plan_sweep_file does).
  // Empty: the database's only sweep.
  std::string sweep;
  std::vector<std::string> overrides;  // with a sweep file: KEY=VALUE, as PlanOptions::overrides
  std::string data_dir;                // for a sweep file, as PlanOptions::data_dir
  std::string jobs_root;               // moves run folders of jobs that never started; empty = keep
  int max_parallel = 0;          // most trainers at once; 0 = one per GPU slot, or 1 on the CPU
  int jobs_per_gpu = 0;          // trainers sharing one GPU; 0 = the sweep's resources.jobs_per_gpu
  std::string gpus = "auto";     // "auto" or "all" (discover), "none" (CPU), or a list "0-3,6"
  int retries = 2;               // re-runs after a failed attempt (exit 1, crash) per job
  int preemption_retries = 100;  // re-runs after a preempted or lost attempt per job
  // parcae-train to run; empty = $PARCAE_TRAIN, else parcae-train beside this executable.
  std::string trainer;
  double poll_interval_s = 0.5;  // ingest cadence while trainers run, s
  double stop_grace_s = 600.0;   // time trainers get to save after SIGTERM before SIGKILL, s
  // A local trainer that writes no event for this long is taken for hung: it is killed with
  // SIGKILL and its attempt fails (retried within --retries). 0 = never. Local backend only.
  double silence_limit_s = 1800.0;
  // Set (by a signal handler) to the number of a signal to stop; checked between waits.
  const std::atomic<int>* stop_signal = nullptr;
  std::function<void(const ProgressEvent&)> on_progress;
  bool dry_run = false;  // show what would be launched or resumed, change nothing
  SlurmOptions slurm;    // used by run_sweep_slurm() only
};

struct RunSummary {
  std::string sweep;
  std::map<results::JobState, int> counts;  // the sweep's jobs by state at the end
  int launched = 0;                         // attempts started by this call
  int adopted = 0;                          // trainers of a killed orchestrator watched again
  int elsewhere = 0;                        // jobs left running under another live orchestrator
  int stopped_by_signal = 0;  // the signal that stopped the run, 0 when it ran to the end
  // Dry run: the jobs that would be launched or resumed, in dispatch order, with the GPUs each
  // would get now ("GPU 2", "cpu"; empty when it waits for a slot to free up), and the slots.
  struct PlannedLaunch {
    std::string job_id;
    std::string cell;
    std::string action;  // "launch" or "resume"
    std::string devices;
  };
  std::vector<PlannedLaunch> would_launch;
  std::string
      slots;  // "GPUs 2,3 (CUDA_VISIBLE_DEVICES=2,3), 1 per GPU, 2 at once, OMP_NUM_THREADS=8"
  std::vector<std::string> slurm_jobs;  // Slurm: the job ids sbatch gave this call
  std::string slurm_fit_job;            // Slurm: the --fit-after job, if one was submitted
  // 128 + signal when stopped; 1 when a job failed; else 0.
  int exit_code() const;
};

// Throws InputError for a bad sweep (file or name), database, flag value or missing trainer,
// before anything is claimed. Trainer failures are outcomes in the summary, never thrown.
RunSummary run_sweep(const RunOptions& options);

// ---------------------------------------------------------------------------------------------
// refinement rounds (docs/cli.md, "refine")

// The next round of a refining sweep, decided from the store (analysis::next_refinement). The job
// queue never links the fitters, so the command line hands the decision in.
using RefineDecider =
    std::function<sweeps::RefineRound(const results::Store& store, const std::string& sweep)>;

// The sweep's recorded rounds that added cells, in order.
std::vector<sweeps::RefineRound> refinement_rounds(const results::Store& store,
                                                   const std::string& sweep);

// Records a decision: a "refine" round's cells are planned from the sweep's stored document with
// every round applied (sweeps::apply_refinement) exactly as a file listing them would be, and
// recorded with their round, in one transaction with the decision; a "stop" decision is stored
// alone. Writes the new jobs' job.json. Returns what recording did.
results::PlanRecordResult record_refinement(results::Store& store,
                                            const std::string& sweep,
                                            const sweeps::RefineRound& round);

// `sweep run` of a sweep with a "refine" block: run_sweep(), then while `decide` adds cells,
// record the round (on_round is told first) and run it, until a decision stops. A sweep without
// the block is one run_sweep(). A stop by signal, or a failed job, ends the loop before deciding;
// the same call resumes: the rounds recorded so far are part of the sweep, so it runs their
// unfinished cells and decides again from where it stopped.
// `run` is the backend: run_sweep (local), or run_sweep_slurm without slurm.detach (a detached
// submission returns before the cells finish, so there is nothing to decide from yet).
RunSummary run_refining_sweep(const RunOptions& options,
                              const RefineDecider& decide,
                              const std::function<void(const sweeps::RefineRound&)>& on_round,
                              const std::function<RunSummary(const RunOptions&)>& run = run_sweep);

// ---------------------------------------------------------------------------------------------
// run on Slurm (docs/slurm.md)

// The Slurm backend of `sweep run`. First reconciles the sweep's Slurm jobs (as reconcile_slurm),
// then submits every planned or preempted job with `sbatch --parsable`: jobs with the same
// resources go into job arrays of at most MaxArraySize tasks (`scontrol show config`), at most
// slurm.max_submit jobs queued at once. Each job is claimed before it is submitted, and its
// attempt records the Slurm id ("<job>" or "<array job>_<task>") as backend "slurm". With
// slurm.detach it returns after submitting; else it reconciles every poll_interval_s and submits
// what becomes runnable again (failed attempts within --retries, preempted jobs that Slurm did not
// requeue itself) until no job is planned, preempted or running, or until stop_signal is set (the
// Slurm jobs keep running; a later run or `sweep status` picks them up). Batch scripts go to
// <jobs dir>/slurm-scripts/, Slurm's own output to <jobs dir>/slurm-logs/.
// Throws InputError for a bad sweep, option or template, and parcae::Error when sbatch or
// scontrol fail (the claims of a failed submission are released: the jobs stay runnable).
RunSummary run_sweep_slurm(const RunOptions& options);

struct SlurmReconcileResult {
  int checked = 0;                     // running Slurm attempts looked at
  std::vector<std::string> ended;      // "cell: how" for each attempt that ended
  std::vector<std::string> bad_lines;  // "cell (id): line N: reason" for skipped event lines
};

// Brings the sweep's running Slurm jobs up to date without waiting: ingests their events.jsonl,
// reads each batch script's run log (<run folder>/slurm-runs.log) and the job's state from squeue
// (sacct for jobs squeue no longer shows, when accounting is enabled), and ends the attempts whose
// run ended. A run that saved and exited 143 (requeue, preemption, the time-limit signal) counts
// against the preemption budget; when Slurm requeued the job itself a new attempt with the same
// Slurm id is opened, else the job is left preempted for the next `sweep run` to submit. A run
// killed without an exit code (NODE_FAIL, TIMEOUT, a requeue past KillWait) is lost: requeued on
// the preemption budget, the Slurm state named in the attempt's reason. Does nothing, and runs no
// Slurm command, when the sweep has no running Slurm attempt.
SlurmReconcileResult reconcile_slurm(results::Store& store, const std::string& sweep);

// The built-in batch script template (docs/slurm.md describes its contract).
std::string default_slurm_template();

// ---------------------------------------------------------------------------------------------
// status, list, retry, cancel, export

struct SweepStatus {
  results::SweepRecord sweep;
  std::vector<sweeps::RefineRound> rounds;  // every refinement decision, in round order
  std::vector<results::JobRecord> jobs;
  std::map<results::JobState, int> counts;
  double flops_done = 0.0;   // sum of the jobs' flops_done
  double flops_total = 0.0;  // sum of the jobs' planned achieved_flops
  std::map<std::string, std::vector<std::string>> log_tails;  // failed job id -> last log lines
  // What reconciling the sweep's Slurm jobs did or could not do (attempts ended, skipped lines).
  std::vector<std::string> notes;
};

// One sweep (by name) or every sweep (empty name), after reconcile_slurm() for sweeps with jobs
// on Slurm. Throws InputError for an unknown name.
std::vector<SweepStatus> sweep_status(const std::string& db_path, const std::string& sweep);
// One sweep of `sweep status --json` and `sweep list --json` (docs/cli.md): its name, file,
// times, counts and FLOPs, and with_jobs, "jobs": one object per job.
nlohmann::ordered_json to_json(const SweepStatus& status, bool with_jobs = true);

// Job ids for targets that are sweep names (all their jobs) or job ids (or unique prefixes).
// Throws InputError naming a target that is neither.
std::vector<std::string> resolve_targets(const results::Store& store,
                                         const std::vector<std::string>& targets);

// Failed or cancelled jobs back to planned with fresh retry budgets. Returns the ids moved.
std::vector<std::string> retry(const std::string& db_path, const std::vector<std::string>& targets);

struct CancelResult {
  std::vector<std::string> cancelled;    // jobs now cancelled
  std::vector<std::string> stopped;      // of those, jobs whose local trainer was signalled
  std::vector<std::string> killed;       // trainers that needed SIGKILL after the grace period
  std::vector<std::string> unreachable;  // running on another host: marked, not signalled
  std::vector<std::string> slurm;        // Slurm jobs stopped with scancel
};

struct SyncResult {
  std::vector<std::string> ingested;   // jobs with new events
  std::vector<std::string> finished;   // of those, jobs now done or diverged
  std::vector<std::string> bad_lines;  // "cell (id): line N: reason" for lines that are not events
};

// Ingests the events of a sweep's planned and preempted jobs from their run folders, for jobs
// trained without parcae-scale (scripts/run-jobs on another host, folders copied back). A job
// whose events end with a done event becomes done (or diverged), with one attempt of backend
// "external". Running jobs are left to `sweep run`.
SyncResult sync(const std::string& db_path, const std::string& sweep);

// Marks jobs cancelled and stops their local trainers: SIGTERM, up to grace_s to save, SIGKILL.
// Jobs queued or running on Slurm are stopped with scancel (Slurm sends SIGTERM, then SIGKILL
// after the cluster's KillWait) and their attempts end as cancelled.
CancelResult cancel(const std::string& db_path,
                    const std::vector<std::string>& targets,
                    double grace_s = 30.0);

// ---------------------------------------------------------------------------------------------
// helpers shared with the command line

// The CPU-mode parallelism, GPU list parsing and trainer lookup, exposed for their tests.
// "0-3,6" -> {0, 1, 2, 3, 6}; throws InputError naming `flag` for anything else.
std::vector<int> parse_gpu_list(const std::string& text, const std::string& flag = "--gpus");
// The trainer binary: `explicit_path`, else $PARCAE_TRAIN, else parcae-train beside the running
// executable. Throws InputError saying where it looked when none is an executable file.
std::string find_trainer(const std::string& explicit_path);

}  // namespace parcae::orchestrator
