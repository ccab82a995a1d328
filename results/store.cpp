// results::Store: opening and checking the database, sweeps and jobs, the attempt lifecycle,
// fits and export. Event ingest is in ingest.cpp.
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <set>
#include <thread>
#include <utility>

#include "results/detail/migrations.h"
#include "results/detail/sqlite.h"
#include "results/detail/store_impl.h"
#include "results/results.h"
#include "results/schema_sql.h"
#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::results {
namespace {

using detail::Connection;
using detail::Statement;
using detail::Transaction;

// How long a writer waits for another process's transaction before giving up, ms.
constexpr int kBusyTimeoutMs = 60000;

const char* const kStateNames[] = {
    "planned", "running", "done", "diverged", "failed", "preempted", "cancelled"};
const char* const kOutcomeNames[] = {
    "running", "done", "diverged", "failed", "preempted", "cancelled", "lost"};

// The columns of `jobs` in JobRecord order; read_job() reads them in this order.
const char kJobColumns[] =
    "id, sweep, cell, state, model, budget_id, budget_flops, mean_recurrence, mean_backward, "
    "fixed_depth, seed, parameters_total, parameters_noncore, parameters_core, "
    "parameters_embedding, flops_per_token, train_tokens, steps, achieved_flops, "
    "gpu_hours_estimate, gpus, config, out_dir, failures, preemptions, events_offset, "
    "events_lines, steps_done, tokens_done, flops_done, last_loss, checkpoint_step, "
    "checkpoint_path, final_status, loss_train, loss_val, wall_time_s, last_error, created_at, "
    "updated_at, round";

JobRecord read_job(const Statement& s, bool with_config = true) {
  JobRecord j;
  int i = 0;
  j.id = s.get_text(i++);
  j.sweep = s.get_text(i++);
  j.cell = s.get_text(i++);
  j.state = job_state_from_string(s.get_text(i++));
  j.model = s.get_text(i++);
  j.budget_id = s.get_optional_text(i++);
  j.budget_flops = s.get_optional_double(i++);
  j.mean_recurrence = static_cast<int>(s.get_int(i++));
  j.mean_backward = static_cast<int>(s.get_int(i++));
  j.fixed_depth = s.get_int(i++) != 0;
  j.seed = static_cast<uint64_t>(s.get_int(i++));
  j.parameters_total = s.get_int(i++);
  j.parameters_noncore = s.get_int(i++);
  j.parameters_core = s.get_int(i++);
  j.parameters_embedding = s.get_int(i++);
  j.flops_per_token = s.get_int(i++);
  j.train_tokens = s.get_int(i++);
  j.steps = s.get_int(i++);
  j.achieved_flops = s.get_double(i++);
  j.gpu_hours_estimate = s.get_double(i++);
  j.gpus = static_cast<int>(s.get_int(i++));
  if (with_config)
    j.config = nlohmann::json::parse(s.get_text(i), nullptr, false);
  ++i;
  j.out_dir = s.get_text(i++);
  j.failures = static_cast<int>(s.get_int(i++));
  j.preemptions = static_cast<int>(s.get_int(i++));
  j.events_offset = s.get_int(i++);
  j.events_lines = s.get_int(i++);
  j.steps_done = s.get_optional_int(i++);
  j.tokens_done = s.get_optional_int(i++);
  j.flops_done = s.get_optional_double(i++);
  j.last_loss = s.get_optional_double(i++);
  j.checkpoint_step = s.get_optional_int(i++);
  j.checkpoint_path = s.get_optional_text(i++);
  j.final_status = s.get_optional_text(i++);
  j.loss_train = s.get_optional_double(i++);
  j.loss_val = s.get_optional_double(i++);
  j.wall_time_s = s.get_optional_double(i++);
  j.last_error = s.get_optional_text(i++);
  j.created_at = s.get_double(i++);
  j.updated_at = s.get_double(i++);
  j.round = static_cast<int>(s.get_int(i++));
  return j;
}

const char kAttemptColumns[] =
    "job, attempt, started_at, ended_at, outcome, exit_code, reason, backend, backend_id, host, "
    "gpu_model, devices, pid, owner";

AttemptRecord read_attempt(const Statement& s) {
  AttemptRecord a;
  int i = 0;
  a.job = s.get_text(i++);
  a.attempt = static_cast<int>(s.get_int(i++));
  a.started_at = s.get_double(i++);
  a.ended_at = s.get_optional_double(i++);
  a.outcome = outcome_from_string(s.get_text(i++));
  const auto exit_code = s.get_optional_int(i++);
  if (exit_code)
    a.exit_code = static_cast<int>(*exit_code);
  a.reason = s.get_optional_text(i++);
  a.backend = s.get_text(i++);
  a.backend_id = s.get_optional_text(i++);
  a.host = s.get_text(i++);
  a.gpu_model = s.get_optional_text(i++);
  a.devices = s.get_optional_text(i++);
  a.pid = s.get_optional_int(i++);
  a.owner = s.get_text(i++);
  return a;
}

std::string id_list_json(const std::vector<std::string>& ids) {
  return nlohmann::json(ids).dump();
}

// A row's value as JSON, for export.
nlohmann::json cell_value(const Statement& s, int i) {
  switch (s.type(i)) {
    case SQLITE_NULL:
      return nullptr;
    case SQLITE_INTEGER:
      return s.get_int(i);
    case SQLITE_FLOAT:
      return s.get_double(i);
    default:
      return s.get_text(i);
  }
}

// Columns named in `json_columns` hold JSON text and are returned parsed, as objects or arrays.
Table query_table(const Connection& db,
                  const std::string& sql,
                  const std::string& sweep,
                  const std::set<std::string>& json_columns = {}) {
  Statement s(db, sql);
  s.bind(1, sweep);
  Table table;
  for (int i = 0; i < s.columns(); ++i)
    table.columns.push_back(s.column_name(i));
  while (s.step()) {
    std::vector<nlohmann::json> row;
    for (int i = 0; i < s.columns(); ++i) {
      nlohmann::json value = cell_value(s, i);
      if (value.is_string() && json_columns.count(table.columns[static_cast<size_t>(i)]) > 0)
        value = nlohmann::json::parse(value.get<std::string>(), nullptr, false);
      row.push_back(std::move(value));
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

// SQL for a unix-seconds column as ISO 8601 UTC text with milliseconds, NULL for NULL.
std::string iso_time(const std::string& column) {
  return "strftime('%Y-%m-%dT%H:%M:%fZ', " + column + ", 'unixepoch')";
}

// Refuses files that are not ours before anything is written to them.
void check_identity(const Connection& db, const std::string& path, int& version, bool& fresh) {
  int64_t application_id = 0;
  int64_t objects = 0;
  try {
    // One statement, so one snapshot: read one by one, the three could straddle another process's
    // schema creation and show its tables with the header still blank.
    Statement s(db,
                "SELECT (SELECT application_id FROM pragma_application_id), "
                "(SELECT user_version FROM pragma_user_version), "
                "(SELECT count(*) FROM sqlite_master)");
    if (s.step()) {
      application_id = s.get_int(0);
      version = static_cast<int>(s.get_int(1));
      objects = s.get_int(2);
    }
  } catch (const InputError&) {
    throw;  // a damaged file, or one that cannot be read: its own message says which
  } catch (const Error& e) {
    throw InputError(path, "--db", path, "is not a parcae-scale database", e.what());
  }
  if (application_id != kApplicationId && !(application_id == 0 && objects == 0 && version == 0)) {
    throw InputError(path,
                     "PRAGMA application_id",
                     std::to_string(application_id),
                     "expected " + std::to_string(kApplicationId) +
                         ": this SQLite file was not made by parcae-scale",
                     "choose another --db path; nothing was written to this one");
  }
  if (objects > 0 && version < 1) {
    // Our application id with tables but no schema version: not a file this program wrote.
    throw InputError(path,
                     "PRAGMA user_version",
                     std::to_string(version),
                     "expected a schema version from 1 to " + std::to_string(kSchemaVersion),
                     "the file was changed by another program; nothing was written to it");
  }
  if (version > kSchemaVersion) {
    throw InputError(path,
                     "PRAGMA user_version",
                     std::to_string(version),
                     "schema version " + std::to_string(version) +
                         " is newer than this build's version " + std::to_string(kSchemaVersion),
                     "use a newer parcae-scale; nothing was written");
  }
  fresh = objects == 0;
}

// WAL lets readers (status) run while the orchestrator writes; it persists in the file. Switching
// a file to it needs the file alone, and SQLite answers "busy" at once, without its busy handler,
// while another connection holds it, so the switch is retried here up to the busy timeout.
void use_wal(const Connection& db, const std::string& path) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  while (true) {
    std::string mode;
    try {
      Statement s(db, "PRAGMA journal_mode = WAL");
      mode = s.step() ? s.get_text(0) : "";
    } catch (const Error&) {
      if (sqlite3_errcode(db.get()) != SQLITE_BUSY || Clock::now() > deadline)
        throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    // SQLite answers with the mode it kept when it cannot switch (an in-memory database).
    if (mode != "wal") {
      throw InputError(
          path, "--db", path, "cannot use write-ahead logging (journal mode '" + mode + "')");
    }
    return;
  }
}

// "'failed', 'cancelled'" for an IN (...) clause.
std::string state_list(std::initializer_list<JobState> states) {
  std::string out;
  for (JobState s : states)
    out += (out.empty() ? "'" : ", '") + to_string(s) + "'";
  return out;
}

}  // namespace

const std::string& schema_sql() {
  static const std::string kSql = kEmbeddedSchemaSql;
  return kSql;
}

double unix_now() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

std::string iso_time(double unix_s) {
  const auto whole = static_cast<std::time_t>(std::floor(unix_s));
  const int millis = std::min(999, static_cast<int>((unix_s - std::floor(unix_s)) * 1000));
  std::tm utc{};
  ::gmtime_r(&whole, &utc);
  char buffer[40];
  const size_t n = std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(buffer + n, sizeof(buffer) - n, ".%03dZ", millis);
  return buffer;
}

std::string to_string(JobState state) {
  return kStateNames[static_cast<int>(state)];
}

JobState job_state_from_string(const std::string& name) {
  for (int i = 0; i < 7; ++i) {
    if (name == kStateNames[i])
      return static_cast<JobState>(i);
  }
  throw Error("results: unknown job state '" + name + "'");
}

const std::vector<JobState>& all_job_states() {
  static const std::vector<JobState> kStates = {JobState::kPlanned,
                                                JobState::kRunning,
                                                JobState::kDone,
                                                JobState::kDiverged,
                                                JobState::kFailed,
                                                JobState::kPreempted,
                                                JobState::kCancelled};
  return kStates;
}

std::string to_string(Outcome outcome) {
  return kOutcomeNames[static_cast<int>(outcome)];
}

Outcome outcome_from_string(const std::string& name) {
  for (int i = 0; i < 7; ++i) {
    if (name == kOutcomeNames[i])
      return static_cast<Outcome>(i);
  }
  throw Error("results: unknown attempt outcome '" + name + "'");
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

const std::string& Store::path() const {
  return impl_->path;
}
int Store::opened_version() const {
  return impl_->opened_version;
}

Store Store::open(const std::string& path, Mode mode) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (!exists && mode == Mode::kExisting) {
    throw InputError(
        path, "--db", path, "does not exist", "plan a sweep first: parcae-scale sweep plan FILE");
  }
  if (!exists) {
    const fs::path parent = fs::path(path).parent_path();
    if (!parent.empty() && !fs::is_directory(parent, ec)) {
      throw InputError(path, "--db", path, "is in a folder that does not exist");
    }
  }
  if (exists && fs::is_directory(path, ec))
    throw InputError(path, "--db", path, "is a folder, expected a file");
  auto impl = std::make_unique<Impl>(Impl{
      Connection(path, SQLITE_OPEN_READWRITE | (mode == Mode::kCreate ? SQLITE_OPEN_CREATE : 0)),
      path,
      0});
  const Connection& db = impl->db;
  detail::check(sqlite3_busy_timeout(db.get(), kBusyTimeoutMs), db.get(), "busy_timeout");
  int version = 0;
  bool fresh = false;
  check_identity(db, path, version, fresh);
  impl->opened_version = version;
  use_wal(db, path);
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec("PRAGMA foreign_keys = ON");
  if (fresh) {
    detail::create_schema(db, schema_sql(), kSchemaVersion);
  } else if (version < kSchemaVersion) {
    detail::migrate(db, detail::migrations(), kSchemaVersion);
  }
  return Store(std::move(impl));
}

namespace {

// What recording a plan would do to the jobs already recorded, decided without writing, so that
// a dry run and the real plan give the same answer.
struct PlanComparison {
  PlanRecordResult result;
  std::vector<const sweeps::PlannedCell*> to_insert;  // new cells and replacements
  std::vector<std::string> to_remove;                 // ids of never-started jobs replaced
  std::vector<std::string> conflicts;                 // started cells whose configuration changed
};

PlanComparison compare_plan(const Connection& db,
                            const sweeps::SweepSpec& spec,
                            const sweeps::Plan& plan) {
  PlanComparison out;
  Statement existing(db,
                     "SELECT id, state, (SELECT count(*) FROM attempts WHERE job = jobs.id) "
                     "FROM jobs WHERE sweep = ?1 AND cell = ?2");
  std::set<std::string> planned_cells;
  for (const sweeps::PlannedCell* cell : plan.jobs()) {
    planned_cells.insert(cell->name);
    existing.reset();
    existing.bind(1, spec.name).bind(2, cell->name);
    if (existing.step()) {
      const std::string old_id = existing.get_text(0);
      const std::string old_state = existing.get_text(1);
      const int64_t old_attempts = existing.get_int(2);
      if (old_id == cell->job_id) {
        ++out.result.unchanged;
        continue;
      }
      if (old_state != "planned" || old_attempts > 0) {
        out.conflicts.push_back(cell->name + " (job " + old_id + ", " + old_state + ")");
        continue;
      }
      out.to_remove.push_back(old_id);
      ++out.result.replaced;
    } else {
      ++out.result.inserted;
    }
    out.to_insert.push_back(cell);
  }
  Statement cells(db, "SELECT cell FROM jobs WHERE sweep = ?1 ORDER BY created_at, rowid");
  cells.bind(1, spec.name);
  while (cells.step()) {
    if (planned_cells.count(cells.get_text(0)) == 0)
      out.result.stale_cells.push_back(cells.get_text(0));
  }
  if (!out.conflicts.empty()) {
    std::string list;
    for (const auto& c : out.conflicts)
      list += (list.empty() ? "" : ", ") + c;
    throw InputError(spec.file,
                     "name",
                     "\"" + spec.name + "\"",
                     "this sweep already has started cells with a different configuration: " + list,
                     "give the changed sweep a new name; nothing was written");
  }
  return out;
}

}  // namespace

PlanRecordResult Store::preview_plan(const sweeps::SweepSpec& spec,
                                     const sweeps::Plan& plan) const {
  return compare_plan(impl_->db, spec, plan).result;
}

PlanRecordResult Store::record_plan(const sweeps::SweepSpec& spec,
                                    const sweeps::Plan& plan,
                                    const std::string& jobs_dir,
                                    const sweeps::RefineRound* round) {
  const Connection& db = impl_->db;
  const double now = unix_now();
  Transaction transaction(db);
  const PlanComparison comparison = compare_plan(db, spec, plan);
  Statement(db,
            "INSERT INTO sweeps (name, file, description, spec, jobs_dir, created_at, updated_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) "
            "ON CONFLICT (name) DO UPDATE SET file = excluded.file, description = "
            "excluded.description, spec = excluded.spec, jobs_dir = excluded.jobs_dir, "
            "updated_at = excluded.updated_at")
      .bind(1, spec.name)
      .bind(2, spec.file)
      .bind(3, spec.description)
      .bind(4, spec.source.dump())
      .bind(5, jobs_dir)
      .bind(6, now)
      .run();
  Statement remove(db, "DELETE FROM jobs WHERE id = ?1");
  for (const std::string& id : comparison.to_remove) {
    remove.reset();
    remove.bind(1, id).run();
  }
  Statement insert(
      db,
      "INSERT INTO jobs (id, sweep, cell, state, model, budget_id, budget_flops, mean_recurrence, "
      "mean_backward, fixed_depth, seed, parameters_total, parameters_noncore, parameters_core, "
      "parameters_embedding, flops_per_token, train_tokens, steps, achieved_flops, "
      "gpu_hours_estimate, gpus, config, out_dir, created_at, updated_at, round) VALUES (?1, ?2, "
      "?3, 'planned', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, "
      "?20, ?21, ?22, ?23, ?23, ?24)");
  for (const sweeps::PlannedCell* cell : comparison.to_insert) {
    insert.reset();
    insert.bind(1, cell->job_id).bind(2, spec.name).bind(3, cell->name).bind(4, cell->model_label);
    if (cell->budget_flops > 0) {
      insert.bind(5, cell->budget_id).bind(6, cell->budget_flops);
    } else {
      insert.bind_null(5).bind_null(6);
    }
    insert.bind(7, cell->mean_recurrence)
        .bind(8, cell->mean_backward)
        .bind(9, cell->fixed_depth ? 1 : 0)
        .bind(10, static_cast<int64_t>(cell->job.seed))
        .bind(11, cell->parameters.total)
        .bind(12, cell->parameters.noncore)
        .bind(13, cell->parameters.core)
        .bind(14, cell->parameters.embedding)
        .bind(15, cell->flops_per_token)
        .bind(16, cell->train_tokens)
        .bind(17, cell->steps)
        .bind(18, cell->achieved_flops)
        .bind(19, cell->gpu_hours)
        .bind(20, cell->job.gpus)
        .bind(21, sweeps::to_json(cell->job).dump())
        .bind(22, (std::filesystem::path(jobs_dir) / cell->job_id).string())
        .bind(23, now)
        .bind(24, cell->round)
        .run();
  }
  if (round != nullptr) {
    Statement upsert(db,
                     "INSERT INTO refine_rounds (sweep, round, action, reason, exponent, "
                     "exponent_ci_low, exponent_ci_high, cells, flops, decision, created_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (sweep, "
                     "round) DO UPDATE SET action = excluded.action, reason = excluded.reason, "
                     "exponent = excluded.exponent, exponent_ci_low = excluded.exponent_ci_low, "
                     "exponent_ci_high = excluded.exponent_ci_high, cells = excluded.cells, "
                     "flops = excluded.flops, decision = excluded.decision");
    upsert.bind(1, spec.name).bind(2, round->round).bind(3, round->action).bind(4, round->reason);
    int column = 5;
    for (double v : {round->exponent, round->exponent_ci_low, round->exponent_ci_high}) {
      if (std::isfinite(v))
        upsert.bind(column, v);
      else
        upsert.bind_null(column);
      ++column;
    }
    upsert.bind(8, round->cells)
        .bind(9, round->flops)
        .bind(10, sweeps::to_json(*round).dump())
        .bind(11, now)
        .run();
  }
  transaction.commit();
  return comparison.result;
}

std::vector<sweeps::RefineRound> Store::refine_rounds(const std::string& sweep) const {
  Statement s(impl_->db, "SELECT decision FROM refine_rounds WHERE sweep = ?1 ORDER BY round");
  s.bind(1, sweep);
  std::vector<sweeps::RefineRound> out;
  while (s.step()) {
    out.push_back(sweeps::refine_round_from_json(
        nlohmann::json::parse(s.get_text(0), nullptr, false), path() + ": refine_rounds"));
  }
  return out;
}

std::optional<SweepRecord> Store::find_sweep(const std::string& name) const {
  Statement s(impl_->db,
              "SELECT name, file, description, spec, jobs_dir, created_at, updated_at FROM sweeps "
              "WHERE name = ?1");
  s.bind(1, name);
  if (!s.step())
    return std::nullopt;
  return SweepRecord{s.get_text(0),
                     s.get_text(1),
                     s.get_text(2),
                     nlohmann::json::parse(s.get_text(3), nullptr, false),
                     s.get_text(4),
                     s.get_double(5),
                     s.get_double(6)};
}

std::vector<SweepRecord> Store::sweeps() const {
  Statement s(impl_->db, "SELECT name FROM sweeps ORDER BY created_at, name");
  std::vector<SweepRecord> out;
  while (s.step())
    out.push_back(*find_sweep(s.get_text(0)));
  return out;
}

std::string Store::resolve_sweep(const std::string& name) const {
  const std::vector<SweepRecord> all = sweeps();
  std::vector<std::string> names;
  for (const auto& s : all)
    names.push_back(s.name);
  if (!name.empty()) {
    if (find_sweep(name))
      return name;
    throw InputError(
        path(),
        "sweep",
        "'" + name + "'",
        "no such sweep in the database",
        names.empty() ? "the database holds no sweeps" : sweeps::suggestion_hint(name, names));
  }
  if (all.size() == 1)
    return all.front().name;
  std::string listed;
  for (const auto& n : names)
    listed += (listed.empty() ? "" : ", ") + n;
  throw InputError(
      path(),
      "sweep",
      "(none given)",
      all.empty() ? "the database has no sweep" : "the database has several sweeps: " + listed,
      all.empty() ? "plan one with: parcae-scale sweep plan FILE" : "name one");
}

std::vector<JobRecord> Store::jobs(const std::string& sweep,
                                   const std::vector<JobState>& states,
                                   JobFields fields) const {
  std::string filter;
  for (JobState state : states)
    filter += (filter.empty() ? "'" : ", '") + to_string(state) + "'";
  Statement s(impl_->db,
              std::string("SELECT ") + kJobColumns + " FROM jobs WHERE sweep = ?1" +
                  (filter.empty() ? "" : " AND state IN (" + filter + ")") +
                  " ORDER BY created_at, rowid");
  s.bind(1, sweep);
  std::vector<JobRecord> out;
  while (s.step())
    out.push_back(read_job(s, fields == JobFields::kAll));
  return out;
}

SweepCounts Store::counts(const std::string& sweep) const {
  SweepCounts counts;
  for (JobState state : all_job_states())
    counts.by_state[state] = 0;
  Statement s(impl_->db,
              "SELECT state, count(*), total(flops_done), total(achieved_flops) FROM jobs WHERE "
              "sweep = ?1 GROUP BY state");
  s.bind(1, sweep);
  while (s.step()) {
    const int n = static_cast<int>(s.get_int(1));
    counts.by_state[job_state_from_string(s.get_text(0))] = n;
    counts.jobs += n;
    counts.flops_done += s.get_double(2);
    counts.flops_total += s.get_double(3);
  }
  return counts;
}

std::optional<JobRecord> Store::find_job(const std::string& id_or_prefix) const {
  if (id_or_prefix.size() < 4 ||
      id_or_prefix.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return std::nullopt;
  }
  Statement s(impl_->db,
              std::string("SELECT ") + kJobColumns +
                  " FROM jobs WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT 2");
  s.bind(1, id_or_prefix);
  if (!s.step())
    return std::nullopt;
  JobRecord job = read_job(s);
  if (job.id != id_or_prefix && s.step()) {
    throw InputError(
        "", "job", id_or_prefix, "matches more than one job", "give more digits of the id");
  }
  return job;
}

int Store::set_jobs_dir(const std::string& sweep, const std::string& jobs_dir) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement(db, "UPDATE sweeps SET jobs_dir = ?2 WHERE name = ?1")
      .bind(1, sweep)
      .bind(2, jobs_dir)
      .run();
  Statement s(
      db,
      "UPDATE jobs SET out_dir = ?2 || '/' || id, updated_at = ?3 WHERE sweep = ?1 AND "
      "NOT EXISTS (SELECT 1 FROM attempts WHERE job = jobs.id) AND out_dir != ?2 || '/' || id");
  s.bind(1, sweep).bind(2, jobs_dir).bind(3, unix_now()).run();
  const int changed = static_cast<int>(db.changes());
  transaction.commit();
  return changed;
}

std::optional<int> Store::claim_job(const std::string& job_id, const AttemptStart& start) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement state(db, "SELECT state FROM jobs WHERE id = ?1");
  state.bind(1, job_id);
  if (!state.step())
    return std::nullopt;
  const JobState current = job_state_from_string(state.get_text(0));
  if (current != JobState::kPlanned && current != JobState::kPreempted)
    return std::nullopt;
  Statement next(db, "SELECT coalesce(max(attempt), 0) + 1 FROM attempts WHERE job = ?1");
  next.bind(1, job_id);
  next.step();
  const int number = static_cast<int>(next.get_int(0));
  const double now = unix_now();
  Statement(db,
            "INSERT INTO attempts (job, attempt, started_at, outcome, backend, host, gpu_model, "
            "devices, owner) VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8)")
      .bind(1, job_id)
      .bind(2, number)
      .bind(3, now)
      .bind(4, start.backend)
      .bind(5, start.host)
      .bind(6, start.gpu_model)
      .bind(7, start.devices)
      .bind(8, start.owner)
      .run();
  Statement(db, "UPDATE jobs SET state = 'running', updated_at = ?2 WHERE id = ?1")
      .bind(1, job_id)
      .bind(2, now)
      .run();
  transaction.commit();
  return number;
}

void Store::set_attempt_process(const std::string& job_id,
                                int attempt,
                                int64_t pid,
                                const std::string& backend_id) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement(db, "UPDATE attempts SET pid = ?3, backend_id = ?4 WHERE job = ?1 AND attempt = ?2")
      .bind(1, job_id)
      .bind(2, attempt)
      .bind(3, pid)
      .bind(4, backend_id)
      .run();
  transaction.commit();
}

