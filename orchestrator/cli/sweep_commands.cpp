// `parcae-scale sweep plan|run|status|retry|cancel|list`: flags mapped onto the orchestrator's
// options, results printed. stdout carries only the result; progress and notes go to stderr,
// redrawn in place only when stderr is a terminal.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/cli_context.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

using results::JobState;

// The signal that asked `sweep run` to stop; 0 while none has.
std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int signal_number) {
  if (g_stop_signal.load() != 0) {
    // A second signal: quit at once. The trainers keep running; the next `sweep run` adopts them.
    ::signal(signal_number, SIG_DFL);
    ::raise(signal_number);
    return;
  }
  g_stop_signal.store(signal_number);
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a signal must cut the scheduler's wait short
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

std::string optional_number(const std::optional<double>& value, const char* format = "{:.4f}") {
  return value ? fmt::format(fmt::runtime(format), *value) : std::string("-");
}

std::string counts_text(const std::map<JobState, int>& counts, int jobs) {
  std::string out = fmt::format("{} jobs", jobs);
  for (JobState state : results::all_job_states()) {
    const auto it = counts.find(state);
    if (it != counts.end() && it->second > 0)
      out += fmt::format(", {} {}", it->second, results::to_string(state));
  }
  return out;
}

std::string progress_bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '.') + "]";
}

std::string clock_time() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char buffer[16];
  std::strftime(buffer, sizeof(buffer), "%H:%M:%S", &local);
  return buffer;
}

// Prints run_sweep()'s progress: one line per state change; on a terminal also a status line
// at the bottom, redrawn in place.
class ProgressPrinter {
 public:
  ProgressPrinter() : terminal_(::isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}

  void operator()(const orchestrator::ProgressEvent& e) {
    using Kind = orchestrator::ProgressEvent::Kind;
    if (!start_flops_)
      start_flops_ = e.flops_done;
    std::string line;
    switch (e.kind) {
      case Kind::kStarted:
        line = fmt::format("{}  {}  running  {}", clock_time(), e.cell, e.message);
        break;
      case Kind::kAdopted:
        line = fmt::format("{}  {}  adopted  {}", clock_time(), e.cell, e.message);
        break;
      case Kind::kFinished:
        line = fmt::format(
            "{}  {}  {}  {}", clock_time(), e.cell, results::to_string(e.state), e.message);
        break;
      case Kind::kBadEvents:
        line = fmt::format("{}  {}  warning  {}", clock_time(), e.cell, e.message);
        break;
      case Kind::kNote:
        line = fmt::format("{}  {}", clock_time(), e.message);
        break;
      case Kind::kProgress:
        break;
    }
    if (!line.empty())
      line += "  [" + counts_text(e.counts, e.jobs) + "]";
    if (terminal_) {
      std::cerr << "\r\033[K";
      if (!line.empty())
        std::cerr << line << "\n";
      std::cerr << status_line(e) << std::flush;
    } else if (!line.empty()) {
      std::cerr << line << "\n" << std::flush;
    }
  }

  void finish() {
    if (terminal_)
      std::cerr << "\r\033[K" << std::flush;
  }

 private:
  std::string status_line(const orchestrator::ProgressEvent& e) const {
    const double fraction = e.flops_total > 0 ? e.flops_done / e.flops_total : 0.0;
    std::string eta = "";
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double gained = e.flops_done - start_flops_.value_or(0.0);
    if (gained > 0 && elapsed > 1) {
      const double seconds = (e.flops_total - e.flops_done) * elapsed / gained;
      eta = seconds < 120 ? fmt::format(", ETA {:.0f} s", seconds)
                          : fmt::format(", ETA {:.0f} min", seconds / 60);
    }
    return fmt::format("{} {:.1f}% of {:.3g} FLOPs, {}{}",
                       progress_bar(fraction, 24),
                       100 * fraction,
                       e.flops_total,
                       counts_text(e.counts, e.jobs),
                       eta);
  }

  bool terminal_;
  std::chrono::steady_clock::time_point start_;
  std::optional<double> start_flops_;
};

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::lround(seconds));
  if (s >= 3600)
    return fmt::format("{}h{:02d}m", s / 3600, static_cast<int>((s % 3600) / 60));
  if (s >= 60)
    return fmt::format("{}m{:02d}s", s / 60, static_cast<int>(s % 60));
  return fmt::format("{}s", s);
}

