// `parcae-scale sweep plan|run|status|retry|cancel|list`: flags mapped onto the orchestrator's
// options, results printed. stdout carries only the result; progress and notes go to stderr,
// redrawn in place only when stderr is a terminal.
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "analysis/analysis.h"
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
  // SIGHUP too: a closed terminal or ssh session must save and stop like SIGTERM, not kill the
  // orchestrator and leave its trainers unwatched.
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(signal_number, &action, nullptr);
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

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::lround(seconds));
  if (s >= 3600)
    return fmt::format("{}h{:02d}m", s / 3600, static_cast<int>((s % 3600) / 60));
  if (s >= 60)
    return fmt::format("{}m{:02d}s", s / 60, static_cast<int>(s % 60));
  return fmt::format("{}s", s);
}

// Columns of the terminal on stderr: TIOCGWINSZ, else $COLUMNS, else 80.
int terminal_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
    return size.ws_col;
  const char* columns = std::getenv("COLUMNS");
  if (columns != nullptr && std::atoi(columns) > 0)
    return std::atoi(columns);
  return 80;
}

// Joins the parts that fit in `width` columns, most important first: a part that does not fit is
// left out, and a later, shorter one may still fit. A line as wide as the terminal would wrap and
// leave a line behind at every redraw, so the status line stays one column short of it.
std::string fit_parts(const std::vector<std::string>& parts, int width) {
  std::string out;
  for (const auto& part : parts) {
    const std::string joined = out.empty() ? part : out + "  " + part;
    if (static_cast<int>(joined.size()) <= width)
      out = joined;
  }
  if (out.empty() && !parts.empty())
    out = parts.front().substr(0, static_cast<size_t>(std::max(width, 0)));
  return out;
}

// Prints run_sweep()'s progress: one line per state change; on a terminal also a status line
// at the bottom, redrawn in place and cut to the terminal's width: a bar of FLOPs done, the
// sweep's ETA, the counts, and each running job's step and training loss.
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
        running_[e.cell] = {};
        line = fmt::format("{}  {}  running  {}", clock_time(), e.cell, e.message);
        break;
      case Kind::kAdopted:
        running_[e.cell] = {};
        line = fmt::format("{}  {}  adopted  {}", clock_time(), e.cell, e.message);
        break;
      case Kind::kFinished:
        running_.erase(e.cell);
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
        running_[e.cell] = {e.steps_done, e.steps, e.loss};
        break;
    }
    if (!line.empty())
      line += "  [" + counts_text(e.counts, e.jobs) + "]";
    if (terminal_) {
      std::cerr << "\r\033[K";
      if (!line.empty())
        std::cerr << line << "\n";
      std::cerr << status_line(e, terminal_columns() - 1) << std::flush;
    } else if (!line.empty()) {
      std::cerr << line << "\n" << std::flush;
    }
  }

  void finish() {
    if (terminal_)
      std::cerr << "\r\033[K" << std::flush;
  }

 private:
  struct JobProgress {
    int64_t steps_done = 0;
    int64_t steps = 0;
    std::optional<double> loss;
  };

  std::string status_line(const orchestrator::ProgressEvent& e, int width) const {
    const double fraction = e.flops_total > 0 ? e.flops_done / e.flops_total : 0.0;
    std::string eta = "ETA --";
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double gained = e.flops_done - start_flops_.value_or(0.0);
    if (gained > 0 && elapsed > 1)
      eta = "ETA " + duration_text((e.flops_total - e.flops_done) * elapsed / gained);
    std::string counts;
    for (JobState state : results::all_job_states()) {
      const auto it = e.counts.find(state);
      if (it != e.counts.end() && it->second > 0)
        counts += fmt::format("{}{} {}", counts.empty() ? "" : " ", it->second, to_string(state));
    }
    // Most important first: progress and ETA, then each running job's loss, then the counts
    // (which the lines above the status line carry too).
    const int bar = std::clamp(width / 8, 4, 24);
    std::vector<std::string> parts = {
        fmt::format("{} {:.1f}%", progress_bar(fraction, bar), 100 * fraction), eta};
    for (const auto& [cell, job] : running_) {
      parts.push_back(
          job.loss ? fmt::format("{} {}/{} loss {:.3f}", cell, job.steps_done, job.steps, *job.loss)
                   : cell + " starting");
    }
    parts.push_back(counts);
    return fit_parts(parts, width);
  }

  bool terminal_;
  std::chrono::steady_clock::time_point start_;
  std::optional<double> start_flops_;
  std::map<std::string, JobProgress> running_;  // by cell
};

