// parcae-bench-store: the planner, the results store and the scheduler under load.
//
//   plan     a 100,000-cell isoFLOP sweep (20 budgets x 100 mu_rec x 50 seeds) planned in memory
//   record   the same plan recorded as jobs in a fresh database
//   ingest   one job's events.jsonl of 1,000,000 step events ingested from scratch, then again
//            (the second pass must find nothing new)
//   status   sweep_status(), `parcae-scale sweep status` and `... --json` on a 10,000-job database
//   schedule run_sweep() over 200 jobs whose trainer is a script that reports a finished run at
//            once; the scheduler's own cost per job is the wall time minus the time the same
//            trainer takes when run directly, divided by the jobs
//
// Usage: parcae-bench-store [--repeat N] [--only NAME] [--scratch DIR]. Each figure is the median
// of N runs (3 by default). A --scratch folder is kept afterwards, with its databases. The targets
// of docs/benchmarks.md are printed beside the figures.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "orchestrator/orchestrator.h"
#include "results/results.h"
#include "sweeps/planner.h"
#include "sweeps/sweep_spec.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace parcae;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Runs `body` `repeat` times (with `setup` before each, untimed) and returns the median seconds.
double timed(int repeat, const std::function<void()>& setup, const std::function<void()>& body) {
  std::vector<double> runs;
  for (int i = 0; i < repeat; ++i) {
    if (setup)
      setup();
    const auto start = Clock::now();
    body();
    runs.push_back(seconds_since(start));
  }
  return median(runs);
}

void report(const std::string& name, double seconds, const std::string& unit_note, double target) {
  std::cout << fmt::format("{:<34} {:>10.3f} s   {:<28} target < {} s  {}\n",
                           name,
                           seconds,
                           unit_note,
                           target,
                           seconds < target ? "met" : "MISSED");
}

