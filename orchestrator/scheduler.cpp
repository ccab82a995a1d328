// run_sweep(): the queue of one sweep, dispatched to local trainer processes.
//
// The loop: reconcile the jobs a previous orchestrator left running (adopt live trainers, resume
// the rest), then repeatedly fill free slots with planned or preempted jobs (each claimed in its
// own transaction, so two orchestrators never take the same job), wait for a trainer to end or
// for the poll interval, ingest what the running trainers wrote, and record each ended attempt.
// A stop signal turns the loop into a shutdown: nothing new is dispatched, every trainer gets
// SIGTERM, and the loop goes on until they have saved and exited (or the grace period ends).
#include "orchestrator/detail/scheduler.h"

#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "orchestrator/detail/launcher.h"
#include "orchestrator/detail/process.h"
#include "orchestrator/detail/resources.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/run_contract.h"

namespace parcae::orchestrator {
namespace detail {

void check_shared_run_options(const RunOptions& o) {
  if (o.retries < 0)
    throw InputError("", "--retries", std::to_string(o.retries), "expected >= 0");
  if (o.preemption_retries < 0) {
    throw InputError(
        "", "--preemption-retries", std::to_string(o.preemption_retries), "expected >= 0");
  }
  if (!(o.poll_interval_s > 0))
    throw InputError("", "--poll-interval", std::to_string(o.poll_interval_s), "expected > 0");
}

results::AttemptEnd decide_attempt_end(const ExitFacts& facts, const RetryBudgets& budgets) {
  using results::JobState;
  using results::Outcome;
  results::AttemptEnd end;
  const auto finished = [&](const std::string& how) {
    end.outcome =
        facts.final_status == sweeps::kStatusDiverged ? Outcome::kDiverged : Outcome::kDone;
    end.next_state =
        facts.final_status == sweeps::kStatusDiverged ? JobState::kDiverged : JobState::kDone;
    end.reason = how;
    return end;
  };
  const auto requeue = [&](Outcome outcome, const std::string& reason) {
    end.outcome = outcome;
    end.reason = reason;
    if (facts.stopping) {
      end.next_state = JobState::kPreempted;
      return end;
    }
    end.count_preemption = true;
    if (facts.preemptions + 1 > budgets.preemption_retries) {
      end.next_state = JobState::kFailed;
      end.reason += fmt::format("; gave up after {} interruptions (--preemption-retries {})",
                                facts.preemptions + 1,
                                budgets.preemption_retries);
    } else {
      end.next_state = JobState::kPreempted;
    }
    return end;
  };
  const auto fail = [&](const std::string& reason, bool deterministic) {
    end.outcome = Outcome::kFailed;
    end.count_failure = true;
    end.reason = reason;
    if (facts.error_message)
      end.reason += ": " + *facts.error_message;
    if (deterministic) {
      end.next_state = JobState::kFailed;
      end.reason += " (not retried: the same input fails the same way)";
    } else if (facts.failures + 1 > budgets.retries) {
      end.next_state = JobState::kFailed;
      end.reason += fmt::format(
          " (attempt failed {} times; --retries {})", facts.failures + 1, budgets.retries);
    } else {
      end.next_state = JobState::kPlanned;
      end.reason += " (will retry)";
    }
    return end;
  };

  end.exit_code = facts.exit_code;
  if (facts.silent_s && !facts.final_status && !facts.stopping) {
    return fail(fmt::format("no event for {:.0f} s (--silence-limit): taken for hung and killed",
                            *facts.silent_s),
                false);
  }
  if (!facts.exit_code) {
    if (facts.final_status)
      return finished("trainer finished (" + *facts.final_status + ")");
    return requeue(Outcome::kLost,
                   "trainer process gone without a done event; resumes from its checkpoint");
  }
  const int code = *facts.exit_code;
  if (code == 0) {
    if (facts.final_status)
      return finished("trainer finished (" + *facts.final_status + ")");
    return fail("exit 0 without a done event", false);
  }
  if (facts.stopping) {
    end.outcome = Outcome::kPreempted;
    end.next_state = JobState::kPreempted;
    end.reason = code == sweeps::kExitPreempted
                     ? "stopped by the orchestrator after saving (exit 143)"
                     : fmt::format("stopped by the orchestrator (exit {})", code);
    return end;
  }
  if (code == sweeps::kExitPreempted)
    return requeue(Outcome::kPreempted, "preempted after saving (exit 143)");
  if (code == sweeps::kExitBadInput)
    return fail("bad input (exit 2)", true);
  if (code == 125)
    return fail("trainer released without the go signal (exit 125)", false);
  if (code == 126 || code == 127)
    return fail(fmt::format("trainer could not be executed (exit {})", code), true);
  if (code > 128)
    return fail(fmt::format("killed by signal {} (exit {})", code - 128, code), false);
  return fail(fmt::format("exit {}", code), false);
}

detail::SlotPlan slot_plan_for(const RunOptions& o,
                               const std::optional<results::SweepRecord>& sweep,
                               int default_jobs_per_gpu) {
  int jobs_per_gpu = o.jobs_per_gpu;
  if (jobs_per_gpu <= 0) {
    jobs_per_gpu = default_jobs_per_gpu;
    if (sweep && sweep->spec.contains("resources") &&
        sweep->spec["resources"].contains("jobs_per_gpu") &&
        sweep->spec["resources"]["jobs_per_gpu"].is_number_integer()) {
      jobs_per_gpu = std::max(1, sweep->spec["resources"]["jobs_per_gpu"].get<int>());
    }
  }
  const bool listed = o.gpus != "auto" && o.gpus != "all" && o.gpus != "none";
  return plan_slots(o.gpus,
                    listed ? parse_gpu_list(o.gpus) : std::vector<int>{},
                    jobs_per_gpu,
                    o.max_parallel,
                    visible_gpus(discover_gpus(), gpu_environment()),
                    usable_cores());
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;
using results::JobRecord;
using results::JobState;
using results::Store;

using Clock = std::chrono::steady_clock;

struct RunningJob {
  std::string cell;
  int attempt = 0;
  std::vector<int> gpus;
  std::string out_dir;
  std::optional<int64_t> steps_seen;
  std::optional<std::string> error_message;  // the last error event ingested so far
  Clock::time_point last_event;              // when an event of it was last ingested (or launch)
  std::optional<double> killed_silent_s;     // set once it was killed for silence
};

// True when `error` comes from a full disk or an exhausted quota: a launch that fails for it is
// tried again once space is freed, not counted against the job.
bool is_out_of_space(const std::exception& error) {
  if (const auto* fs_error = dynamic_cast<const fs::filesystem_error*>(&error)) {
    const int code = fs_error->code().value();
    return code == ENOSPC || code == EDQUOT;
  }
  const std::string message = error.what();
  return message.find(std::strerror(ENOSPC)) != std::string::npos ||
         message.find(std::strerror(EDQUOT)) != std::string::npos;
}

// Bytes free to us on the file system that holds `path` (or its nearest existing parent).
uint64_t free_bytes(const std::string& path) {
  std::error_code ec;
  fs::path existing = fs::absolute(path, ec);
  while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.parent_path())
    existing = existing.parent_path();
  struct statvfs info {};
  if (::statvfs(existing.c_str(), &info) != 0)
    return 0;
  return static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
}

std::string devices_text(const std::vector<int>& gpus) {
  std::string out;
  for (int g : gpus)
    out += (out.empty() ? "" : ",") + std::to_string(g);
  return out;
}

class Scheduler {
 public:
  Scheduler(const RunOptions& options, Store& store, std::string sweep, std::string trainer)
      : options_(options),
        store_(store),
        sweep_(std::move(sweep)),
        trainer_(std::move(trainer)),
        launcher_(detail::make_local_launcher()),
        pool_({}, 1, 1),
        owner_(detail::self_owner()),
        host_(detail::host_name()) {}