std::optional<JobState> Store::finish_attempt(const std::string& job_id,
                                              int attempt,
                                              const AttemptEnd& end) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement open(db, "SELECT ended_at IS NULL FROM attempts WHERE job = ?1 AND attempt = ?2");
  open.bind(1, job_id).bind(2, attempt);
  if (!open.step() || open.get_int(0) == 0)
    return std::nullopt;
  Statement state(db, "SELECT state FROM jobs WHERE id = ?1");
  state.bind(1, job_id);
  state.step();
  const JobState current = job_state_from_string(state.get_text(0));
  const bool cancelled = current == JobState::kCancelled;
  const double now = unix_now();
  Statement(db,
            "UPDATE attempts SET ended_at = ?3, outcome = ?4, exit_code = ?5, reason = ?6 "
            "WHERE job = ?1 AND attempt = ?2")
      .bind(1, job_id)
      .bind(2, attempt)
      .bind(3, now)
      .bind(4, to_string(cancelled ? Outcome::kCancelled : end.outcome))
      .bind(5, end.exit_code)
      .bind(6, cancelled ? "cancelled: " + end.reason : end.reason)
      .run();
  const JobState next = cancelled || current != JobState::kRunning ? current : end.next_state;
  Statement update(db,
                   "UPDATE jobs SET state = ?2, failures = failures + ?3, preemptions = "
                   "preemptions + ?4, last_error = CASE WHEN ?5 THEN ?6 ELSE last_error END, "
                   "updated_at = ?7 WHERE id = ?1");
  update.bind(1, job_id)
      .bind(2, to_string(next))
      .bind(3, end.count_failure ? 1 : 0)
      .bind(4, end.count_preemption ? 1 : 0)
      .bind(5, end.outcome == Outcome::kFailed ? 1 : 0)
      .bind(6, end.reason)
      .bind(7, now)
      .run();
  transaction.commit();
  return next;
}