std::string interval_text(double value, double low, double high) {
  if (!std::isfinite(value))
    return "-";
  if (!std::isfinite(low) || !std::isfinite(high))
    return fmt::format("{:.3f}", value);
  return fmt::format("{:.3f} [{:.3f}, {:.3f}]", value, low, high);
}

// A refinement decision as lines: what it does and why, then each budget's additions and the
// round's cost.
std::string round_text(const sweeps::RefineRound& round) {
  std::string out;
  if (round.action == "refine") {
    out = fmt::format("round {}: {}\n", round.round, round.reason);
    for (const auto& a : round.additions) {
      out += fmt::format("  {}{}: {}\n",
                         a.budget_id,
                         a.new_budget ? fmt::format(" (new, {:.3g} FLOPs)", a.budget_flops) : "",
                         a.reason);
    }
    out += fmt::format("  {} cells, {:.3g} FLOPs, {:.3g} GPU-hours (estimated)\n",
                       round.cells,
                       round.flops,
                       round.gpu_hours);
  } else {
    out = fmt::format("refinement stops before round {}: {}\n", round.round, round.reason);
  }
  return out;
}

// The live fit of a sweep with budgets: x* ~ C^a over its finished runs, with its interval.
std::optional<analysis::LiveFit> sweep_live_fit(const std::string& db_path,
                                                const results::SweepRecord& sweep) {
  if (!sweep.spec.contains("budgets"))
    return std::nullopt;
  const results::Store store = results::Store::open(db_path, results::Store::Mode::kExisting);
  const analysis::SweepRuns runs = analysis::collect_runs(store, sweep.name);
  return analysis::live_fit(runs, sweep.spec.contains("refine") ? "mu_rec" : "");
}

// Jobs a glance needs: every state but planned and done (those are counted in the header).
bool listed_by_default(JobState state) {
  return state != JobState::kPlanned && state != JobState::kDone;
}