  RunSummary run() {
    setup_slots();
    reconcile();
    try {
      return supervise();
    } catch (...) {
      // The database or the disk failed under us: the trainers are stopped as on a signal, so
      // that none is left running without a supervisor. The next `sweep run` resumes them from
      // their checkpoints.
      stop_trainers();
      throw;
    }
  }

 private:
  RunSummary supervise() {
    bool stopping = false;
    auto deadline = std::chrono::steady_clock::now();
    bool killed = false;
    while (true) {
      const int signal_number = options_.stop_signal != nullptr ? options_.stop_signal->load() : 0;
      if (signal_number != 0 && !stopping) {
        stopping = true;
        summary_.stopped_by_signal = signal_number;
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(options_.stop_grace_s * 1000));
        note(fmt::format("stopping on signal {}: waiting for {} trainer(s) to save",
                         signal_number,
                         running_.size()));
        for (const auto& [id, job] : running_)
          launcher_->signal(id, SIGTERM);
      }
      if (!stopping)
        dispatch();
      // With no space to launch in, the sweep waits for space (or a signal) instead of ending.
      if (running_.empty() && (stopping || !waiting_for_space_))
        break;
      double wait_s = options_.poll_interval_s;
      if (stopping) {
        const auto left =
            std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0 && !killed) {
          killed = true;
          note("grace period over: killing the trainers that have not exited");
          for (const auto& [id, job] : running_)
            launcher_->signal(id, SIGKILL);
        }
        wait_s = std::max(0.01, std::min(wait_s, left));
      }
      const auto exited = launcher_->wait(wait_s);
      ingest_running();
      if (!stopping)
        kill_silent_trainers();
      for (const auto& e : exited)
        finish(e, stopping);
    }
    const results::SweepCounts counts = store_.counts(sweep_);
    summary_.counts = counts.by_state;
    // Ours have all ended; any job still running belongs to another orchestrator.
    summary_.elsewhere = counts.by_state.at(JobState::kRunning);
    return summary_;
  }