std::vector<AttemptRecord> Store::attempts(const std::string& job_id) const {
  Statement s(
      impl_->db,
      std::string("SELECT ") + kAttemptColumns + " FROM attempts WHERE job = ?1 ORDER BY attempt");
  s.bind(1, job_id);
  std::vector<AttemptRecord> out;
  while (s.step())
    out.push_back(read_attempt(s));
  return out;
}

std::optional<AttemptRecord> Store::last_attempt(const std::string& job_id) const {
  Statement s(impl_->db,
              std::string("SELECT ") + kAttemptColumns +
                  " FROM attempts WHERE job = ?1 ORDER BY attempt DESC LIMIT 1");
  s.bind(1, job_id);
  if (!s.step())
    return std::nullopt;
  return read_attempt(s);
}

std::vector<std::string> Store::retry_jobs(const std::vector<std::string>& job_ids) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement s(db,
              "UPDATE jobs SET state = 'planned', failures = 0, preemptions = 0, updated_at = ?2 "
              "WHERE id = ?1 AND state IN (" +
                  state_list({JobState::kFailed, JobState::kCancelled}) + ")");
  std::vector<std::string> moved;
  for (const auto& id : job_ids) {
    s.reset();
    s.bind(1, id).bind(2, unix_now()).run();
    if (db.changes() > 0)
      moved.push_back(id);
  }
  transaction.commit();
  return moved;
}

