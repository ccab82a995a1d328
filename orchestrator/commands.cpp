// The orchestrator's smaller operations: planning a sweep file into the database, status,
// retry, cancel, and the lookups the command line shares (targets, GPU lists, the trainer).
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "orchestrator/detail/data_preparation.h"
#include "orchestrator/detail/job_files.h"
#include "orchestrator/detail/process.h"
#include "orchestrator/detail/slurm.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/run_contract.h"
#include "sweeps/suggest.h"

namespace parcae::orchestrator {
namespace {

namespace fs = std::filesystem;
using results::JobState;
using results::Store;

// Lines of trainer.log shown for a failed job.
constexpr int kLogTailLines = 5;

std::vector<std::string> log_tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines)
      tail.pop_front();
  }
  return {tail.begin(), tail.end()};
}

std::string absolute_normal(const std::string& path) {
  return fs::absolute(path).lexically_normal().string();
}

// Signals the process group of a "<pid>/<start ticks>" trainer when it is still that process.
bool signal_identity(const std::string& identity, int signal_number) {
  if (!detail::identity_alive(identity))
    return false;
  const pid_t pid = static_cast<pid_t>(std::stoll(identity.substr(0, identity.find('/'))));
  if (::kill(-pid, signal_number) != 0)
    ::kill(pid, signal_number);
  return true;
}

}  // namespace

std::string default_jobs_root(const std::string& db_path) {
  return (fs::absolute(db_path).parent_path() / "runs").lexically_normal().string();
}

void check_folder_path(const std::string& path, const std::string& flag) {
  std::error_code ec;
  fs::path existing = fs::absolute(path, ec).lexically_normal();
  while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.parent_path())
    existing = existing.parent_path();
  if (!existing.empty() && fs::exists(existing, ec) && !fs::is_directory(existing, ec)) {
    throw InputError("",
                     flag,
                     path,
                     existing.string() == fs::absolute(path, ec).lexically_normal().string()
                         ? "is a file, expected a folder"
                         : "cannot be made: " + existing.string() + " is a file, not a folder");
  }
}

PlanOutcome plan_sweep_file(const PlanOptions& options) {
  sweeps::SweepReadOptions read_options;
  read_options.data_dir = options.data_dir;
  read_options.require_data = options.require_data;
  read_options.overrides = options.overrides;
  PlanOutcome outcome;
  if (options.require_data) {
    sweeps::SweepReadOptions without_data = read_options;
    without_data.require_data = false;
    const sweeps::SweepSpec declared = sweeps::read_sweep_file(options.sweep_file, without_data);
    // A dry run writes nothing, data included; it plans without the shards it would prepare,
    // and reads those prepared before, so that it can count their tokens.
    if (options.dry_run && !declared.data.prepare.empty())
      read_options.require_data = detail::sweep_data_prepared(declared);
    else
      detail::prepare_sweep_data(declared, options.on_note);
  }
  outcome.spec = sweeps::read_sweep_file(options.sweep_file, read_options);
  // A refined sweep's rounds are part of it: planning its file again keeps their cells.
  std::vector<sweeps::RefineRound> rounds;
  {
    std::error_code ec;
    if (fs::exists(options.db_path, ec)) {
      const Store store = Store::open(options.db_path, Store::Mode::kExisting);
      if (store.find_sweep(outcome.spec.name))
        rounds = refinement_rounds(store, outcome.spec.name);
    }
  }
  if (!rounds.empty()) {
    sweeps::SweepReadOptions refined_options = read_options;
    refined_options.overrides.clear();  // already in the document
    const nlohmann::json document = outcome.spec.source;
    outcome.spec =
        sweeps::sweep_spec_from_json(sweeps::apply_refinement(document, outcome.spec, rounds),
                                     options.sweep_file,
                                     refined_options);
    outcome.spec.source = document;
  }
  outcome.plan = sweeps::plan_sweep(outcome.spec, sweeps::measure_corpus(outcome.spec));
  sweeps::assign_rounds(outcome.plan, rounds);
  const std::string root = options.jobs_root.empty() ? default_jobs_root(options.db_path)
                                                     : absolute_normal(options.jobs_root);
  outcome.jobs_dir = (fs::path(root) / outcome.spec.name).string();
  check_folder_path(outcome.jobs_dir, options.jobs_root.empty() ? "runs folder" : "--jobs-dir");
  if (options.dry_run) {
    // A dry run compares with what the database holds, read only, so that it refuses what the
    // real plan would refuse.
    std::error_code ec;
    if (fs::exists(options.db_path, ec)) {
      const Store store = Store::open(options.db_path, Store::Mode::kExisting);
      outcome.would_record = store.preview_plan(outcome.spec, outcome.plan);
    }
    return outcome;
  }
  Store store = Store::open(options.db_path, Store::Mode::kCreate);
  outcome.recorded = store.record_plan(outcome.spec, outcome.plan, outcome.jobs_dir);
  if (!options.jobs_root.empty())
    store.set_jobs_dir(outcome.spec.name, outcome.jobs_dir);
  if (options.require_data)
    detail::write_job_files(store, outcome.spec.name);
  return outcome;
}

