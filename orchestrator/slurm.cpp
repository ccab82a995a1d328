// The Slurm backend: run_sweep_slurm() submits a sweep's runnable jobs with sbatch, and
// reconcile_slurm() turns what Slurm and the batch scripts report into attempts in the database.
// Workers never open the database: each batch script writes its job's run folder (events.jsonl
// from the trainer, slurm-runs.log from the script) and this file, running on the submit host,
// ingests. Slurm commands are run without a shell, one argument each, so no value reaches a shell
// except through the batch script, where render_batch_script() quotes it.
#include "orchestrator/detail/slurm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "orchestrator/detail/process.h"
#include "orchestrator/detail/scheduler.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/run_contract.h"

namespace parcae::orchestrator {
namespace detail {

CommandResult run_command(const std::vector<std::string>& argv) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    throw Error(fmt::format("pipe: {}", std::strerror(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw Error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0)
    throw Error(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
      ::dup2(null_fd, 0);
    ::execvp(args[0], args.data());
    const std::string message = std::string(args[0]) + ": " + std::strerror(errno) + "\n";
    (void)!::write(2, message.data(), message.size());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  int fds[2] = {out_pipe[0], err_pipe[0]};
  while (fds[0] >= 0 || fds[1] >= 0) {
    pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR)
      break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || (p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
        continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i], buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        ::close(fds[i]);
        fds[i] = -1;
      } else {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;
using results::AttemptRecord;
using results::JobRecord;
using results::JobState;
using results::Outcome;
using results::Store;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  return text;
}

// Runs a Slurm command; throws parcae::Error naming it and quoting its stderr when it fails.
std::string slurm_command(const std::vector<std::string>& argv) {
  const detail::CommandResult result = detail::run_command(argv);
  if (result.exit_code != 0) {
    std::string command;
    for (const auto& a : argv)
      command += (command.empty() ? "" : " ") + a;
    throw Error(fmt::format("`{}` failed (exit {}): {}",
                            command,
                            result.exit_code,
                            trimmed(result.err.empty() ? result.out : result.err)));
  }
  return result.out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Slurm expands %-patterns in --output paths; a literal % is written %%.
std::string escape_output_pattern(const std::string& path) {
  std::string out;
  for (const char c : path)
    out += c == '%' ? std::string("%%") : std::string(1, c);
  return out;
}

std::string events_path(const JobRecord& job) {
  return (fs::path(job.out_dir) / sweeps::kEventsFileName).string();
}

// Slurm's view of the jobs in `ids`: squeue for what slurmctld still holds, sacct for the rest
// (when the cluster keeps accounting; without it those ids are simply absent).
std::map<std::string, detail::SlurmJobState> query_states(const std::set<std::string>& ids) {
  std::map<std::string, detail::SlurmJobState> states = detail::parse_job_states(slurm_command(
      {"squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%T|%r"}));
  std::string missing;
  for (const auto& id : ids) {
    if (states.count(id) == 0)
      missing += (missing.empty() ? "" : ",") + id;
  }
  if (!missing.empty()) {
    const detail::CommandResult sacct = detail::run_command({"sacct",
                                                             "--noheader",
                                                             "--parsable2",
                                                             "--allocations",
                                                             "--jobs",
                                                             missing,
                                                             "--format=JobID,State,ExitCode"});
    if (sacct.exit_code == 0) {
      for (const auto& [id, state] : detail::parse_job_states(sacct.out)) {
        if (ids.count(id) > 0 && states.count(id) == 0)
          states[id] = state;
      }
    }
  }
  return states;
}

class Reconciler {
 public:
  Reconciler(Store& store, std::string sweep) : store_(store), sweep_(std::move(sweep)) {}

  SlurmReconcileResult run() {
    struct Open {
      JobRecord job;
      AttemptRecord attempt;
    };
    std::vector<Open> open;
    std::set<std::string> ids;
    for (const JobRecord& job :
         store_.jobs(sweep_, {JobState::kRunning}, Store::JobFields::kWithoutConfig)) {
      const auto attempt = store_.last_attempt(job.id);
      if (!attempt || attempt->ended_at || attempt->backend != "slurm" || !attempt->backend_id)
        continue;
      open.push_back({job, *attempt});
      ids.insert(*attempt->backend_id);
    }
    if (open.empty())
      return result_;
    const auto states = query_states(ids);
    for (const auto& o : open) {
      ++result_.checked;
      const auto it = states.find(*o.attempt.backend_id);
      reconcile(o.job, o.attempt, it == states.end() ? std::nullopt : std::optional(it->second));
    }
    return result_;
  }

 private:
  // Ends attempts of one job for every run of its Slurm job that has ended, opening a new attempt
  // when Slurm runs the same job again.
  void reconcile(const JobRecord& listed,
                 AttemptRecord attempt,
                 const std::optional<detail::SlurmJobState>& slurm) {
    const std::string slurm_id = *attempt.backend_id;
    const results::IngestReport report = store_.ingest_events(listed.id, events_path(listed));
    for (const auto& bad : report.bad_lines) {
      result_.bad_lines.push_back(
          fmt::format("{} ({}): line {}: {}", listed.cell, listed.id, bad.line, bad.message));
    }
    const std::vector<detail::SlurmRun> runs = detail::parse_run_log(
        read_file((fs::path(listed.out_dir) / "slurm-runs.log").string()), slurm_id);
    // Attempts already opened for this Slurm id: the open one stands for run `index`.
    size_t index = 0;
    for (const auto& a : store_.attempts(listed.id)) {
      if (a.backend == "slurm" && a.backend_id == slurm_id && a.attempt < attempt.attempt)
        ++index;
    }
    const auto state_class =
        slurm ? std::optional(detail::classify_slurm_state(slurm->state)) : std::nullopt;
    const bool queued = state_class == detail::SlurmStateClass::kQueued;
    const bool active = state_class == detail::SlurmStateClass::kActive;
    const std::string slurm_text =
        slurm ? slurm->state : std::string("no longer known to squeue or sacct");

    while (true) {
      const bool started = index < runs.size();
      const bool later_run = index + 1 < runs.size();
      if (!started) {
        if (queued || active)
          return;  // still queued, or starting
        // Ended without the script ever starting: cancelled from outside, or a launch failure.
        end_attempt(listed, attempt, std::nullopt, slurm_id, "", slurm);
        return;
      }
      const detail::SlurmRun& run = runs[index];
      if (!run.exit_code) {
        if (later_run || queued) {
          // Killed before it could record an exit (a requeue past KillWait, a node failure with
          // requeue) and queued again by Slurm.
          const auto next = end_attempt(listed, attempt, std::nullopt, slurm_id, run.host, slurm);
          if (!next || !reopen(listed, slurm_id, *next, attempt))
            return;
          ++index;
          continue;
        }
        if (active)
          return;  // running
        end_attempt(listed, attempt, std::nullopt, slurm_id, run.host, slurm);
        return;
      }
      // The run ended with an exit code. Whether Slurm runs the job again is known only once it
      // has left RUNNING/COMPLETING: a requeued job is queued again, a finished one is done.
      if (!later_run && active)
        return;
      const auto next = end_attempt(
          listed, attempt, run.exit_code, slurm_id, run.host, later_run ? std::nullopt : slurm);
      if (!next)
        return;
      if (*next == JobState::kPreempted && (later_run || queued)) {
        if (!reopen(listed, slurm_id, *next, attempt))
          return;
        ++index;
        continue;
      }
      return;
    }
  }

  // Ends `attempt` from the run's exit code and the job's events; returns the job's state after.
  std::optional<JobState> end_attempt(const JobRecord& listed,
                                      const AttemptRecord& attempt,
                                      std::optional<int> exit_code,
                                      const std::string& slurm_id,
                                      const std::string& host,
                                      const std::optional<detail::SlurmJobState>& slurm) {
    const auto fresh = store_.find_job(listed.id);
    if (!fresh)
      return std::nullopt;
    detail::ExitFacts facts;
    facts.exit_code = exit_code;
    facts.final_status = fresh->final_status;
    facts.error_message = fresh->last_error;
    facts.failures = fresh->failures;
    facts.preemptions = fresh->preemptions;
    results::AttemptEnd end = detail::decide_attempt_end(facts, {retries_, preemption_retries_});
    const std::string where =
        fmt::format("slurm {}{}", slurm_id, host.empty() ? "" : " on " + host);
    if (slurm && slurm->state == "CANCELLED" && !exit_code && !fresh->final_status) {
      end.outcome = Outcome::kCancelled;
      end.next_state = JobState::kCancelled;
      end.count_failure = false;
      end.count_preemption = false;
      end.reason = fmt::format("{}: cancelled in Slurm (scancel outside parcae-scale)", where);
    } else {
      std::string state_note;
      if (slurm &&
          detail::classify_slurm_state(slurm->state) == detail::SlurmStateClass::kFinished &&
          slurm->state != "COMPLETED") {
        // TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY, ...: said in the attempt's history.
        state_note = fmt::format(" [Slurm state {}]", slurm->state);
      } else if (!slurm && !exit_code) {
        state_note = " [no longer known to squeue or sacct]";
      } else if (slurm && !exit_code) {
        state_note = fmt::format(" [killed; Slurm state {}]", slurm->state);
      }
      end.reason = fmt::format("{}: {}{}", where, end.reason, state_note);
    }
    const auto state = store_.finish_attempt(listed.id, attempt.attempt, end);
    if (state) {
      result_.ended.push_back(
          fmt::format("{}: {} ({})", listed.cell, results::to_string(*state), end.reason));
    }
    return state;
  }

  // Slurm runs the job again under the same id: open the next attempt for it.
  bool reopen(const JobRecord& listed,
              const std::string& slurm_id,
              JobState state,
              AttemptRecord& attempt) {
    if (state != JobState::kPreempted)
      return false;
    results::AttemptStart start;
    start.backend = "slurm";
    start.host = "(slurm)";
    start.owner = attempt.owner;
    const auto number = store_.claim_job(listed.id, start);
    if (!number)
      return false;
    store_.set_attempt_process(listed.id, *number, 0, slurm_id);
    const auto fresh = store_.last_attempt(listed.id);
    if (!fresh)
      return false;
    attempt = *fresh;
    return true;
  }

 public:
  int retries_ = 2;
  int preemption_retries_ = 100;

 private:
  Store& store_;
  std::string sweep_;
  SlurmReconcileResult result_;
};

SlurmReconcileResult reconcile_with(Store& store,
                                    const std::string& sweep,
                                    int retries,
                                    int preemption_retries) {
  Reconciler reconciler(store, sweep);
  reconciler.retries_ = retries;
  reconciler.preemption_retries_ = preemption_retries;
  return reconciler.run();
}

// The sweep a run is about: a sweep file (planned first), a name, or the database's only sweep.
std::string resolve_sweep(const RunOptions& options) {
  if (!options.jobs_root.empty())
    check_folder_path(options.jobs_root, "--jobs-dir");
  const bool is_file = !options.sweep.empty() && fs::is_regular_file(options.sweep);
  if (is_file) {
    PlanOptions plan_options;
    plan_options.sweep_file = options.sweep;
    plan_options.db_path = options.db_path;
    plan_options.data_dir = options.data_dir;
    plan_options.jobs_root = options.jobs_root;
    return plan_sweep_file(plan_options).plan.sweep;
  }
  Store store = Store::open(options.db_path, Store::Mode::kExisting);
  std::string sweep = options.sweep;
  if (sweep.empty()) {
    const auto all = store.sweeps();
    if (all.size() != 1) {
      throw InputError(
          store.path(),
          "sweep",
          "(none given)",
          all.empty() ? "the database has no sweep" : "the database has several sweeps",
          "name one");
    }
    sweep = all.front().name;
  }
  if (!store.find_sweep(sweep)) {
    throw InputError(options.db_path,
                     "sweep",
                     sweep,
                     "is neither a sweep file nor a sweep in the database",
                     "plan it first, or pass the sweep file");
  }
  if (!options.jobs_root.empty())
    store.set_jobs_dir(sweep,
                       (fs::absolute(options.jobs_root) / sweep).lexically_normal().string());
  return sweep;
}

void check_slurm_options(const RunOptions& o) {
  const SlurmOptions& s = o.slurm;
  if (s.array_throttle < 0)
    throw InputError("", "--array-throttle", std::to_string(s.array_throttle), "expected >= 0");
  if (s.signal_grace_s < 0)
    throw InputError("", "--signal-grace", std::to_string(s.signal_grace_s), "expected >= 0");
  if (s.cpus_per_task < 0)
    throw InputError("", "--cpus-per-task", std::to_string(s.cpus_per_task), "expected >= 0");
  if (s.max_submit < 0)
    throw InputError("", "--max-submit", std::to_string(s.max_submit), "expected >= 0");
  detail::check_shared_run_options(o);
  for (const std::string* value : {&s.partition, &s.account, &s.qos, &s.time}) {
    if (value->find('\n') != std::string::npos)
      throw InputError("", "slurm option", *value, "expected a value without line breaks");
  }
}

class Submitter {
 public:
  Submitter(const RunOptions& options, Store& store, std::string sweep, std::string trainer)
      : options_(options),
        store_(store),
        sweep_(std::move(sweep)),
        trainer_(std::move(trainer)),
        limits_(detail::parse_slurm_config(slurm_command({"scontrol", "show", "config"}))),
        owner_(fmt::format("slurm:{}/{}",
                           limits_.cluster_name.empty() ? "cluster" : limits_.cluster_name,
                           detail::host_name())) {
    const std::string& file = options_.slurm.template_file;
    if (file.empty()) {
      template_text_ = detail::kDefaultBatchTemplate;
      template_name_ = "(built-in template)";
    } else {
      if (!fs::is_regular_file(file))
        throw InputError(file, "--template", file, "is not a file");
      template_text_ = read_file(file);
      template_name_ = file;
    }
    // Fails early, before any claim, on a template without its variables line.
    detail::BatchScript probe;
    probe.tasks.push_back({"probe", "probe", "/probe"});
    detail::render_batch_script(template_text_, template_name_, probe);
    const auto record = store_.find_sweep(sweep_);
    jobs_dir_ = record->jobs_dir;
  }

  // Submits what is runnable, within the submission limit. Returns the jobs submitted.
  int submit(RunSummary& summary) {
    const int limit = options_.slurm.max_submit > 0 ? options_.slurm.max_submit
                                                    : std::max(1, limits_.max_job_count - 1);
    int in_slurm = 0;
    for (const JobRecord& job :
         store_.jobs(sweep_, {JobState::kRunning}, Store::JobFields::kWithoutConfig)) {
      const auto attempt = store_.last_attempt(job.id);
      in_slurm += attempt && attempt->backend == "slurm" ? 1 : 0;
    }
    int room = limit - in_slurm;
    // Jobs with the same resources share arrays; the key is (ranks, GPUs wanted).
    std::map<std::pair<int, bool>, std::vector<JobRecord>> groups;
    for (const JobRecord& job : store_.jobs(sweep_, {JobState::kPlanned, JobState::kPreempted})) {
      if (room <= 0)
        break;
      const std::string device = job.config.value("device", std::string("auto"));
      groups[{std::max(1, job.gpus), device != "cpu"}].push_back(job);
      --room;
    }
    int submitted = 0;
    for (const auto& [key, jobs] : groups) {
      for (const auto& [first, last] :
           detail::split_into_arrays(jobs.size(), limits_.max_array_size)) {
        submitted += submit_batch(
            {jobs.begin() + first, jobs.begin() + last}, key.first, key.second, summary);
      }
    }
    return submitted;
  }

  // The --fit-after job: the fit, after every job submitted by this call succeeded.
  void submit_fit(RunSummary& summary) {
    if (options_.slurm.fit_after.empty() || batch_ids_.empty())
      return;
    std::string after = "afterok";
    for (const auto& id : batch_ids_)
      after += ":" + id;
    const std::string parcae = (fs::path(detail::executable_dir()) / "parcae-scale").string();
    const std::string db = fs::absolute(options_.db_path).lexically_normal().string();
    std::string script =
        "#!/bin/bash\n# parcae-scale: the fit after the training jobs of a sweep.\nset -eu\n";
    script += fmt::format("{} --db {} sweep status {} >/dev/null\n",
                          detail::shell_quote(parcae),
                          detail::shell_quote(db),
                          detail::shell_quote(sweep_));
    script += fmt::format("{} --db {} fit {} --sweep {}\n",
                          detail::shell_quote(parcae),
                          detail::shell_quote(db),
                          detail::shell_quote(options_.slurm.fit_after),
                          detail::shell_quote(sweep_));
    const std::string path = write_script(script, "fit");
    std::vector<std::string> argv = common_arguments("fit");
    argv.push_back("--dependency=" + after);
    argv.push_back("--output=" + escape_output_pattern(logs_dir()) + "/fit-%j.out");
    argv.push_back(path);
    summary.slurm_fit_job = parse_job_id(slurm_command(argv));
  }

 private:
  std::string logs_dir() const { return (fs::path(jobs_dir_) / "slurm-logs").string(); }

  std::string write_script(const std::string& text, const std::string& stem) {
    const fs::path dir = fs::path(jobs_dir_) / "slurm-scripts";
    fs::create_directories(dir);
    fs::create_directories(logs_dir());
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const std::string path =
        (dir / fmt::format("{}-{}-{}.sh",
                           std::chrono::duration_cast<std::chrono::milliseconds>(now).count(),
                           stem,
                           ++scripts_))
            .string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out)
      throw Error("cannot write the batch script " + path);
    return path;
  }

  std::vector<std::string> common_arguments(const std::string& what) const {
    const SlurmOptions& s = options_.slurm;
    std::vector<std::string> argv = {
        "sbatch", "--parsable", "--job-name=parcae:" + sweep_ + ":" + what, "--chdir=" + jobs_dir_};
    if (!s.partition.empty())
      argv.push_back("--partition=" + s.partition);
    if (!s.account.empty())
      argv.push_back("--account=" + s.account);
    if (!s.qos.empty())
      argv.push_back("--qos=" + s.qos);
    if (!s.time.empty())
      argv.push_back("--time=" + s.time);
    argv.insert(argv.end(), s.sbatch_args.begin(), s.sbatch_args.end());
    return argv;
  }

  static std::string parse_job_id(const std::string& out) {
    // --parsable prints "<id>" or "<id>;<cluster>".
    std::string id = trimmed(out);
    const size_t newline = id.rfind('\n');
    if (newline != std::string::npos)
      id = id.substr(newline + 1);
    id = id.substr(0, id.find(';'));
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw Error("sbatch printed no job id: '" + trimmed(out) + "'");
    return id;
  }

  int submit_batch(const std::vector<JobRecord>& jobs, int ranks, bool gpu, RunSummary& summary) {
    // Claim first, so that two orchestrators never submit the same job.
    std::vector<std::pair<JobRecord, int>> claimed;
    for (const JobRecord& job : jobs) {
      results::AttemptStart start;
      start.backend = "slurm";
      start.host = "(slurm)";
      start.owner = owner_;
      const auto attempt = store_.claim_job(job.id, start);
      if (attempt)
        claimed.emplace_back(job, *attempt);
    }
    if (claimed.empty())
      return 0;
    try {
      detail::BatchScript script;
      script.sweep = sweep_;
      script.trainer = trainer_;
      script.ranks = ranks;
      for (const auto& [job, attempt] : claimed) {
        fs::create_directories(job.out_dir);
        sweeps::write_job_file(
            sweeps::job_config_from_json(job.config, "(database: job " + job.id + ")"),
            (fs::path(job.out_dir) / sweeps::kJobFileName).string());
        script.tasks.push_back({job.id, job.cell, job.out_dir});
      }
      const std::string path =
          write_script(detail::render_batch_script(template_text_, template_name_, script),
                       claimed.front().first.id);
      const SlurmOptions& s = options_.slurm;
      std::vector<std::string> argv =
          common_arguments(claimed.size() == 1 ? claimed.front().first.cell : "array");
      argv.push_back("--requeue");
      argv.push_back("--open-mode=append");
      argv.push_back(fmt::format("--signal=B:USR2@{}", s.signal_grace_s));
      argv.push_back("--nodes=1");
      argv.push_back(fmt::format("--ntasks={}", ranks));
      if (gpu)
        argv.push_back(fmt::format("--gres=gpu:{}", ranks));
      if (s.cpus_per_task > 0)
        argv.push_back(fmt::format("--cpus-per-task={}", s.cpus_per_task));
      const bool array = claimed.size() > 1;
      if (array) {
        std::string spec = fmt::format("--array=0-{}", claimed.size() - 1);
        if (s.array_throttle > 0)
          spec += fmt::format("%{}", s.array_throttle);
        argv.push_back(spec);
      }
      argv.push_back("--output=" + escape_output_pattern(logs_dir() + "/") +
                     (array ? "%A_%a.out" : "%j.out"));
      argv.push_back(path);
      const std::string id = parse_job_id(slurm_command(argv));
      batch_ids_.push_back(id);
      summary.slurm_jobs.push_back(id);
      for (size_t i = 0; i < claimed.size(); ++i) {
        const auto& [job, attempt] = claimed[i];
        store_.set_attempt_process(job.id, attempt, 0, array ? fmt::format("{}_{}", id, i) : id);
      }
      summary.launched += static_cast<int>(claimed.size());
      note(fmt::format(
          "submitted {} as Slurm job {}{}",
          claimed.size() == 1 ? claimed.front().first.cell : fmt::format("{} jobs", claimed.size()),
          id,
          array ? fmt::format(" (array 0-{})", claimed.size() - 1) : ""));
      return static_cast<int>(claimed.size());
    } catch (const std::exception& error) {
      // Nothing was queued: release the claims, uncounted, so that the jobs stay runnable.
      for (const auto& [job, attempt] : claimed) {
        results::AttemptEnd end;
        end.outcome = Outcome::kFailed;
        end.reason = std::string("could not submit to Slurm: ") + error.what();
        end.next_state =
            job.state == JobState::kPreempted ? JobState::kPreempted : JobState::kPlanned;
        store_.finish_attempt(job.id, attempt, end);
      }
      throw;
    }
  }

 public:
  void note(const std::string& message) const {
    if (!options_.on_progress)
      return;
    ProgressEvent e;
    e.kind = ProgressEvent::Kind::kNote;
    e.message = message;
    const results::SweepCounts counts = store_.counts(sweep_);
    e.counts = counts.by_state;
    e.jobs = counts.jobs;
    e.flops_done = counts.flops_done;
    e.flops_total = counts.flops_total;
    options_.on_progress(e);
  }

 private:
  const RunOptions& options_;
  Store& store_;
  std::string sweep_;
  std::string trainer_;
  detail::SlurmLimits limits_;
  std::string owner_;
  std::string template_text_;
  std::string template_name_;
  std::string jobs_dir_;
  std::vector<std::string> batch_ids_;
  int scripts_ = 0;
};

bool sweep_busy(const Store& store, const std::string& sweep) {
  const results::SweepCounts counts = store.counts(sweep);
  for (const JobState state : {JobState::kPlanned, JobState::kPreempted, JobState::kRunning}) {
    const auto it = counts.by_state.find(state);
    if (it != counts.by_state.end() && it->second > 0)
      return true;
  }
  return false;
}

}  // namespace

std::string default_slurm_template() {
  return detail::kDefaultBatchTemplate;
}

SlurmReconcileResult reconcile_slurm(Store& store, const std::string& sweep) {
  return reconcile_with(store, sweep, RunOptions().retries, RunOptions().preemption_retries);
}

RunSummary run_sweep_slurm(const RunOptions& options) {
  check_slurm_options(options);
  if (options.dry_run)
    throw InputError("",
                     "--dry-run",
                     "--backend slurm",
                     "expected the local backend for a dry run",
                     "`sweep plan FILE` shows the cells");
  const std::string trainer = find_trainer(options.trainer);
  const std::string sweep = resolve_sweep(options);
  Store store = Store::open(options.db_path, Store::Mode::kExisting);
  Submitter submitter(options, store, sweep, trainer);
  RunSummary summary;
  summary.sweep = sweep;
  const auto report = [&](const SlurmReconcileResult& r) {
    for (const auto& line : r.ended)
      submitter.note(line);
    for (const auto& line : r.bad_lines)
      submitter.note("events.jsonl line skipped: " + line);
  };
  report(reconcile_with(store, sweep, options.retries, options.preemption_retries));
  submitter.submit(summary);
  submitter.submit_fit(summary);
  if (!options.slurm.detach) {
    while (sweep_busy(store, sweep)) {
      const auto deadline =
          std::chrono::steady_clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(options.poll_interval_s * 1000));
      while (std::chrono::steady_clock::now() < deadline &&
             (!options.stop_signal || options.stop_signal->load() == 0)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (options.stop_signal && options.stop_signal->load() != 0) {
        summary.stopped_by_signal = options.stop_signal->load();
        submitter.note("stopping; the Slurm jobs keep running and `sweep status` follows them");
        break;
      }
      report(reconcile_with(store, sweep, options.retries, options.preemption_retries));
      submitter.submit(summary);
    }
  }
  summary.counts = store.counts(sweep).by_state;
  return summary;
}

namespace detail {

std::vector<std::string> cancel_slurm_attempts(Store& store,
                                               const std::vector<std::string>& job_ids) {
  std::vector<std::pair<std::string, AttemptRecord>> slurm;
  for (const auto& id : job_ids) {
    const auto attempt = store.last_attempt(id);
    if (attempt && !attempt->ended_at && attempt->backend == "slurm" && attempt->backend_id)
      slurm.emplace_back(id, *attempt);
  }
  if (slurm.empty())
    return {};
  std::vector<std::string> argv = {"scancel"};
  for (const auto& [id, attempt] : slurm)
    argv.push_back(*attempt.backend_id);
  slurm_command(argv);
  std::vector<std::string> out;
  for (const auto& [id, attempt] : slurm) {
    const auto job = store.find_job(id);
    if (job)
      store.ingest_events(id, events_path(*job));
    results::AttemptEnd end;
    end.outcome = Outcome::kCancelled;
    end.reason = fmt::format("cancelled by `sweep cancel` (scancel {})", *attempt.backend_id);
    end.next_state = JobState::kCancelled;
    store.finish_attempt(id, attempt.attempt, end);
    out.push_back(id);
  }
  return out;
}

}  // namespace detail
}  // namespace parcae::orchestrator