std::vector<std::string> Store::cancel_jobs(const std::vector<std::string>& job_ids) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement state(db, "SELECT state FROM jobs WHERE id = ?1");
  Statement update(db, "UPDATE jobs SET state = 'cancelled', updated_at = ?2 WHERE id = ?1");
  std::vector<std::string> running;
  for (const auto& id : job_ids) {
    state.reset();
    state.bind(1, id);
    if (!state.step())
      continue;
    const JobState current = job_state_from_string(state.get_text(0));
    if (current != JobState::kPlanned && current != JobState::kPreempted &&
        current != JobState::kRunning) {
      continue;
    }
    if (current == JobState::kRunning)
      running.push_back(id);
    update.reset();
    update.bind(1, id).bind(2, unix_now()).run();
  }
  transaction.commit();
  return running;
}

std::vector<CurvePoint> Store::curve(const std::string& job_id) const {
  Statement s(impl_->db,
              "SELECT step, time, tokens, flops, loss, lr_adamw, lr_muon, grad_norm, tokens_per_s, "
              "skipped, mean_depth, log_rho, mean_decay, h_rms FROM curve WHERE job = ?1 ORDER BY "
              "step");
  s.bind(1, job_id);
  std::vector<CurvePoint> out;
  while (s.step()) {
    CurvePoint p;
    p.step = s.get_int(0);
    p.time = s.get_double(1);
    p.tokens = s.get_int(2);
    p.flops = s.get_double(3);
    p.loss = s.get_optional_double(4);
    p.lr_adamw = s.get_optional_double(5);
    p.lr_muon = s.get_optional_double(6);
    p.grad_norm = s.get_optional_double(7);
    p.tokens_per_s = s.get_optional_double(8);
    p.skipped = s.get_optional_int(9);
    p.mean_depth = s.get_optional_double(10);
    p.log_rho = s.get_optional_double(11);
    p.mean_decay = s.get_optional_double(12);
    p.h_rms = s.get_optional_double(13);
    out.push_back(p);
  }
  return out;
}

