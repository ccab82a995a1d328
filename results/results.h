// parcae::results — the SQLite results database, and the only code of ours that speaks SQL.
//
// A Store is one open database file: sweeps and their jobs as planned, each job's attempts (the
// launches of its trainer, with exit codes and reasons), provenance, the training curve,
// evaluations at each test-time depth, and fitted laws. The schema is results/schema.sql, embedded
// at build time; docs/schema.md describes it. Opening checks PRAGMA application_id (is it ours?)
// and PRAGMA user_version (which schema?), creates a fresh database, upgrades an older one one
// version per transaction, and refuses a foreign or newer one without writing to it.
//
// Every change is one transaction in WAL mode with foreign keys on and a busy timeout, so several
// processes may share a database and a SIGKILL at any moment leaves it consistent. Job claims are
// atomic: of two orchestrators claiming one job, exactly one succeeds. Training events reach the
// database only through ingest_events(), which reads a job's events.jsonl incrementally and
// idempotently (parcae.md's trainer contract; docs/schema.md lists the events).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/planner.h"
#include "sweeps/refine.h"
#include "sweeps/sweep_spec.h"

namespace parcae::results {

inline constexpr int kSchemaVersion = 2;
inline constexpr int32_t kApplicationId = 0x50415243;  // "PARC"

// The schema.sql text this build creates databases with.
const std::string& schema_sql();

// planned -> running -> done | diverged | failed | preempted | cancelled; `retry` sends failed or
// cancelled jobs back to planned; `sweep run` dispatches planned and preempted jobs.
enum class JobState { kPlanned, kRunning, kDone, kDiverged, kFailed, kPreempted, kCancelled };
std::string to_string(JobState state);
// Throws parcae::Error for a name that is not a state.
JobState job_state_from_string(const std::string& name);
// All states in lifecycle order, for counts.
const std::vector<JobState>& all_job_states();

// How an attempt ended; 'lost' means the orchestrator found it running with its process gone.
enum class Outcome { kRunning, kDone, kDiverged, kFailed, kPreempted, kCancelled, kLost };
std::string to_string(Outcome outcome);
Outcome outcome_from_string(const std::string& name);

struct SweepRecord {
  std::string name;
  std::string file;
  std::string description;
  nlohmann::json spec;
  std::string jobs_dir;
  double created_at = 0.0;  // unix s
  double updated_at = 0.0;
};

// A row of `jobs`; column meanings and units are in schema.sql.
struct JobRecord {
  std::string id;
  std::string sweep;
  std::string cell;
  JobState state = JobState::kPlanned;
  std::string model;
  std::optional<std::string> budget_id;
  std::optional<double> budget_flops;
  int mean_recurrence = 1;
  int mean_backward = 1;
  bool fixed_depth = false;
  uint64_t seed = 0;
  int64_t parameters_total = 0;
  int64_t parameters_noncore = 0;
  int64_t parameters_core = 0;
  int64_t parameters_embedding = 0;
  int64_t flops_per_token = 0;
  int64_t train_tokens = 0;
  int64_t steps = 0;
  double achieved_flops = 0.0;
  double gpu_hours_estimate = 0.0;
  int gpus = 1;
  nlohmann::json config;  // the job's JSON, as job_config_from_json reads it
  std::string out_dir;
  int failures = 0;
  int preemptions = 0;
  int64_t events_offset = 0;
  int64_t events_lines = 0;
  std::optional<int64_t> steps_done;
  std::optional<int64_t> tokens_done;
  std::optional<double> flops_done;
  std::optional<double> last_loss;
  std::optional<int64_t> checkpoint_step;
  std::optional<std::string> checkpoint_path;
  std::optional<std::string> final_status;
  std::optional<double> loss_train;
  std::optional<double> loss_val;
  std::optional<double> wall_time_s;
  std::optional<std::string> last_error;
  double created_at = 0.0;
  double updated_at = 0.0;
  int round = 0;  // refinement round that added the cell; 0 = the grid
};

// A row of `attempts`.
struct AttemptRecord {
  std::string job;
  int attempt = 0;
  double started_at = 0.0;
  std::optional<double> ended_at;
  Outcome outcome = Outcome::kRunning;
  std::optional<int> exit_code;
  std::optional<std::string> reason;
  std::string backend;
  std::optional<std::string> backend_id;
  std::string host;
  std::optional<std::string> gpu_model;
  std::optional<std::string> devices;
  std::optional<int64_t> pid;
  std::string owner;
};

struct CurvePoint {
  int64_t step = 0;
  double time = 0.0;
  int64_t tokens = 0;
  double flops = 0.0;
  std::optional<double> loss;  // nullopt when the trainer reported a non-finite loss
  std::optional<double> lr_adamw;
  std::optional<double> lr_muon;
  std::optional<double> grad_norm;
  std::optional<double> tokens_per_s;
  std::optional<int64_t> skipped;
  std::optional<double> mean_depth;
  std::optional<double> log_rho;
  std::optional<double> mean_decay;
  std::optional<double> h_rms;
};

struct EvaluationRecord {
  std::string job;
  int64_t step = 0;
  int depth = 1;  // T
  double time = 0.0;
  int64_t tokens = 0;
  std::optional<double> loss;  // nullopt when not finite
};

struct ProvenanceRecord {
  std::string job;
  int64_t events_offset = 0;
  double time = 0.0;
  bool resumed = false;
  nlohmann::json versions;
  std::optional<std::string> device;
  std::optional<int64_t> world_size;
  std::optional<int64_t> seed;
  std::optional<int64_t> parameters_total;
  std::optional<int64_t> flops_per_token;
  std::optional<int64_t> max_steps;
};

struct FitRecord {
  int64_t id = 0;  // assigned by save_fit
  std::string law;
  std::optional<std::string> sweep;
  nlohmann::json coefficients = nlohmann::json::object();
  nlohmann::json intervals = nlohmann::json::object();
  std::vector<std::string> job_ids;
  nlohmann::json details = nlohmann::json::object();
  double created_at = 0.0;  // set by save_fit when 0
};

struct SweepCounts {
  std::map<JobState, int> by_state;  // every state present, 0 for none
  int jobs = 0;
  double flops_done = 0.0;   // sum of flops_done reported by the trainers, FLOPs
  double flops_total = 0.0;  // sum of the planned achieved_flops, FLOPs
};

// What record_plan() did.
struct PlanRecordResult {
  int inserted = 0;   // new jobs
  int unchanged = 0;  // jobs already recorded with the same id
  int replaced = 0;   // cells re-planned with a new config that had never started
  // Jobs of the sweep in the database whose cell is no longer in the plan (left as they are).
  std::vector<std::string> stale_cells;
};

// What a launcher knows when it claims a job.
struct AttemptStart {
  std::string backend = "local";
  std::string host;
  std::string gpu_model;
  std::string devices;
  std::string owner;  // '<host>/<pid>/<start ticks>' of the claiming orchestrator
};

// How an attempt ended and what the job becomes.
struct AttemptEnd {
  Outcome outcome = Outcome::kFailed;
  std::optional<int> exit_code;
  std::string reason;
  JobState next_state = JobState::kFailed;
  bool count_failure = false;
  bool count_preemption = false;
};

// One line of events.jsonl that could not be used.
struct BadEventLine {
  int64_t line = 0;    // 1-based line number in the file
  int64_t offset = 0;  // byte offset of the line
  std::string message;
};

struct IngestReport {
  int64_t lines = 0;          // complete lines consumed (applied or bad)
  int64_t events = 0;         // lines applied
  int64_t bytes = 0;          // bytes consumed
  int64_t pending_bytes = 0;  // bytes of an unterminated last line, left for the next call
  bool restarted = false;     // the file was shorter than the stored offset and was read again
  std::vector<BadEventLine> bad_lines;
  std::optional<std::string> final_status;  // 'done' or 'diverged' when a done event was read
  bool saw_preempted = false;
  std::optional<std::string> error_message;  // message of an error event read in this call
};

// A table for export: column names and rows of JSON values (null, integer, real, string, and for
// the JSON columns of fits, objects and arrays). Times are ISO 8601 UTC text.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<nlohmann::json>> rows;
};