  // Sends SIGTERM to every trainer, SIGKILL to those still there after the stop grace, and waits
  // for them to end. Their attempts stay recorded as running; the next run resumes them.
  void stop_trainers() noexcept {
    try {
      for (const auto& [id, job] : running_)
        launcher_->signal(id, SIGTERM);
      const auto deadline =
          std::chrono::steady_clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(options_.stop_grace_s * 1000));
      bool killed = false;
      // Bounded: after SIGKILL a process ends at once, and one the launcher cannot see end is
      // given up on after a few seconds rather than holding the error back.
      for (int rounds_after_kill = 0; !launcher_->active().empty() && rounds_after_kill < 50;) {
        const double left =
            std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0 && !killed) {
          killed = true;
          for (const auto& id : launcher_->active())
            launcher_->signal(id, SIGKILL);
        }
        if (killed)
          ++rounds_after_kill;
        launcher_->wait(killed ? 0.1 : std::max(0.01, std::min(left, 0.1)));
      }
    } catch (...) {
      // Stopping is best effort here; the error that brought us here is the one to report.
    }
  }

  void setup_slots() {
    const detail::SlotPlan slots = detail::slot_plan_for(options_, store_.find_sweep(sweep_));
    for (const auto& gpu : slots.gpus)
      gpu_names_[gpu.index] = gpu.name;
    pool_ = slots.pool();
    threads_per_job_ = slots.threads_per_job;
    for (const JobRecord& job : store_.jobs(sweep_,
                                            {JobState::kPlanned, JobState::kPreempted},
                                            Store::JobFields::kWithoutConfig)) {
      if (!pool_.cpu() && job.gpus > pool_.gpu_count()) {
        throw InputError("",
                         "--gpus",
                         options_.gpus,
                         fmt::format("job {} ({}) needs {} GPUs but {} are available ({})",
                                     job.id,
                                     job.cell,
                                     job.gpus,
                                     pool_.gpu_count(),
                                     slots.source));
      }
    }
  }

  void emit(ProgressEvent event) {
    if (!options_.on_progress)
      return;
    const results::SweepCounts counts = store_.counts(sweep_);
    event.counts = counts.by_state;
    event.jobs = counts.jobs;
    event.flops_done = counts.flops_done;
    event.flops_total = counts.flops_total;
    options_.on_progress(event);
  }

  void note(const std::string& message) {
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kNote;
    e.message = message;
    emit(e);
  }

  void report_bad_lines(const std::string& id,
                        const std::string& cell,
                        const results::IngestReport& report) {
    if (report.bad_lines.empty())
      return;
    std::string lines;
    for (const auto& bad : report.bad_lines) {
      lines += (lines.empty() ? "" : "; ") + fmt::format("line {}: {}", bad.line, bad.message);
    }
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kBadEvents;
    e.job_id = id;
    e.cell = cell;
    e.message = "events.jsonl lines skipped: " + lines;
    emit(e);
  }

  std::string events_path(const std::string& out_dir) const {
    return (fs::path(out_dir) / sweeps::kEventsFileName).string();
  }

  // Records how an attempt ended, from what its events say and how its process exited.
  // `error_message` is the last error event ingested while the attempt ran, if any.
  void record_end(const std::string& id,
                  int attempt,
                  std::optional<int> exit_code,
                  bool stopping,
                  std::optional<std::string> error_message = std::nullopt,
                  std::optional<double> silent_s = std::nullopt) {
    const auto job = store_.find_job(id);
    if (!job)
      return;
    const results::IngestReport report = store_.ingest_events(id, events_path(job->out_dir));
    report_bad_lines(id, job->cell, report);
    const auto fresh = store_.find_job(id);
    detail::ExitFacts facts;
    facts.exit_code = exit_code;
    facts.final_status = fresh->final_status;
    facts.error_message = report.error_message ? report.error_message : error_message;
    facts.failures = fresh->failures;
    facts.preemptions = fresh->preemptions;
    facts.stopping = stopping;
    facts.silent_s = silent_s;
    const results::AttemptEnd end =
        detail::decide_attempt_end(facts, {options_.retries, options_.preemption_retries});
    const auto state = store_.finish_attempt(id, attempt, end);
    if (!state)
      return;  // another orchestrator recorded it
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kFinished;
    e.job_id = id;
    e.cell = fresh->cell;
    e.state = *state;
    e.attempt = attempt;
    e.message = *state == JobState::kCancelled ? "cancelled" : end.reason;
    emit(e);
  }

  void reconcile() {
    for (const JobRecord& job :
         store_.jobs(sweep_, {JobState::kRunning}, Store::JobFields::kWithoutConfig)) {
      const auto attempt = store_.last_attempt(job.id);
      if (!attempt || attempt->ended_at)
        continue;
      const detail::OwnerState owner = detail::owner_state(attempt->owner);
      if (owner == detail::OwnerState::kAlive || owner == detail::OwnerState::kUnknown) {
        note(fmt::format("{} ({}) is run by another orchestrator ({}); leaving it to it",
                         job.cell,
                         job.id,
                         attempt->owner));
        continue;
      }
      if (attempt->backend == launcher_->backend() && attempt->backend_id &&
          launcher_->adopt(job.id, attempt->attempt, *attempt->backend_id)) {
        const std::vector<int> gpus = detail::parse_device_list(attempt->devices.value_or(""));
        pool_.occupy(gpus);
        running_[job.id] = {job.cell,
                            attempt->attempt,
                            gpus,
                            job.out_dir,
                            job.steps_done,
                            std::nullopt,
                            Clock::now(),
                            std::nullopt};
        ++summary_.adopted;
        ProgressEvent e;
        e.kind = ProgressEvent::Kind::kAdopted;
        e.job_id = job.id;
        e.cell = job.cell;
        e.state = JobState::kRunning;
        e.attempt = attempt->attempt;
        e.message = "trainer " + *attempt->backend_id + " is still running; watching it again";
        emit(e);
        continue;
      }
      record_end(job.id, attempt->attempt, std::nullopt, false);
    }
  }

  void dispatch() {
    if (waiting_for_space_) {
      // Each try records an attempt, so launches wait until space has been freed since the last.
      if (free_bytes(space_path_) <= space_at_failure_)
        return;
      waiting_for_space_ = false;
    }
    if (pool_.running() >= pool_.capacity())
      return;
    for (const JobRecord& job : store_.jobs(sweep_,
                                            {JobState::kPlanned, JobState::kPreempted},
                                            Store::JobFields::kWithoutConfig)) {
      if (pool_.running() >= pool_.capacity())
        return;
      if (running_.count(job.id) > 0)
        continue;
      const auto gpus = pool_.acquire(job.gpus);
      if (!gpus)
        continue;
      results::AttemptStart start;
      start.backend = launcher_->backend();
      start.host = host_;
      start.devices = devices_text(*gpus);
      start.owner = owner_;
      start.gpu_model = gpus->empty()                         ? "cpu"
                        : gpu_names_.count(gpus->front()) > 0 ? gpu_names_[gpus->front()]
                                                              : "gpu";
      const auto attempt = store_.claim_job(job.id, start);
      if (!attempt) {
        pool_.release(*gpus);
        continue;
      }
      launch(job, *attempt, *gpus);
      if (waiting_for_space_)
        return;
    }
  }

  void launch(const JobRecord& job, int attempt, const std::vector<int>& gpus) {
    detail::LaunchRequest request;
    request.job_id = job.id;
    request.attempt = attempt;
    request.trainer = trainer_;
    request.out_dir = job.out_dir;
    request.job_file = (fs::path(job.out_dir) / sweeps::kJobFileName).string();
    request.log_file = (fs::path(job.out_dir) / sweeps::kTrainerLogName).string();
    request.gpus = gpus;
    // Each trainer's share of the cores, on GPUs too: an OpenMP default of every core per process
    // oversubscribes the machine as soon as two trainers share it.
    if (std::getenv("OMP_NUM_THREADS") == nullptr)
      request.environment.emplace_back("OMP_NUM_THREADS", std::to_string(threads_per_job_));
    // nvidia-smi's indices, which the slots use, are CUDA's only in PCI bus order.
    if (!gpus.empty())
      request.environment.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    try {
      fs::create_directories(job.out_dir);
      // The queue is listed without configs; only the job being launched needs its own.
      const nlohmann::json config = store_.find_job(job.id)->config;
      sweeps::write_job_file(sweeps::job_config_from_json(config, "(database: job " + job.id + ")"),
                             request.job_file);
      const detail::Launched launched = launcher_->launch(request);
      store_.set_attempt_process(job.id, attempt, launched.pid, launched.backend_id);
      launcher_->release(job.id);
      running_[job.id] = {job.cell,
                          attempt,
                          gpus,
                          job.out_dir,
                          job.steps_done,
                          std::nullopt,
                          Clock::now(),
                          std::nullopt};
      ++summary_.launched;
      ProgressEvent e;
      e.kind = ProgressEvent::Kind::kStarted;
      e.job_id = job.id;
      e.cell = job.cell;
      e.state = JobState::kRunning;
      e.attempt = attempt;
      e.message = fmt::format("attempt {}, pid {}, {}",
                              attempt,
                              launched.pid,
                              gpus.empty() ? std::string("cpu") : "GPU " + devices_text(gpus));
      emit(e);
      space_note_given_ = false;
    } catch (const std::exception& error) {
      pool_.release(gpus);
      if (is_out_of_space(error)) {
        // Not the job's fault: it goes back to wait, uncounted, and launches are tried again
        // once space has been freed where it failed (dispatch()).
        waiting_for_space_ = true;
        space_path_ = job.out_dir;
        space_at_failure_ = free_bytes(space_path_);
        results::AttemptEnd end;
        end.outcome = results::Outcome::kCancelled;
        end.reason = std::string("could not launch, waiting for disk space: ") + error.what();
        end.next_state = job.state;
        store_.finish_attempt(job.id, attempt, end);
        if (!space_note_given_) {
          space_note_given_ = true;
          note(fmt::format("{}: {}; launches wait until space is freed there (or a signal)",
                           job.cell,
                           error.what()));
        }
        return;
      }
      results::AttemptEnd end;
      end.outcome = results::Outcome::kFailed;
      end.reason = std::string("could not launch: ") + error.what();
      end.next_state = JobState::kFailed;
      end.count_failure = true;
      const auto state = store_.finish_attempt(job.id, attempt, end);
      ProgressEvent e;
      e.kind = ProgressEvent::Kind::kFinished;
      e.job_id = job.id;
      e.cell = job.cell;
      e.state = state.value_or(JobState::kFailed);
      e.attempt = attempt;
      e.message = end.reason;
      emit(e);
    }
  }

  void ingest_running() {
    for (auto& [id, job] : running_) {
      const results::IngestReport report = store_.ingest_events(id, events_path(job.out_dir));
      report_bad_lines(id, job.cell, report);
      if (report.error_message)
        job.error_message = report.error_message;
      if (report.events == 0)
        continue;
      job.last_event = Clock::now();
      const auto fresh = store_.find_job(id);
      if (!fresh || fresh->steps_done == job.steps_seen)
        continue;
      job.steps_seen = fresh->steps_done;
      ProgressEvent e;
      e.kind = ProgressEvent::Kind::kProgress;
      e.job_id = id;
      e.cell = job.cell;
      e.state = fresh->state;
      e.attempt = job.attempt;
      e.steps_done = fresh->steps_done.value_or(0);
      e.steps = fresh->steps;
      e.loss = fresh->last_loss;
      e.message =
          fmt::format("step {}/{}{}",
                      fresh->steps_done.value_or(0),
                      fresh->steps,
                      fresh->last_loss ? fmt::format(", loss {:.4f}", *fresh->last_loss) : "");
      emit(e);
    }
  }

  // A trainer that has written no event for --silence-limit seconds is stuck (a deadlock, a dead
  // file system, a collective waiting for a lost rank) and would hold its slot for ever. SIGKILL
  // rather than SIGTERM: a hung process may not answer a request to save.
  void kill_silent_trainers() {
    if (options_.silence_limit_s <= 0)
      return;
    const auto now = Clock::now();
    for (auto& [id, job] : running_) {
      const double silent_s = std::chrono::duration<double>(now - job.last_event).count();
      if (job.killed_silent_s || silent_s < options_.silence_limit_s)
        continue;
      job.killed_silent_s = silent_s;
      note(fmt::format("{} ({}): no event for {:.0f} s (--silence-limit {}): killing its trainer",
                       job.cell,
                       id,
                       silent_s,
                       options_.silence_limit_s));
      launcher_->signal(id, SIGKILL);
    }
  }

  void finish(const detail::Exited& exited, bool stopping) {
    const auto it = running_.find(exited.job_id);
    if (it == running_.end())
      return;
    const RunningJob job = it->second;
    running_.erase(it);
    pool_.release(job.gpus);
    record_end(exited.job_id,
               exited.attempt,
               exited.exit_code,
               stopping,
               job.error_message,
               job.killed_silent_s);
  }

  const RunOptions& options_;
  Store& store_;
  std::string sweep_;
  std::string trainer_;
  std::unique_ptr<detail::Launcher> launcher_;
  detail::SlotPool pool_;
  std::string owner_;
  std::string host_;
  std::map<int, std::string> gpu_names_;
  int threads_per_job_ = 1;
  std::map<std::string, RunningJob> running_;
  RunSummary summary_;
  bool waiting_for_space_ = false;  // the last launch failed for want of disk space
  bool space_note_given_ = false;   // ... and the user was told
  std::string space_path_;          // the run folder that could not be written
  uint64_t space_at_failure_ = 0;   // bytes free there just after the failure
};