void detail::write_job_files(const Store& store, const std::string& sweep) {
  // Each run folder is complete from the start, so that the jobs can also be trained where
  // parcae-scale is not installed (scripts/run-jobs) and ingested later with `sweep sync`.
  for (const auto& job : store.jobs(sweep, {JobState::kPlanned})) {
    const std::string job_file = (fs::path(job.out_dir) / sweeps::kJobFileName).string();
    if (fs::exists(job_file) || !store.attempts(job.id).empty())
      continue;
    fs::create_directories(job.out_dir);
    sweeps::write_job_file(
        sweeps::job_config_from_json(job.config, "(database: job " + job.id + ")"), job_file);
  }
}

SyncResult sync(const std::string& db_path, const std::string& sweep) {
  Store store = Store::open(db_path, Store::Mode::kExisting);
  if (!store.find_sweep(sweep)) {
    throw InputError(db_path, "sweep", sweep, "no such sweep in the database");
  }
  SyncResult result;
  for (const auto& job : store.jobs(
           sweep, {JobState::kPlanned, JobState::kPreempted}, Store::JobFields::kWithoutConfig)) {
    const std::string events = (fs::path(job.out_dir) / sweeps::kEventsFileName).string();
    const results::IngestReport report = store.ingest_events(job.id, events);
    if (report.lines > 0)
      result.ingested.push_back(job.id);
    for (const auto& bad : report.bad_lines) {
      result.bad_lines.push_back(
          fmt::format("{}: line {} ({}): {}", events, bad.line, job.cell, bad.message));
    }
    const auto fresh = store.find_job(job.id);
    if (!fresh->final_status)
      continue;
    // Trained elsewhere: recorded as one attempt of the "external" backend.
    results::AttemptStart start;
    start.backend = "external";
    start.host = "(unknown)";
    start.owner = "sweep sync on " + detail::self_owner();
    const auto attempt = store.claim_job(job.id, start);
    if (!attempt)
      continue;
    const bool diverged = *fresh->final_status == sweeps::kStatusDiverged;
    results::AttemptEnd end;
    end.outcome = diverged ? results::Outcome::kDiverged : results::Outcome::kDone;
    end.next_state = diverged ? JobState::kDiverged : JobState::kDone;
    end.reason = "trained elsewhere; events ingested by `sweep sync`";
    store.finish_attempt(job.id, *attempt, end);
    result.finished.push_back(job.id);
  }
  return result;
}

std::vector<SweepStatus> sweep_status(const std::string& db_path, const std::string& sweep) {
  Store store = Store::open(db_path, Store::Mode::kExisting);
  std::vector<results::SweepRecord> records;
  if (sweep.empty()) {
    records = store.sweeps();
  } else {
    auto record = store.find_sweep(sweep);
    if (!record) {
      std::vector<std::string> names;
      for (const auto& s : store.sweeps())
        names.push_back(s.name);
      throw InputError(db_path,
                       "sweep",
                       sweep,
                       "no such sweep in the database",
                       sweeps::suggestion_hint(sweep, names));
    }
    records.push_back(*record);
  }
  std::vector<SweepStatus> out;
  for (const auto& record : records) {
    SweepStatus status;
    // Jobs on Slurm are brought up to date here: no watcher runs between commands.
    try {
      const SlurmReconcileResult reconciled = reconcile_slurm(store, record.name);
      for (const auto& line : reconciled.ended)
        status.notes.push_back(line);
      for (const auto& line : reconciled.bad_lines)
        status.notes.push_back("events.jsonl line skipped: " + line);
    } catch (const Error& error) {
      status.notes.push_back(std::string("could not ask Slurm: ") + error.what());
    }
    status.sweep = record;
    status.rounds = store.refine_rounds(record.name);
    status.jobs = store.jobs(record.name, {}, Store::JobFields::kWithoutConfig);
    const results::SweepCounts counts = store.counts(record.name);
    status.counts = counts.by_state;
    status.flops_done = counts.flops_done;
    status.flops_total = counts.flops_total;
    for (const auto& job : status.jobs) {
      if (job.state == JobState::kFailed) {
        status.log_tails[job.id] =
            log_tail((fs::path(job.out_dir) / sweeps::kTrainerLogName).string(), kLogTailLines);
      }
    }
    out.push_back(std::move(status));
  }
  return out;
}