void write_file(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A sweep of 20 budgets x mus x seeds cells of a micro Parcae, with (fake) data in `dir`.
nlohmann::json sweep_document(const std::string& name, int mus, int seeds) {
  nlohmann::json budgets = nlohmann::json::array();
  for (int b = 0; b < 20; ++b) {
    const double flops = 1e13 * std::pow(10.0, b / 5.0);
    budgets.push_back({{"id", fmt::format("b{}", b)}, {"flops", flops}});
  }
  nlohmann::json mu = nlohmann::json::array();
  for (int m = 1; m <= mus; ++m)
    mu.push_back(m);
  nlohmann::json seed = nlohmann::json::array();
  for (int s = 0; s < seeds; ++s)
    seed.push_back(s);
  return {{"name", name},
          {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
          {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
          {"budgets", budgets},
          {"axes", {{"mean_recurrence", mu}, {"seed", seed}}},
          {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
          {"device", "cpu"},
          {"plan", {{"min_steps", 1}, {"keep_flagged", true}}}};
}

std::string write_sweep(const std::string& dir, const nlohmann::json& document) {
  write_file(dir + "/data/train_000000.bin", "x");
  write_file(dir + "/data/val_000000.bin", "x");
  const std::string path = dir + "/" + document.at("name").get<std::string>() + ".json";
  write_file(path, document.dump(2));
  return path;
}

void bench_plan(const std::string& scratch, int repeat) {
  const std::string file = write_sweep(scratch + "/plan", sweep_document("plan", 100, 50));
  const sweeps::SweepSpec spec = sweeps::read_sweep_file(file);
  size_t cells = 0;
  const double plan_s =
      timed(repeat, nullptr, [&] { cells = sweeps::plan_sweep(spec).cells.size(); });
  report(fmt::format("plan {} cells", cells), plan_s, "sweeps::plan_sweep", 1.0);

  const sweeps::Plan plan = sweeps::plan_sweep(spec);
  const std::string db = scratch + "/plan/plan.sqlite";
  const double record_s = timed(
      repeat,
      [&] { fs::remove(db), fs::remove(db + "-wal"), fs::remove(db + "-shm"); },
      [&] {
        results::Store store = results::Store::open(db, results::Store::Mode::kCreate);
        store.record_plan(spec, plan, scratch + "/plan/runs");
      });
  std::cout << fmt::format("{:<34} {:>10.3f} s   {}\n",
                           fmt::format("record {} jobs", plan.jobs().size()),
                           record_s,
                           "Store::record_plan (no target)");
}

void bench_ingest(const std::string& scratch, int repeat) {
  const std::string dir = scratch + "/ingest";
  const std::string file = write_sweep(dir, sweep_document("ingest", 1, 1));
  const sweeps::SweepSpec spec = sweeps::read_sweep_file(file);
  const sweeps::Plan plan = sweeps::plan_sweep(spec);
  const std::string job_id = plan.jobs().front()->job_id;
  constexpr int64_t kSteps = 1000000;
  const std::string events = dir + "/events.jsonl";
  {
    std::ofstream out(events, std::ios::binary | std::ios::trunc);
    out << nlohmann::json{{"event", "start"},
                          {"time", 1.7e9},
                          {"step", 0},
                          {"job_id", job_id},
                          {"resumed", false},
                          {"world_size", 1},
                          {"max_steps", kSteps},
                          {"train_tokens", kSteps * 4096},
                          {"seed", 0},
                          {"events_version", 1}}
               .dump()
        << "\n";
    for (int64_t s = 1; s <= kSteps; ++s) {
      out << fmt::format(
          "{{\"event\":\"step\",\"time\":{:.6f},\"step\":{},\"tokens\":{},\"flops\":{:.6e},"
          "\"loss\":{:.6f},\"lr_adamw\":0.008,\"lr_muon\":0.008,\"grad_norm\":{:.5f},"
          "\"tokens_per_s\":250000.0,\"skipped\":false,\"mean_depth\":4.02}}\n",
          1.7e9 + s * 0.01,
          s,
          s * 4096,
          s * 4096 * 1.5e6,
          2.0 + 3.0 / std::sqrt(s + 1.0),
          0.5 + 1.0 / s);
    }
  }
  const double mb = fs::file_size(events) / 1e6;
  const std::string db = dir + "/ingest.sqlite";
  int64_t applied = 0, again = -1;
  const double ingest_s = timed(
      repeat,
      [&] {
        fs::remove(db), fs::remove(db + "-wal"), fs::remove(db + "-shm");
        results::Store store = results::Store::open(db, results::Store::Mode::kCreate);
        store.record_plan(spec, plan, dir + "/runs");
      },
      [&] {
        results::Store store = results::Store::open(db, results::Store::Mode::kExisting);
        applied = store.ingest_events(job_id, events).events;
      });
  report(fmt::format("ingest {} events ({:.0f} MB)", applied, mb),
         ingest_s,
         "Store::ingest_events",
         5.0);
  const double again_s = timed(repeat, nullptr, [&] {
    results::Store store = results::Store::open(db, results::Store::Mode::kExisting);
    again = store.ingest_events(job_id, events).events;
  });
  std::cout << fmt::format("{:<34} {:>10.3f} s   {} events applied (expected 0)\n",
                           "ingest the same file again",
                           again_s,
                           again);
}

// The running binary's folder, where parcae-scale is found when built beside it.
std::string tool_path(const std::string& name) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / name).string();
}

double run_command_s(const std::vector<std::string>& args) {
  std::cout.flush();  // the child must not inherit unwritten output
  std::fflush(stdout);
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (::freopen("/dev/null", "w", stdout) == nullptr)
      ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(fmt::format("{} failed", args[0]));
  return seconds_since(start);
}

void bench_status(const std::string& scratch, int repeat) {
  const std::string dir = scratch + "/status";
  const std::string file = write_sweep(dir, sweep_document("status", 50, 10));
  const std::string db = dir + "/status.sqlite";
  fs::remove(db), fs::remove(db + "-wal"), fs::remove(db + "-shm");
  orchestrator::PlanOptions plan;
  plan.sweep_file = file;
  plan.db_path = db;
  plan.require_data = false;
  const auto outcome = orchestrator::plan_sweep_file(plan);
  size_t jobs = 0;
  const double library_s = timed(repeat, nullptr, [&] {
    jobs = orchestrator::sweep_status(db, "status").front().jobs.size();
  });
  report(fmt::format("status of {} jobs", jobs), library_s, "orchestrator::sweep_status", 0.2);
  const std::string scale = tool_path("parcae-scale");
  if (!fs::exists(scale)) {
    std::cout << fmt::format("(no {} to time the command)\n", scale);
    return;
  }
  const double table_s = timed(repeat, nullptr, [&] {
    run_command_s({scale, "--db", db, "sweep", "status"});
  });
  report(fmt::format("`sweep status` {} jobs", jobs), table_s, "the whole command", 0.2);
  const double json_s = timed(repeat, nullptr, [&] {
    run_command_s({scale, "--db", db, "sweep", "status", "status", "--json"});
  });
  report(fmt::format("`sweep status --json` {} jobs", jobs),
         json_s,
         "the whole command, every job",
         0.2);
}

// A trainer that reports a finished run at once, following docs/events.md.
constexpr char kInstantTrainer[] = R"(#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --out) out=$2; shift 2 ;; *) shift ;; esac; done
printf '{"event":"start","time":1,"step":0,"resumed":false}\n{"event":"step","time":1,"step":1,"tokens":4096,"flops":1e9,"loss":2.5}\n{"event":"eval","time":1,"step":1,"tokens":4096,"depth":1,"loss":2.6}\n{"event":"done","time":1,"step":1,"status":"done","tokens":4096,"flops":1e9,"loss_train":2.5,"loss_val":2.6,"wall_time_s":0.01,"peak_memory_bytes":0}\n' >> "$out/events.jsonl"
)";

void bench_schedule(const std::string& scratch, int repeat) {
  const std::string dir = scratch + "/schedule";
  const std::string trainer = dir + "/instant-train";
  write_file(trainer, kInstantTrainer);
  fs::permissions(trainer, fs::perms::owner_all);
  constexpr int kJobs = 200;
  const std::string file = write_sweep(dir, sweep_document("schedule", 10, 1));
  const std::string db = dir + "/schedule.sqlite";
  int done = 0;
  const double run_s = timed(
      repeat,
      [&] {
        fs::remove_all(dir + "/runs");
        fs::remove(db), fs::remove(db + "-wal"), fs::remove(db + "-shm");
      },
      [&] {
        orchestrator::RunOptions options;
        options.db_path = db;
        options.sweep = file;
        options.trainer = trainer;
        options.gpus = "none";
        options.max_parallel = 1;
        options.poll_interval_s = 0.05;
        const auto summary = orchestrator::run_sweep(options);
        done = summary.counts.count(results::JobState::kDone)
                   ? summary.counts.at(results::JobState::kDone)
                   : 0;
      });
  fs::create_directories(dir + "/direct");
  const double direct_s = timed(repeat, nullptr, [&] {
    for (int i = 0; i < kJobs; ++i)
      run_command_s({trainer, "--job", "x", "--out", dir + "/direct"});
  });
  const double per_job = (run_s - direct_s) / kJobs;
  std::cout << fmt::format("{:<34} {:>10.3f} s   {} jobs done; trainer alone {:.3f} s\n",
                           "run_sweep, one job at a time",
                           run_s,
                           done,
                           direct_s);
  report("scheduler overhead per job", per_job, "(run - trainer alone) / jobs", 0.1);
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 3;
  std::string only;
  std::string scratch;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeat" && i + 1 < argc)
      repeat = std::stoi(argv[++i]);
    else if (arg == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (arg == "--scratch" && i + 1 < argc)
      scratch = argv[++i];
    else {
      std::cerr << "usage: parcae-bench-store [--repeat N] [--only plan|ingest|status|schedule]"
                   " [--scratch DIR]\n";
      return 2;
    }
  }
  const bool keep_scratch = !scratch.empty();  // a folder given is left for inspection
  if (scratch.empty()) {
    std::string pattern = (fs::temp_directory_path() / "parcae-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "parcae-bench-store: cannot create " << pattern << ": " << std::strerror(errno)
                << "\n";
      return 1;
    }
    scratch = pattern;
  }
  std::cout << fmt::format("parcae-bench-store: median of {} runs, scratch {}\n", repeat, scratch);
  try {
    if (only.empty() || only == "plan")
      bench_plan(scratch, repeat);
    if (only.empty() || only == "ingest")
      bench_ingest(scratch, repeat);
    if (only.empty() || only == "status")
      bench_status(scratch, repeat);
    if (only.empty() || only == "schedule")
      bench_schedule(scratch, repeat);
  } catch (const std::exception& e) {
    std::cerr << "parcae-bench-store: " << e.what() << "\n";
    return 1;
  }
  if (!keep_scratch)
    fs::remove_all(scratch);
  return 0;
}