std::vector<EvaluationRecord> Store::evaluations(const std::string& job_id) const {
  Statement s(impl_->db,
              "SELECT job, step, depth, time, tokens, loss FROM evaluations WHERE job = ?1 ORDER "
              "BY step, depth");
  s.bind(1, job_id);
  std::vector<EvaluationRecord> out;
  while (s.step()) {
    out.push_back({s.get_text(0),
                   s.get_int(1),
                   static_cast<int>(s.get_int(2)),
                   s.get_double(3),
                   s.get_int(4),
                   s.get_optional_double(5)});
  }
  return out;
}

std::vector<ProvenanceRecord> Store::provenance(const std::string& job_id) const {
  Statement s(impl_->db,
              "SELECT job, events_offset, time, resumed, versions, device, world_size, seed, "
              "parameters_total, flops_per_token, max_steps FROM provenance WHERE job = ?1 ORDER "
              "BY events_offset");
  s.bind(1, job_id);
  std::vector<ProvenanceRecord> out;
  while (s.step()) {
    ProvenanceRecord p;
    p.job = s.get_text(0);
    p.events_offset = s.get_int(1);
    p.time = s.get_double(2);
    p.resumed = s.get_int(3) != 0;
    p.versions = nlohmann::json::parse(s.get_text(4), nullptr, false);
    p.device = s.get_optional_text(5);
    p.world_size = s.get_optional_int(6);
    p.seed = s.get_optional_int(7);
    p.parameters_total = s.get_optional_int(8);
    p.flops_per_token = s.get_optional_int(9);
    p.max_steps = s.get_optional_int(10);
    out.push_back(p);
  }
  return out;
}