struct StatusView {
  bool all = false;                      // list every job, not only those that need a look
  std::optional<analysis::LiveFit> fit;  // the sweep's live fit, when it has budgets
  bool terminal = false;                 // draw a progress bar
  std::optional<double> flops_per_s;     // measured by --watch between two looks
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
  if (view.fit) {
    const analysis::LiveFit& fit = *view.fit;
    const std::string symbol = fit.x == "mu_rec" ? "mu*" : fit.x + "*";
    if (fit.status == "ok") {
      std::cout << fmt::format(
          "  fit: {} ~ C^a, a = {} (95%), from {} runs over {} budgets\n",
          symbol,
          interval_text(fit.exponent, fit.exponent_ci_low, fit.exponent_ci_high),
          fit.runs,
          fit.budgets);
      if (!fit.problems.empty())
        std::cout << fmt::format("  fit not usable yet: {}\n", fmt::join(fit.problems, "; "));
    } else {
      std::cout << fmt::format("  fit: {} ~ C^a waiting: {}\n", symbol, fit.message);
    }
  }
  for (const auto& round : status.rounds) {
    std::cout << fmt::format(
        "  round {}: {} ({} cells): {}\n", round.round, round.action, round.cells, round.reason);
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

nlohmann::ordered_json counts_json(const std::map<JobState, int>& counts) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (JobState state : results::all_job_states()) {
    const auto it = counts.find(state);
    out[results::to_string(state)] = it == counts.end() ? 0 : it->second;
  }
  return out;
}

nlohmann::ordered_json record_json(const results::PlanRecordResult& r) {
  return {{"inserted", r.inserted},
          {"unchanged", r.unchanged},
          {"replaced", r.replaced},
          {"stale_cells", r.stale_cells}};
}

void add_plan(CLI::App& sweep, CliContext& context) {
  struct Options {
    orchestrator::PlanOptions plan;
    bool csv = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd =
      sweep.add_subcommand("plan", "Expand a sweep file into cells and record them as jobs");
  cmd->add_option("file", o->plan.sweep_file, "sweep file (JSON; // comments allowed)")->required();
  cmd->add_option("overrides",
                  o->plan.overrides,
                  "KEY=VALUE changes to the file, as Hydra's: training.batch_tokens=8192 "
                  "model.d_model=512 (+KEY=VALUE adds, ~KEY removes)");
  cmd->add_flag("--json", context.json, "print {\"cells\": [...], \"totals\": {...}}");
  cmd->add_flag("--csv", o->csv, "print one CSV line per cell");
  cmd->add_flag(
      "--dry-run", o->plan.dry_run, "plan, compare with the database and print; write nothing");
  cmd->add_option("--data-dir",
                  o->plan.data_dir,
                  "resolve relative data paths here instead of the sweep file's folder");
  cmd->add_option(
      "--jobs-dir", o->plan.jobs_root, "root of run folders (default: runs/ beside the database)");
  cmd->callback([o, &context] {
    context.run = [o, &context] {
      if (context.json && o->csv)
        throw InputError("", "--csv", "(with --json)", "expected one output format");
      o->plan.db_path = context.db_path;
      o->plan.on_note = [](const std::string& note) {
        std::cerr << "parcae-scale: " << note << "\n";
      };
      const orchestrator::PlanOutcome outcome = orchestrator::plan_sweep_file(o->plan);
      const auto& record = outcome.recorded ? outcome.recorded : outcome.would_record;
      if (context.json) {
        nlohmann::ordered_json document = sweeps::to_json(outcome.plan);
        document["overrides"] = o->plan.overrides;
        document["dry_run"] = o->plan.dry_run;
        document["recorded"] = record ? record_json(*record) : nlohmann::ordered_json();
        print_json(document);
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
      if (t.repeating > 0) {
        std::cerr << fmt::format(
            "parcae-scale: warning: {} of {} jobs train on more than one epoch of the corpus "
            "(up to {:.3g}); see the table\n",
            t.repeating,
            t.jobs,
            t.max_epochs);
      }
      if (!record) {
        std::cerr << "parcae-scale: dry run: nothing was written (no database at "
                  << context.db_path << " yet)\n";
        return 0;
      }
      const auto& r = *record;
      std::cerr << fmt::format(
          "parcae-scale: {}sweep {} in {}: {} new jobs, {} unchanged, {} replaced",
          outcome.recorded ? "" : "dry run: would record ",
          outcome.spec.name,
          context.db_path,
          r.inserted,
          r.unchanged,
          r.replaced);
      if (outcome.recorded)
        std::cerr << "; run folders in " << outcome.jobs_dir;
      else
        std::cerr << "; nothing was written";
      std::cerr << "\n";
      if (!r.stale_cells.empty()) {
        std::string cells;
        for (const auto& c : r.stale_cells)
          cells += (cells.empty() ? "" : ", ") + c;
        std::cerr << fmt::format(
            "parcae-scale: {} jobs of the sweep are not in this file any more and {}: {}\n",
            r.stale_cells.size(),
            outcome.recorded ? "were left as they are" : "would be left as they are",
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
  cmd->add_option(
      "overrides", o->overrides, "with a sweep file: KEY=VALUE changes, as for `sweep plan`");
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
  cmd->add_option("--silence-limit",
                  o->silence_limit_s,
                  "seconds without an event after which a trainer is killed as hung (0 = never)")
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
        // A detached submission returns before its cells finish: its rounds are decided later,
        // by `sweep refine` or another `sweep run`.
        const orchestrator::RunSummary summary =
            o->slurm.detach ? orchestrator::run_sweep_slurm(*o)
                            : orchestrator::run_refining_sweep(
                                  *o,
                                  analysis::next_refinement,
                                  [progress](const sweeps::RefineRound& round) {
                                    progress->finish();
                                    std::cerr << round_text(round) << std::flush;
                                  },
                                  orchestrator::run_sweep_slurm);
        progress->finish();
        if (context.json) {
          print_json(nlohmann::ordered_json{{"sweep", summary.sweep},
                                            {"slurm_jobs", summary.slurm_jobs},
                                            {"slurm_fit_job", summary.slurm_fit_job},
                                            {"launched", summary.launched},
                                            {"counts", counts_json(summary.counts)}});
        } else {
          for (const auto& id : summary.slurm_jobs)
            std::cout << id << "\n";
        }
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
        if (context.json) {
          nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
          for (const auto& launch : summary.would_launch) {
            jobs.push_back({{"job_id", launch.job_id},
                            {"cell", launch.cell},
                            {"action", launch.action},
                            {"devices",
                             launch.devices.empty() ? nlohmann::ordered_json()
                                                    : nlohmann::ordered_json(launch.devices)}});
          }
          print_json(nlohmann::ordered_json{
              {"sweep", summary.sweep}, {"slots", summary.slots}, {"jobs", jobs}});
        } else {
          size_t width = 4;
          for (const auto& launch : summary.would_launch)
            width = std::max(width, launch.cell.size());
          for (const auto& launch : summary.would_launch) {
            std::cout << fmt::format("{:<{}}  {:<6}  {:<12}  {}\n",
                                     launch.cell,
                                     width,
                                     launch.action,
                                     launch.devices.empty() ? "(next free)" : launch.devices,
                                     launch.job_id);
          }
        }
        std::cerr << fmt::format(
            "parcae-scale: dry run: {} jobs of sweep {} would be launched or resumed on {}\n",
            summary.would_launch.size(),
            summary.sweep,
            summary.slots);
        return 0;
      }
      install_stop_handlers();
      o->stop_signal = &g_stop_signal;
      auto printer = std::make_shared<ProgressPrinter>();
      o->on_progress = [printer](const orchestrator::ProgressEvent& e) { (*printer)(e); };
      const orchestrator::RunSummary summary = orchestrator::run_refining_sweep(
          *o, analysis::next_refinement, [printer](const sweeps::RefineRound& round) {
            printer->finish();
            std::cerr << round_text(round) << std::flush;
          });
      printer->finish();
      if (context.json) {
        print_json(nlohmann::ordered_json{{"sweep", summary.sweep},
                                          {"launched", summary.launched},
                                          {"adopted", summary.adopted},
                                          {"elsewhere", summary.elsewhere},
                                          {"stopped_by_signal", summary.stopped_by_signal},
                                          {"counts", counts_json(summary.counts)}});
      }
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
    context.run = [&context] {
      if (context.json) {
        throw InputError(
            "", "--json", "(given)", "sweep slurm-template prints a batch script, not JSON");
      }
      std::cout << orchestrator::default_slurm_template();
      return 0;
    };
  });
}

void add_status(CLI::App& sweep, CliContext& context) {
  struct Options {
    std::string name;
    bool all = false;
    bool watch = false;
    double watch_s = 2.0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = sweep.add_subcommand(
      "status", "Counts, progress, running and failed jobs (with their log tails)");
  cmd->add_option("sweep", o->name, "sweep name (default: every sweep)");
  cmd->add_flag("--json", context.json, "print one JSON document (every job)");
  cmd->add_flag("--all", o->all, "list every job, planned and done ones too");
  // A flag, as kubectl's --watch: `--watch NAME` must not read NAME as the interval.
  auto* watch =
      cmd->add_flag("--watch", o->watch, "look again every --interval seconds until Ctrl-C");
  cmd->add_option("--interval", o->watch_s, "seconds between looks with --watch")
      ->capture_default_str()
      ->needs(watch)
      ->check(CLI::Validator(
          [](std::string& value) {
            char* end = nullptr;
            const double seconds = std::strtod(value.c_str(), &end);
            return end != value.c_str() && *end == '\0' && seconds > 0 && std::isfinite(seconds)
                       ? std::string()
                       : "--interval = " + value + ": expected a positive number of seconds";
          },
          "SECONDS"));
  cmd->callback([o, &context] {
    if (!o->watch)
      o->watch_s = 0.0;
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
          auto document = [&context](const orchestrator::SweepStatus& s) {
            nlohmann::ordered_json out = orchestrator::to_json(s);
            const auto fit = sweep_live_fit(context.db_path, s.sweep);
            out["fit"] = fit ? analysis::to_json(*fit) : nlohmann::ordered_json();
            nlohmann::ordered_json rounds = nlohmann::ordered_json::array();
            for (const auto& round : s.rounds)
              rounds.push_back(nlohmann::ordered_json(sweeps::to_json(round)));
            out["rounds"] = rounds;
            return out;
          };
          if (!o->name.empty()) {
            print_json(document(statuses.front()));
          } else {
            nlohmann::ordered_json all = nlohmann::ordered_json::array();
            for (const auto& s : statuses)
              all.push_back(document(s));
            print_json(nlohmann::ordered_json{{"sweeps", all}});
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
            view.fit = sweep_live_fit(context.db_path, s.sweep);
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

void add_refine(CLI::App& sweep, CliContext& context) {
  struct Options {
    std::string name;
    bool dry_run = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = sweep.add_subcommand(
      "refine", "Decide the next refinement round of a sweep from its finished runs, and plan it");
  cmd->add_option("sweep", o->name, "sweep name (default: the database's only sweep)");
  cmd->add_flag("--dry-run",
                o->dry_run,
                "print what the round would add, with its FLOPs and GPU-hours; write nothing");
  cmd->add_flag("--json", context.json, "print the decision as one JSON document");
  cmd->callback([o, &context] {
    context.run = [o, &context] {
      results::Store store = results::Store::open(context.db_path, results::Store::Mode::kExisting);
      const std::string name = store.resolve_sweep(o->name);
      const sweeps::RefineRound round = analysis::next_refinement(store, name);
      if (!o->dry_run)
        orchestrator::record_refinement(store, name, round);
      if (context.json) {
        nlohmann::ordered_json document = {{"sweep", name}, {"dry_run", o->dry_run}};
        const nlohmann::json decision = sweeps::to_json(round);
        for (const auto& [key, value] : decision.items())
          document[key] = value;
        print_json(document);
      } else {
        std::cout << round_text(round);
      }
      if (o->dry_run) {
        std::cerr << "parcae-scale: dry run: nothing was written\n";
      } else if (round.action == "refine") {
        std::cerr << fmt::format(
            "parcae-scale: round {} of sweep {} planned; `sweep run {}` runs it\n",
            round.round,
            name,
            name);
      }
      return 0;
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
      if (context.json)
        print_json(nlohmann::ordered_json{{"job_ids", moved}});
      else
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
      if (context.json) {
        print_json(nlohmann::ordered_json{{"job_ids", result.cancelled},
                                          {"stopped", result.stopped},
                                          {"killed", result.killed},
                                          {"unreachable", result.unreachable},
                                          {"slurm", result.slurm}});
      } else {
        for (const auto& id : result.cancelled)
          std::cout << id << "\n";
      }
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
        print_json(
            nlohmann::ordered_json{{"job_ids", result.finished}, {"ingested", result.ingested}});
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
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        for (const auto& s : statuses)
          all.push_back(orchestrator::to_json(s, /*with_jobs=*/false));
        print_json(nlohmann::ordered_json{{"sweeps", all}});
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
  add_refine(*sweep, context);
  add_retry(*sweep, context);
  add_cancel(*sweep, context);
  add_sync(*sweep, context);
  add_list(*sweep, context);
  add_slurm_template(*sweep, context);
}

}  // namespace parcae::cli