nlohmann::ordered_json to_json(const SweepStatus& status, bool with_jobs) {
  const auto optional = [](const auto& value) {
    return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json();
  };
  nlohmann::ordered_json counts = nlohmann::ordered_json::object();
  for (JobState state : results::all_job_states()) {
    const auto it = status.counts.find(state);
    counts[results::to_string(state)] = it == status.counts.end() ? 0 : it->second;
  }
  nlohmann::ordered_json out = {{"sweep", status.sweep.name},
                                {"file", status.sweep.file},
                                {"description", status.sweep.description},
                                {"created_at", results::iso_time(status.sweep.created_at)},
                                {"updated_at", results::iso_time(status.sweep.updated_at)},
                                {"jobs_total", status.jobs.size()},
                                {"counts", counts},
                                {"flops_done", status.flops_done},
                                {"flops_total", status.flops_total}};
  if (!with_jobs)
    return out;
  nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
  for (const auto& job : status.jobs) {
    nlohmann::ordered_json j = {{"job_id", job.id},
                                {"cell", job.cell},
                                {"state", results::to_string(job.state)},
                                {"model", job.model},
                                {"budget_id", optional(job.budget_id)},
                                {"budget_flops", optional(job.budget_flops)},
                                {"mean_recurrence", job.mean_recurrence},
                                {"fixed_depth", job.fixed_depth},
                                {"round", job.round},
                                {"steps", job.steps},
                                {"steps_done", optional(job.steps_done)},
                                {"last_loss", optional(job.last_loss)},
                                {"loss_val", optional(job.loss_val)},
                                {"failures", job.failures},
                                {"preemptions", job.preemptions},
                                {"last_error", optional(job.last_error)},
                                {"out_dir", job.out_dir}};
    const auto tail = status.log_tails.find(job.id);
    j["log_tail"] = tail != status.log_tails.end() ? nlohmann::ordered_json(tail->second)
                                                   : nlohmann::ordered_json::array();
    jobs.push_back(j);
  }
  out["jobs"] = jobs;
  return out;
}

std::vector<std::string> resolve_targets(const Store& store,
                                         const std::vector<std::string>& targets) {
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (const auto& target : targets) {
    if (store.find_sweep(target)) {
      for (const auto& job : store.jobs(target, {}, Store::JobFields::kWithoutConfig)) {
        if (seen.insert(job.id).second)
          ids.push_back(job.id);
      }
      continue;
    }
    const auto job = store.find_job(target);
    if (!job) {
      std::vector<std::string> names;
      for (const auto& s : store.sweeps())
        names.push_back(s.name);
      throw InputError(store.path(),
                       "target",
                       target,
                       "is neither a sweep name nor a job id",
                       names.empty() ? "" : sweeps::suggestion_hint(target, names));
    }
    if (seen.insert(job->id).second)
      ids.push_back(job->id);
  }
  return ids;
}

std::vector<std::string> retry(const std::string& db_path,
                               const std::vector<std::string>& targets) {
  Store store = Store::open(db_path, Store::Mode::kExisting);
  return store.retry_jobs(resolve_targets(store, targets));
}