int64_t Store::save_fit(const FitRecord& fit) {
  const Connection& db = impl_->db;
  Transaction transaction(db);
  Statement(db,
            "INSERT INTO fits (law, sweep, coefficients, intervals, job_ids, details, created_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
      .bind(1, fit.law)
      .bind(2, fit.sweep)
      .bind(3, fit.coefficients.dump())
      .bind(4, fit.intervals.dump())
      .bind(5, id_list_json(fit.job_ids))
      .bind(6, fit.details.dump())
      .bind(7, fit.created_at > 0 ? fit.created_at : unix_now())
      .run();
  const int64_t id = sqlite3_last_insert_rowid(db.get());
  transaction.commit();
  return id;
}

std::vector<FitRecord> Store::fits(const std::string& sweep) const {
  Statement s(impl_->db,
              "SELECT id, law, sweep, coefficients, intervals, job_ids, details, created_at FROM "
              "fits WHERE sweep = ?1 ORDER BY id");
  s.bind(1, sweep);
  std::vector<FitRecord> out;
  while (s.step()) {
    FitRecord f;
    f.id = s.get_int(0);
    f.law = s.get_text(1);
    f.sweep = s.get_optional_text(2);
    f.coefficients = nlohmann::json::parse(s.get_text(3), nullptr, false);
    f.intervals = nlohmann::json::parse(s.get_text(4), nullptr, false);
    const auto ids = nlohmann::json::parse(s.get_text(5), nullptr, false);
    if (ids.is_array()) {
      for (const auto& id : ids) {
        if (id.is_string())
          f.job_ids.push_back(id.get<std::string>());
      }
    }
    f.details = nlohmann::json::parse(s.get_text(6), nullptr, false);
    f.created_at = s.get_double(7);
    out.push_back(f);
  }
  return out;
}

// The labels of a job's mu_rec (sweeps::RecurrenceChoice::label(): the two mu_rec = 1 controls
// named apart from the axis's own mu_rec = 1, '-' for a Transformer, which has no core) and of
// its FLOP convention (absent from the JSON of jobs planned before conventions existed: the
// reference), for the exports.
const char kJobLabels[] =
    "CASE WHEN j.parameters_core = 0 THEN '-' WHEN j.fixed_depth = 1 THEN '1-fixed' "
    "WHEN json_extract(j.config, '$.poisson_control') THEN '1-poisson' "
    "ELSE CAST(j.mean_recurrence AS TEXT) END "
    "AS recurrence, COALESCE(json_extract(j.config, '$.flop_convention'), 'reference') AS "
    "flop_convention";

Table Store::export_table(const std::string& sweep, const std::string& table) const {
  const Connection& db = impl_->db;
  // Exports are read by pandas, polars and DuckDB: one name per concept (job_id, fit_id), times
  // as ISO 8601 UTC text, and the curve and evaluations rows carry the job's design columns so
  // that each table can be plotted on its own.
  if (table == "jobs") {
    return query_table(
        db,
        "SELECT j.id AS job_id, j.cell, j.state, j.model, j.budget_id, j.budget_flops, "
        "j.mean_recurrence, j.mean_backward, j.fixed_depth, " +
            std::string(kJobLabels) +
            ", j.seed, j.parameters_total, j.parameters_noncore, j.parameters_core, "
            "j.parameters_embedding, j.flops_per_token, j.train_tokens, j.steps, "
            "j.achieved_flops, j.gpu_hours_estimate, j.gpus, j.steps_done, j.tokens_done, "
            "j.flops_done, j.last_loss, j.final_status, j.loss_train, j.loss_val, j.wall_time_s, "
            "j.failures, j.preemptions, j.last_error, j.out_dir, j.round, " +
            iso_time("j.created_at") + " AS created_at, " + iso_time("j.updated_at") +
            " AS updated_at FROM jobs j WHERE j.sweep = ?1 ORDER BY j.created_at, j.rowid",
        sweep);
  }
  if (table == "attempts") {
    return query_table(db,
                       "SELECT a.job AS job_id, j.cell, a.attempt, " + iso_time("a.started_at") +
                           " AS started_at, " + iso_time("a.ended_at") +
                           " AS ended_at, a.outcome, a.exit_code, a.reason, a.backend, "
                           "a.backend_id, a.host, a.gpu_model, a.devices, a.pid FROM attempts a "
                           "JOIN jobs j ON j.id = a.job WHERE j.sweep = ?1 ORDER BY j.created_at, "
                           "j.rowid, a.attempt",
                       sweep);
  }
  const std::string design =
      "j.cell, j.model, j.budget_id, j.budget_flops, j.mean_recurrence, j.fixed_depth, " +
      std::string(kJobLabels) +
      ", j.parameters_total, j.parameters_noncore, j.parameters_core, j.seed";
  if (table == "curve") {
    return query_table(
        db,
        "SELECT c.job AS job_id, " + design + ", c.step, " + iso_time("c.time") +
            " AS time, c.tokens, c.flops, c.loss, c.lr_adamw, c.lr_muon, c.grad_norm, "
            "c.tokens_per_s, c.skipped, c.mean_depth, c.log_rho, c.mean_decay, c.h_rms FROM "
            "curve c JOIN jobs j ON j.id = c.job WHERE j.sweep = ?1 ORDER BY j.created_at, "
            "j.rowid, c.step",
        sweep);
  }
  if (table == "evaluations") {
    return query_table(db,
                       "SELECT e.job AS job_id, " + design +
                           ", e.step, e.tokens, e.depth, e.loss, " + iso_time("e.time") +
                           " AS time FROM evaluations e JOIN jobs j ON j.id = e.job WHERE "
                           "j.sweep = ?1 ORDER BY j.created_at, j.rowid, e.step, e.depth",
                       sweep);
  }
  if (table == "fits") {
    return query_table(db,
                       "SELECT id AS fit_id, law, sweep, coefficients, intervals, job_ids, "
                       "details, " +
                           iso_time("created_at") +
                           " AS created_at FROM fits WHERE sweep = ?1 ORDER BY id",
                       sweep,
                       {"coefficients", "intervals", "job_ids", "details"});
  }
  throw InputError("", "--table", table, "expected jobs, attempts, curve, evaluations or fits");
}

std::string Store::integrity_check() const {
  Statement s(impl_->db, "PRAGMA integrity_check");
  std::string out;
  while (s.step())
    out += (out.empty() ? "" : "\n") + s.get_text(0);
  return out;
}

std::string Store::schema_dump() const {
  const Connection& db = impl_->db;
  std::string out = "PRAGMA application_id = " +
                    std::to_string(db.query_int("PRAGMA application_id").value_or(0)) + ";\n";
  out +=
      "PRAGMA user_version = " + std::to_string(db.query_int("PRAGMA user_version").value_or(0)) +
      ";\n";
  Statement s(db,
              "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
              "ORDER BY rowid");
  while (s.step())
    out += s.get_text(0) + ";\n";
  return out;
}

}  // namespace parcae::results