// Jobs a glance needs: every state but planned and done (those are counted in the header).
bool listed_by_default(JobState state) {
  return state != JobState::kPlanned && state != JobState::kDone;
}

struct StatusView {
  bool all = false;                   // list every job, not only those that need a look
  bool terminal = false;              // draw a progress bar
  std::optional<double> flops_per_s;  // measured by --watch between two looks
};

void print_status(const orchestrator::SweepStatus& status, const StatusView& view) {
  const double fraction = status.flops_total > 0 ? status.flops_done / status.flops_total : 0.0;
  std::cout << fmt::format("sweep {}: {}; {:.3g} of {:.3g} FLOPs ({:.1f}%)\n",
                           status.sweep.name,
                           counts_text(status.counts, static_cast<int>(status.jobs.size())),
                           status.flops_done,
                           status.flops_total,
                           100 * fraction);
  if (view.terminal) {
    std::string eta = "ETA after the next look (--watch)";
    if (view.flops_per_s && *view.flops_per_s > 0)
      eta = "ETA " + duration_text((status.flops_total - status.flops_done) / *view.flops_per_s);
    else if (fraction >= 1.0)
      eta = "complete";
    std::cout << fmt::format(
        "  {} {:5.1f}%  {}\n", progress_bar(fraction, 30), 100 * fraction, eta);
  }
  std::vector<const results::JobRecord*> listed;
  for (const auto& job : status.jobs) {
    if (view.all || listed_by_default(job.state))
      listed.push_back(&job);
  }
  if (!listed.empty()) {
    size_t width = 4;
    for (const auto* job : listed)
      width = std::max(width, job->cell.size());
    std::cout << fmt::format("  {:<{}}  {:<9}  {:>13}  {:>9}  {:>9}  {}\n",
                             "cell",
                             width,
                             "state",
                             "steps",
                             "loss",
                             "val loss",
                             "job");
    for (const auto* job : listed) {
      std::cout << fmt::format("  {:<{}}  {:<9}  {:>13}  {:>9}  {:>9}  {}\n",
                               job->cell,
                               width,
                               results::to_string(job->state),
                               fmt::format("{}/{}", job->steps_done.value_or(0), job->steps),
                               optional_number(job->last_loss),
                               optional_number(job->loss_val),
                               job->id);
    }
  }
  const size_t hidden = status.jobs.size() - listed.size();
  if (hidden > 0)
    std::cout << fmt::format("  ({} planned or done jobs not listed; --all lists them)\n", hidden);
  for (const auto& job : status.jobs) {
    if (job.state != JobState::kFailed)
      continue;
    std::cout << fmt::format(
        "  failed {}: {}\n", job.cell, job.last_error.value_or("(no reason recorded)"));
    const auto tail = status.log_tails.find(job.id);
    if (tail == status.log_tails.end())
      continue;
    for (const auto& line : tail->second)
      std::cout << "    | " << line << "\n";
  }
}