// The sweep a run is about: a file (planned first), a name, or the database's only sweep.
struct ResolvedSweep {
  std::string name;
  bool from_file = false;
};

void check_options(const RunOptions& o) {
  if (o.max_parallel < 0)
    throw InputError("", "--max-parallel", std::to_string(o.max_parallel), "expected >= 0");
  if (o.jobs_per_gpu < 0)
    throw InputError("", "--jobs-per-gpu", std::to_string(o.jobs_per_gpu), "expected >= 0");
  detail::check_shared_run_options(o);
  if (!(o.stop_grace_s >= 0))
    throw InputError("", "--stop-grace", std::to_string(o.stop_grace_s), "expected >= 0");
  if (!(o.silence_limit_s >= 0)) {
    throw InputError(
        "", "--silence-limit", std::to_string(o.silence_limit_s), "expected >= 0 (0 = never)");
  }
  if (o.gpus != "auto" && o.gpus != "all" && o.gpus != "none")
    parse_gpu_list(o.gpus);
}

}  // namespace

int RunSummary::exit_code() const {
  if (stopped_by_signal != 0)
    return 128 + stopped_by_signal;
  const auto failed = counts.find(JobState::kFailed);
  return failed != counts.end() && failed->second > 0 ? 1 : 0;
}

RunSummary run_sweep(const RunOptions& options) {
  check_options(options);
  const bool is_file = !options.sweep.empty() && fs::is_regular_file(options.sweep);
  const std::string trainer = find_trainer(options.trainer);

  if (options.dry_run) {
    RunSummary summary;
    std::optional<Store> store;
    if (fs::exists(options.db_path))
      store.emplace(Store::open(options.db_path, Store::Mode::kExisting));
    struct Candidate {
      std::string job_id, cell;
      int gpus = 1;
    };
    std::vector<Candidate> candidates;
    int default_jobs_per_gpu = 1;
    if (is_file) {
      PlanOptions plan_options;
      plan_options.sweep_file = options.sweep;
      plan_options.overrides = options.overrides;
      plan_options.db_path = options.db_path;
      plan_options.data_dir = options.data_dir;
      plan_options.dry_run = true;
      const PlanOutcome outcome = plan_sweep_file(plan_options);
      summary.sweep = outcome.plan.sweep;
      default_jobs_per_gpu = outcome.spec.resources.jobs_per_gpu;
      for (const auto* cell : outcome.plan.jobs())
        candidates.push_back({cell->job_id, cell->name, cell->job.gpus});
    } else {
      if (!store)
        throw InputError(options.db_path, "--db", options.db_path, "does not exist");
      summary.sweep = store->resolve_sweep(options.sweep);
      for (const auto& job : store->jobs(summary.sweep, {}, Store::JobFields::kWithoutConfig))
        candidates.push_back({job.id, job.cell, job.gpus});
    }
    const detail::SlotPlan slots = detail::slot_plan_for(
        options, store ? store->find_sweep(summary.sweep) : std::nullopt, default_jobs_per_gpu);
    detail::SlotPool pool = slots.pool();
    for (const Candidate& c : candidates) {
      const auto job = store ? store->find_job(c.job_id) : std::nullopt;
      bool launch = !job || job->state == JobState::kPlanned || job->state == JobState::kPreempted;
      if (job && job->state == JobState::kRunning) {
        const auto attempt = store->last_attempt(c.job_id);
        launch = attempt && detail::owner_state(attempt->owner) == detail::OwnerState::kDead;
      }
      if (!launch)
        continue;
      RunSummary::PlannedLaunch planned;
      planned.job_id = c.job_id;
      planned.cell = c.cell;
      planned.action = job && job->state != JobState::kPlanned ? "resume" : "launch";
      if (const auto gpus = pool.acquire(c.gpus))
        planned.devices = gpus->empty() ? "cpu" : "GPU " + devices_text(*gpus);
      summary.would_launch.push_back(planned);
    }
    summary.slots = slots.gpus.empty()
                        ? fmt::format("the CPU ({}), {} at once", slots.source, pool.capacity())
                        : fmt::format("GPUs {} ({}), {} per GPU, {} at once",
                                      devices_text(slots.indices()),
                                      slots.source,
                                      slots.jobs_per_gpu,
                                      pool.capacity());
    summary.slots += fmt::format(", OMP_NUM_THREADS={}",
                                 std::getenv("OMP_NUM_THREADS") != nullptr
                                     ? std::string(std::getenv("OMP_NUM_THREADS"))
                                     : std::to_string(slots.threads_per_job));
    if (store)
      summary.counts = store->counts(summary.sweep).by_state;
    return summary;
  }

  if (!options.jobs_root.empty())
    check_folder_path(options.jobs_root, "--jobs-dir");
  std::string sweep;
  if (is_file) {
    PlanOptions plan_options;
    plan_options.sweep_file = options.sweep;
    plan_options.overrides = options.overrides;
    plan_options.db_path = options.db_path;
    plan_options.data_dir = options.data_dir;
    plan_options.jobs_root = options.jobs_root;
    plan_options.on_note = [&options](const std::string& note) {
      if (options.on_progress) {
        ProgressEvent event;
        event.kind = ProgressEvent::Kind::kNote;
        event.message = note;
        options.on_progress(event);
      }
    };
    sweep = plan_sweep_file(plan_options).plan.sweep;
  }
  Store store =
      Store::open(options.db_path, is_file ? Store::Mode::kCreate : Store::Mode::kExisting);
  if (!is_file) {
    if (!options.overrides.empty()) {
      throw InputError("",
                       "override",
                       options.overrides.front(),
                       "overrides apply to a sweep file, not to sweep " + options.sweep,
                       "pass the sweep file: parcae-scale sweep run FILE KEY=VALUE");
    }
    if (!options.sweep.empty() && !store.find_sweep(options.sweep)) {
      throw InputError(options.db_path,
                       "sweep",
                       options.sweep,
                       "is neither a sweep file nor a sweep in the database",
                       "plan it first, or pass the sweep file");
    }
    sweep = store.resolve_sweep(options.sweep);
    if (!options.jobs_root.empty()) {
      store.set_jobs_dir(sweep,
                         (fs::absolute(options.jobs_root) / sweep).lexically_normal().string());
    }
  }
  Scheduler scheduler(options, store, sweep, trainer);
  RunSummary summary = scheduler.run();
  summary.sweep = sweep;
  return summary;
}

}  // namespace parcae::orchestrator