class Store {
 public:
  enum class Mode {
    kCreate,    // create the file when it does not exist
    kExisting,  // the file must exist (status, export, retry, cancel)
  };

  // Opens, checks and upgrades `path`. Throws InputError (exit code 2 in the CLI), changing
  // nothing, when the file is missing in kExisting mode, is not an SQLite database, belongs to
  // another application, or has a schema newer than kSchemaVersion (the message names both).
  static Store open(const std::string& path, Mode mode = Mode::kCreate);

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  const std::string& path() const;
  // The schema version the file had before this open upgraded it.
  int opened_version() const;

  // --- sweeps and jobs ---------------------------------------------------------------------
  // Records the sweep and the plan's kept cells as planned jobs in one transaction; idempotent
  // (jobs are keyed by JobConfig::id()). A cell whose name exists with another job id is replaced
  // when that job never started; otherwise InputError names the cell and nothing is written.
  // New jobs get out_dir = jobs_dir/<job id> and their cell's round. With `round`, that
  // refinement decision is stored (replacing one of the same number) in the same transaction as
  // the cells it adds, so that a kill leaves either both or neither.
  PlanRecordResult record_plan(const sweeps::SweepSpec& spec,
                               const sweeps::Plan& plan,
                               const std::string& jobs_dir,
                               const sweeps::RefineRound* round = nullptr);
  // The sweep's refinement decisions in round order; empty for a sweep without refinement.
  std::vector<sweeps::RefineRound> refine_rounds(const std::string& sweep) const;
  // What record_plan would do, deciding the same way and throwing the same InputError, without
  // writing anything: `sweep plan --dry-run` predicts the real plan.
  PlanRecordResult preview_plan(const sweeps::SweepSpec& spec, const sweeps::Plan& plan) const;
  std::optional<SweepRecord> find_sweep(const std::string& name) const;
  std::vector<SweepRecord> sweeps() const;
  // The sweep a command is about: `name` when given, else the database's only sweep. Throws
  // InputError naming the database when `name` is not a sweep (with a did-you-mean), or when none
  // is given and the database holds no sweep or several (naming them).
  std::string resolve_sweep(const std::string& name) const;
  // Which columns jobs() reads: parsing every job's config JSON dominates a listing of a large
  // sweep, and only launching a job needs it.
  enum class JobFields { kAll, kWithoutConfig };
  // Jobs of a sweep in plan order; only those in `states` when it is not empty. With
  // kWithoutConfig, JobRecord::config is left null.
  std::vector<JobRecord> jobs(const std::string& sweep,
                              const std::vector<JobState>& states = {},
                              JobFields fields = JobFields::kAll) const;
  // Jobs by state and FLOPs done of total, in one query.
  SweepCounts counts(const std::string& sweep) const;
  // By full id or by a unique prefix of at least 4 hex digits.
  std::optional<JobRecord> find_job(const std::string& id_or_prefix) const;
  // Moves the run folders of jobs that never started to jobs_dir/<job id>; returns how many.
  int set_jobs_dir(const std::string& sweep, const std::string& jobs_dir);