CancelResult cancel(const std::string& db_path,
                    const std::vector<std::string>& targets,
                    double grace_s) {
  Store store = Store::open(db_path, Store::Mode::kExisting);
  const std::vector<std::string> ids = resolve_targets(store, targets);
  std::vector<std::string> running = store.cancel_jobs(ids);
  CancelResult result;
  // Slurm jobs are stopped by Slurm; the rest are local trainers.
  result.slurm = detail::cancel_slurm_attempts(store, running);
  const std::set<std::string> on_slurm(result.slurm.begin(), result.slurm.end());
  running.erase(std::remove_if(running.begin(),
                               running.end(),
                               [&](const std::string& id) { return on_slurm.count(id) > 0; }),
                running.end());
  for (const auto& id : ids) {
    if (store.find_job(id)->state == JobState::kCancelled)
      result.cancelled.push_back(id);
  }
  const std::string host = detail::host_name();
  struct Victim {
    std::string job;
    results::AttemptRecord attempt;
    int pidfd = -1;
  };
  std::vector<Victim> victims;
  std::vector<std::pair<std::string, results::AttemptRecord>> orphans;  // nobody will record these
  for (const auto& id : running) {
    const auto attempt = store.last_attempt(id);
    if (!attempt)
      continue;
    if (attempt->host != host) {
      result.unreachable.push_back(id);
      continue;
    }
    if (attempt->backend_id && detail::identity_alive(*attempt->backend_id)) {
      const int64_t pid =
          std::stoll(attempt->backend_id->substr(0, attempt->backend_id->find('/')));
      Victim v{id, *attempt, detail::open_pidfd(pid)};
      signal_identity(*attempt->backend_id, SIGTERM);
      result.stopped.push_back(id);
      victims.push_back(v);
    }
    // A live orchestrator (this process included) records the end of its own attempt.
    if (detail::owner_state(attempt->owner) == detail::OwnerState::kDead) {
      orphans.emplace_back(id, *attempt);
    }
  }
  // Wait for the trainers to save and exit; pidfds wake us at each exit.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
  while (true) {
    std::vector<pollfd> fds;
    bool polling_blind = false;
    for (const auto& v : victims) {
      if (!v.attempt.backend_id || !detail::identity_alive(*v.attempt.backend_id))
        continue;
      if (v.pidfd >= 0) {
        fds.push_back({v.pidfd, POLLIN, 0});
      } else {
        polling_blind = true;
      }
    }
    if (fds.empty() && !polling_blind)
      break;
    const double left =
        std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      for (const auto& v : victims) {
        if (signal_identity(*v.attempt.backend_id, SIGKILL))
          result.killed.push_back(v.job);
      }
      break;
    }
    ::poll(fds.data(),
           fds.size(),
           static_cast<int>(std::min(left, polling_blind ? 0.05 : left) * 1000) + 1);
  }
  for (const auto& v : victims) {
    if (v.pidfd >= 0)
      ::close(v.pidfd);
  }
  // The attempts of dead orchestrators are recorded here; a live one records its own.
  for (const auto& [id, attempt] : orphans) {
    const auto job = store.find_job(id);
    store.ingest_events(id, (fs::path(job->out_dir) / sweeps::kEventsFileName).string());
    results::AttemptEnd end;
    end.outcome = results::Outcome::kCancelled;
    end.reason = "cancelled by `sweep cancel`";
    end.next_state = JobState::kCancelled;
    store.finish_attempt(id, attempt.attempt, end);
  }
  return result;
}

std::vector<int> parse_gpu_list(const std::string& text, const std::string& flag) {
  std::vector<int> out;
  std::set<int> seen;
  size_t start = 0;
  auto bad = [&]() {
    return InputError("", flag, text, "expected auto, all, none, or GPU indices such as 0-3,6");
  };
  if (text.empty())
    throw bad();
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t dash = item.find('-');
    try {
      size_t used = 0;
      const int first = std::stoi(item.substr(0, dash), &used);
      if (used != item.substr(0, dash).size() || first < 0)
        throw bad();
      int last = first;
      if (dash != std::string::npos) {
        last = std::stoi(item.substr(dash + 1), &used);
        if (used != item.substr(dash + 1).size() || last < first)
          throw bad();
      }
      for (int g = first; g <= last; ++g) {
        if (seen.insert(g).second)
          out.push_back(g);
      }
    } catch (const std::logic_error&) {
      throw bad();
    }
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

std::string find_trainer(const std::string& explicit_path) {
  auto executable = [](const std::string& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
  };
  if (!explicit_path.empty()) {
    if (!executable(explicit_path)) {
      throw InputError("", "--trainer", explicit_path, "is not an executable file");
    }
    return absolute_normal(explicit_path);
  }
  const char* env = std::getenv("PARCAE_TRAIN");
  if (env != nullptr && *env != '\0') {
    if (!executable(env))
      throw InputError("", "PARCAE_TRAIN", env, "is not an executable file");
    return absolute_normal(env);
  }
  const std::string beside = (fs::path(detail::executable_dir()) / "parcae-train").string();
  if (executable(beside))
    return beside;
  throw InputError("",
                   "--trainer",
                   "(not given)",
                   "cannot find parcae-train: not at " + beside + " and PARCAE_TRAIN is not set",
                   "build it (ninja parcae-train) or pass --trainer PATH");
}

}  // namespace parcae::orchestrator