void add_plan(CLI::App& sweep, CliContext& context) {
  struct Options {
    orchestrator::PlanOptions plan;
    bool csv = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      sweep.add_subcommand("plan", "Expand a sweep file into cells and record them as jobs");
  cmd->add_option("file", o->plan.sweep_file, "sweep file (JSON)")->required();
  auto* json = cmd->add_flag("--json", context.json, "print {\"cells\": [...], \"totals\": {...}}");
  cmd->add_flag("--csv", o->csv, "print one CSV line per cell")->excludes(json);
  cmd->add_flag("--dry-run", o->plan.dry_run, "plan and print, write nothing");
  cmd->add_option("--data-dir",
                  o->plan.data_dir,
                  "resolve relative data paths here instead of the sweep file's folder");
  cmd->add_option(
      "--jobs-dir", o->plan.jobs_root, "root of run folders (default: runs/ beside the database)");
  cmd->callback([o, &context] {
    context.run = [o, &context] {
      o->plan.db_path = context.db_path;
      o->plan.on_note = [](const std::string& note) {
        std::cerr << "parcae-scale: " << note << "\n";
      };
      const orchestrator::PlanOutcome outcome = orchestrator::plan_sweep_file(o->plan);
      if (context.json) {
        std::cout << sweeps::to_json(outcome.plan).dump(2) << "\n";
      } else if (o->csv) {
        std::cout << sweeps::to_csv(outcome.plan);
      } else {
        std::cout << sweeps::to_table(outcome.plan);
      }
      const auto& t = outcome.plan.totals;
      if (t.flagged > 0) {
        std::cerr << fmt::format("parcae-scale: {} of {} cells flagged ({}); see the table\n",
                                 t.flagged,
                                 t.cells,
                                 outcome.spec.plan.keep_flagged ? "kept, as plan.keep_flagged asks"
                                                                : "not recorded as jobs");
      }
      if (!outcome.recorded) {
        std::cerr << "parcae-scale: dry run: nothing was written\n";
        return 0;
      }
      const auto& r = *outcome.recorded;
      std::cerr << fmt::format(
          "parcae-scale: sweep {} in {}: {} new jobs, {} unchanged, {} replaced; run folders in "
          "{}\n",
          outcome.spec.name,
          context.db_path,
          r.inserted,
          r.unchanged,
          r.replaced,
          outcome.jobs_dir);
      if (!r.stale_cells.empty()) {
        std::string cells;
        for (const auto& c : r.stale_cells)
          cells += (cells.empty() ? "" : ", ") + c;
        std::cerr << fmt::format(
            "parcae-scale: {} jobs of the sweep are not in this file any more and were left as "
            "they are: {}\n",
            r.stale_cells.size(),
            cells);
      }
      return 0;
    };
  });
}

void add_run(CLI::App& sweep, CliContext& context) {
  auto o = std::make_shared<orchestrator::RunOptions>();
  auto backend = std::make_shared<std::string>("local");
  CLI::App* cmd =
      sweep.add_subcommand("run", "Dispatch planned jobs, resume interrupted ones, ingest results");
  cmd->add_option("sweep", o->sweep, "sweep name in the database, or a sweep file (planned first)");
  cmd->add_option("--backend", *backend, "where jobs run: local, or slurm (docs/slurm.md)")
      ->check(CLI::IsMember({"local", "slurm"}))
      ->capture_default_str();
  cmd->add_option("--gpus", o->gpus, "GPUs to use: auto, all, none (CPU) or a list such as 0-3,6");
  cmd->add_option("--jobs-per-gpu",
                  o->jobs_per_gpu,
                  "trainers sharing one GPU (default: the sweep's resources)");
  cmd->add_option("--max-parallel",
                  o->max_parallel,
                  "most trainers at once (default: one per GPU slot, 1 on the CPU)");
  cmd->add_option("--retries", o->retries, "re-runs of a job after failed attempts")
      ->capture_default_str();
  cmd->add_option(
         "--preemption-retries", o->preemption_retries, "re-runs of a job after preemptions")
      ->capture_default_str();
  cmd->add_option("--trainer",
                  o->trainer,
                  "parcae-train binary (default: $PARCAE_TRAIN, else beside parcae-scale)");
  cmd->add_option("--jobs-dir", o->jobs_root, "root of run folders for jobs that have not started");
  cmd->add_option("--data-dir", o->data_dir, "with a sweep file: resolve relative data paths here");
  cmd->add_option("--poll-interval", o->poll_interval_s, "seconds between ingests of running jobs")
      ->capture_default_str();
  cmd->add_option(
         "--stop-grace", o->stop_grace_s, "seconds trainers get to save on stop before SIGKILL")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o->dry_run, "show what would be launched or resumed, change nothing");
  auto& slurm = o->slurm;
  const std::string group = "Slurm (--backend slurm)";
  cmd->add_option("--partition", slurm.partition, "sbatch --partition")->group(group);
  cmd->add_option("--account", slurm.account, "sbatch --account")->group(group);
  cmd->add_option("--qos", slurm.qos, "sbatch --qos")->group(group);
  cmd->add_option("--time", slurm.time, "sbatch --time, the time limit of each job (04:00:00)")
      ->group(group);
  cmd->add_option("--array-throttle", slurm.array_throttle, "tasks of one array running at once")
      ->group(group);
  cmd->add_option("--template",
                  slurm.template_file,
                  "batch script template (start from `parcae-scale sweep slurm-template`)")
      ->group(group);
  cmd->add_option("--signal-grace",
                  slurm.signal_grace_s,
                  "seconds before the time limit at which the job is told to save (USR2)")
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--cpus-per-task", slurm.cpus_per_task, "sbatch --cpus-per-task")->group(group);
  cmd->add_option("--max-submit",
                  slurm.max_submit,
                  "most jobs of the sweep queued at once (your MaxSubmitJobs; default MaxJobCount)")
      ->group(group);
  cmd->add_option("--sbatch-arg", slurm.sbatch_args, "one more sbatch argument (repeatable)")
      ->group(group);
  cmd->add_option("--fit-after",
                  slurm.fit_after,
                  "a law to fit in a job chained after the training jobs (afterok)")
      ->group(group);
  cmd->add_flag("--detach", slurm.detach, "submit and return; `sweep status` follows the jobs")
      ->group(group);
  cmd->callback([o, backend, cmd, &context] {
    context.run = [o, backend, cmd, &context] {
      o->db_path = context.db_path;
      if (*backend == "slurm") {
        // squeue every half second would burden a real controller.
        if (cmd->count("--poll-interval") == 0)
          o->poll_interval_s = 30.0;
        if (!o->slurm.detach) {
          install_stop_handlers();
          o->stop_signal = &g_stop_signal;
        }
        auto progress = std::make_shared<ProgressPrinter>();
        o->on_progress = [progress](const orchestrator::ProgressEvent& e) { (*progress)(e); };
        const orchestrator::RunSummary summary = orchestrator::run_sweep_slurm(*o);
        progress->finish();
        for (const auto& id : summary.slurm_jobs)
          std::cout << id << "\n";
        int jobs = 0;
        for (const auto& [state, n] : summary.counts)
          jobs += n;
        std::cerr << fmt::format("parcae-scale: sweep {}: {} jobs submitted in {} Slurm jobs; {}",
                                 summary.sweep,
                                 summary.launched,
                                 summary.slurm_jobs.size(),
                                 counts_text(summary.counts, jobs));
        if (!summary.slurm_fit_job.empty())
          std::cerr << fmt::format("; fit job {}", summary.slurm_fit_job);
        if (o->slurm.detach)
          std::cerr << "; follow with `parcae-scale sweep status`";
        std::cerr << "\n";
        return summary.exit_code();
      }
      if (o->dry_run) {
        const orchestrator::RunSummary summary = orchestrator::run_sweep(*o);
        for (const auto& cell : summary.would_launch)
          std::cout << cell << "\n";
        std::cerr << fmt::format(
            "parcae-scale: dry run: {} jobs of sweep {} would be launched or resumed\n",
            summary.would_launch.size(),
            summary.sweep);
        return 0;
      }
      install_stop_handlers();
      o->stop_signal = &g_stop_signal;
      auto printer = std::make_shared<ProgressPrinter>();
      o->on_progress = [printer](const orchestrator::ProgressEvent& e) { (*printer)(e); };
      const orchestrator::RunSummary summary = orchestrator::run_sweep(*o);
      printer->finish();
      int jobs = 0;
      for (const auto& [state, n] : summary.counts)
        jobs += n;
      std::cerr << fmt::format(
          "parcae-scale: sweep {}: {}", summary.sweep, counts_text(summary.counts, jobs));
      if (summary.elsewhere > 0)
        std::cerr << fmt::format("; {} still running under another orchestrator",
                                 summary.elsewhere);
      if (summary.stopped_by_signal != 0) {
        std::cerr << fmt::format("; stopped by signal {}, run the same command to resume",
                                 summary.stopped_by_signal);
      }
      std::cerr << "\n";
      return summary.exit_code();
    };
  });
}