  // --- the job lifecycle -------------------------------------------------------------------
  // Atomically takes a planned or preempted job: inserts its next attempt and sets it running.
  // Returns the attempt number, or nullopt when the job is not dispatchable (someone else took
  // it, or it was cancelled).
  std::optional<int> claim_job(const std::string& job_id, const AttemptStart& start);
  // Records the process of a claimed attempt.
  void set_attempt_process(const std::string& job_id,
                           int attempt,
                           int64_t pid,
                           const std::string& backend_id);
  // Ends an open attempt and moves the job. A job cancelled meanwhile stays cancelled (and the
  // attempt's outcome becomes cancelled). Returns the job's state afterwards, or nullopt when the
  // attempt had already ended (another orchestrator recorded it).
  std::optional<JobState> finish_attempt(const std::string& job_id,
                                         int attempt,
                                         const AttemptEnd& end);
  std::vector<AttemptRecord> attempts(const std::string& job_id) const;
  std::optional<AttemptRecord> last_attempt(const std::string& job_id) const;
  // Failed or cancelled jobs back to planned with fresh retry budgets; others are left.
  // Returns the ids moved.
  std::vector<std::string> retry_jobs(const std::vector<std::string>& job_ids);
  // Marks planned, preempted and running jobs cancelled (rows are kept). Returns the ids that
  // were running, whose processes the caller should stop.
  std::vector<std::string> cancel_jobs(const std::vector<std::string>& job_ids);

  // --- events ------------------------------------------------------------------------------
  // Reads what is new in `events_path` since the job's stored offset and applies it in one
  // transaction with the new offset: step events upsert into curve by (job, step), eval events
  // into evaluations by (job, step, depth), start events into provenance, checkpoint, done and
  // error events into the job's row. An unterminated last line is left for the next call; a line
  // that is not a valid event is reported in the result and skipped. A missing file is an empty
  // one. Re-ingesting adds nothing.
  IngestReport ingest_events(const std::string& job_id, const std::string& events_path);

  std::vector<CurvePoint> curve(const std::string& job_id) const;
  std::vector<EvaluationRecord> evaluations(const std::string& job_id) const;
  std::vector<ProvenanceRecord> provenance(const std::string& job_id) const;

  // --- fits --------------------------------------------------------------------------------
  int64_t save_fit(const FitRecord& fit);
  std::vector<FitRecord> fits(const std::string& sweep) const;

  // --- export and checks -------------------------------------------------------------------
  // "jobs", "attempts", "curve", "evaluations" or "fits" of one sweep; InputError for another name.
  Table export_table(const std::string& sweep, const std::string& table) const;
  // PRAGMA integrity_check: "ok" or SQLite's list of problems.
  std::string integrity_check() const;
  // The schema as SQL (PRAGMAs, then every CREATE in sqlite_master order), as the golden files
  // under tests/golden/ hold it.
  std::string schema_dump() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Unix time in seconds.
double unix_now();
// "2026-12-04T18:44:03.123Z": unix seconds as ISO 8601 UTC with milliseconds, as exports and
// --json documents write times (the export's SQL spells the same format).
std::string iso_time(double unix_s);

}  // namespace parcae::results