void add_slurm_template(CLI::App& sweep, CliContext& context) {
  CLI::App* cmd = sweep.add_subcommand(
      "slurm-template", "Print the built-in Slurm batch script template, to copy and edit");
  cmd->callback([&context] {
    context.run = [] {
      std::cout << orchestrator::default_slurm_template();
      return 0;
    };
  });
}

void add_status(CLI::App& sweep, CliContext& context) {
  struct Options {
    std::string name;
    bool all = false;
    double watch_s = 0.0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = sweep.add_subcommand(
      "status", "Counts, progress, running and failed jobs (with their log tails)");
  cmd->add_option("sweep", o->name, "sweep name (default: every sweep)");
  cmd->add_flag("--json", context.json, "print one JSON document (every job)");
  cmd->add_flag("--all", o->all, "list every job, planned and done ones too");
  cmd->add_option("--watch", o->watch_s, "look again every SECONDS until Ctrl-C")
      ->expected(0, 1)
      ->default_str("2")
      ->check(CLI::PositiveNumber);
  cmd->callback([o, cmd, &context] {
    if (cmd->count("--watch") > 0 && o->watch_s <= 0)
      o->watch_s = 2.0;
    context.run = [o, &context] {
      const bool terminal = ::isatty(1) != 0;
      if (o->watch_s > 0)
        install_stop_handlers();
      std::map<std::string, std::pair<double, std::chrono::steady_clock::time_point>> last;
      std::map<std::string, double> rate;
      while (true) {
        const auto statuses = orchestrator::sweep_status(context.db_path, o->name);
        const auto now = std::chrono::steady_clock::now();
        for (const auto& s : statuses) {
          for (const auto& note : s.notes)
            std::cerr << "parcae-scale: " << s.sweep.name << ": " << note << "\n";
        }
        if (context.json) {
          if (!o->name.empty()) {
            std::cout << orchestrator::to_json(statuses.front()).dump(2) << "\n";
          } else {
            nlohmann::json all = nlohmann::json::array();
            for (const auto& s : statuses)
              all.push_back(orchestrator::to_json(s));
            std::cout << nlohmann::json{{"sweeps", all}}.dump(2) << "\n";
          }
        } else {
          if (o->watch_s > 0 && terminal)
            std::cout << "\x1b[H\x1b[2J";  // redraw from the top of a cleared screen
          else if (o->watch_s > 0)
            std::cout << fmt::format("-- {}\n", clock_time());
          for (const auto& s : statuses) {
            // FLOPs per second between two looks, smoothed, for the ETA.
            const auto seen = last.find(s.sweep.name);
            if (seen != last.end()) {
              const double dt = std::chrono::duration<double>(now - seen->second.second).count();
              const double measured = dt > 0 ? (s.flops_done - seen->second.first) / dt : 0.0;
              const auto r = rate.find(s.sweep.name);
              rate[s.sweep.name] = r == rate.end() ? measured : 0.7 * r->second + 0.3 * measured;
            }
            last[s.sweep.name] = {s.flops_done, now};
            StatusView view;
            view.all = o->all;
            view.terminal = terminal;
            if (const auto r = rate.find(s.sweep.name); r != rate.end())
              view.flops_per_s = r->second;
            print_status(s, view);
          }
        }
        std::cout.flush();
        if (o->watch_s <= 0)
          return 0;
        const auto until = now + std::chrono::milliseconds(static_cast<int64_t>(o->watch_s * 1000));
        while (std::chrono::steady_clock::now() < until) {
          if (g_stop_signal.load() != 0)
            return 0;
          ::usleep(50000);
        }
        if (g_stop_signal.load() != 0)
          return 0;
      }
    };
  });
}

void add_retry(CLI::App& sweep, CliContext& context) {
  auto targets = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = sweep.add_subcommand("retry", "Send failed or cancelled jobs back to planned");
  cmd->add_option("targets", *targets, "job ids (or unique prefixes) or sweep names")->required();
  cmd->callback([targets, &context] {
    context.run = [targets, &context] {
      const auto moved = orchestrator::retry(context.db_path, *targets);
      for (const auto& id : moved)
        std::cout << id << "\n";
      std::cerr << fmt::format("parcae-scale: {} jobs back to planned; `sweep run` runs them\n",
                               moved.size());
      return 0;
    };
  });
}

void add_cancel(CLI::App& sweep, CliContext& context) {
  auto targets = std::make_shared<std::vector<std::string>>();
  auto grace = std::make_shared<double>(30.0);
  CLI::App* cmd =
      sweep.add_subcommand("cancel", "Stop jobs (SIGTERM, grace, SIGKILL) and mark them cancelled");
  cmd->add_option("targets", *targets, "sweep names or job ids (or unique prefixes)")->required();
  cmd->add_option("--grace", *grace, "seconds a trainer gets to save before SIGKILL")
      ->capture_default_str();
  cmd->callback([targets, grace, &context] {
    context.run = [targets, grace, &context] {
      const auto result = orchestrator::cancel(context.db_path, *targets, *grace);
      for (const auto& id : result.cancelled)
        std::cout << id << "\n";
      std::cerr << fmt::format("parcae-scale: {} jobs cancelled, {} trainers stopped",
                               result.cancelled.size(),
                               result.stopped.size());
      if (!result.killed.empty())
        std::cerr << fmt::format(", {} killed after the grace period", result.killed.size());
      if (!result.slurm.empty())
        std::cerr << fmt::format(", {} Slurm jobs scancelled", result.slurm.size());
      if (!result.unreachable.empty()) {
        std::cerr << fmt::format(", {} running on another host (marked, not signalled)",
                                 result.unreachable.size());
      }
      std::cerr << "\n";
      return 0;
    };
  });
}

void add_sync(CLI::App& sweep, CliContext& context) {
  auto name = std::make_shared<std::string>();
  CLI::App* cmd = sweep.add_subcommand(
      "sync", "Ingest run folders trained elsewhere (scripts/run-jobs) into the database");
  cmd->add_option("sweep", *name, "sweep name")->required();
  cmd->add_flag("--json", context.json, "print one JSON document");
  cmd->callback([name, &context] {
    context.run = [name, &context] {
      const auto result = orchestrator::sync(context.db_path, *name);
      for (const auto& line : result.bad_lines)
        std::cerr << "parcae-scale: skipped " << line << "\n";
      if (context.json) {
        std::cout
            << nlohmann::json{{"ingested", result.ingested}, {"finished", result.finished}}.dump(2)
            << "\n";
      } else {
        for (const auto& id : result.finished)
          std::cout << id << "\n";
      }
      std::cerr << fmt::format("parcae-scale: {} jobs with new events, {} now finished\n",
                               result.ingested.size(),
                               result.finished.size());
      return 0;
    };
  });
}

void add_list(CLI::App& sweep, CliContext& context) {
  CLI::App* cmd = sweep.add_subcommand("list", "The sweeps in the database");
  cmd->add_flag("--json", context.json, "print one JSON document");
  cmd->callback([&context] {
    context.run = [&context] {
      const auto statuses = orchestrator::sweep_status(context.db_path, "");
      if (context.json) {
        nlohmann::json all = nlohmann::json::array();
        for (const auto& s : statuses) {
          nlohmann::json counts = nlohmann::json::object();
          for (const auto& [state, n] : s.counts)
            counts[results::to_string(state)] = n;
          all.push_back({{"name", s.sweep.name},
                         {"file", s.sweep.file},
                         {"jobs", s.jobs.size()},
                         {"counts", counts},
                         {"flops_done", s.flops_done},
                         {"flops_total", s.flops_total}});
        }
        std::cout << all.dump(2) << "\n";
        return 0;
      }
      for (const auto& s : statuses) {
        std::cout << fmt::format("{}  {}  ({})\n",
                                 s.sweep.name,
                                 counts_text(s.counts, static_cast<int>(s.jobs.size())),
                                 s.sweep.file);
      }
      return 0;
    };
  });
}

}  // namespace

void add_sweep_commands(CLI::App& app, CliContext& context) {
  CLI::App* sweep = app.add_subcommand("sweep", "Plan, run and follow sweeps");
  sweep->require_subcommand(1);
  add_plan(*sweep, context);
  add_run(*sweep, context);
  add_status(*sweep, context);
  add_retry(*sweep, context);
  add_cancel(*sweep, context);
  add_sync(*sweep, context);
  add_list(*sweep, context);
  add_slurm_template(*sweep, context);
}

}  // namespace parcae::cli
