// Seeded fault injection on a real CPU sweep: parcae-scale runs two cells of parcae-micro with the
// real parcae-train, and each trial hits it at a random moment with one fault: SIGKILL of the
// orchestrator, of its trainers or of both; SIGTERM, SIGINT or SIGHUP to the orchestrator; a
// trainer frozen with SIGSTOP (hung: no more events), which --silence-limit (four times the
// longest quiet stretch of a healthy trainer in the reference run) must find, kill and retry; or a
// second orchestrator started on the same database. A plain `sweep run` then finishes the sweep,
// and the database must hold what an uninterrupted run of the same sweep holds: every cell done by
// exactly one successful attempt, no two attempts of a cell at once, integrity_check ok, and the
// same curves, evaluations and final losses to the last bit (the trainer resumes bitwise on the
// CPU: tests/trainer/training_test.cpp).
//
// A moment is a number of step events written by the trainers, drawn between none and all of
// them, plus up to 150 ms: it is a point in the sweep's work, not in wall time, so a slow machine
// moves the faults with the work. Each run of the suite draws a new seed and prints it; set
// PARCAE_FAULT_SEED to replay a run, and PARCAE_FAULT_TRIALS to change the number of trials
// (default 24, three of each kind).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "orchestrator/detail/process.h"
#include "results/results.h"
#include "sweeps/error.h"
#include "sweeps/token_shards.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

namespace fs = std::filesystem;
using results::JobState;
using results::Store;
using test_support::ScratchDir;

// parcae-scale with its output in a log file, so that nothing blocks on a pipe the test is not
// reading while it waits for a moment.
class Orchestrator {
 public:
  Orchestrator(const std::vector<std::string>& args, const std::string& log) {
    test_support::ExecArguments exec(test_support::cli_path(), args, {{"OMP_NUM_THREADS", "1"}});
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
      ::_exit(127);
    }
    ::close(fd);
  }
  ~Orchestrator() {
    if (!exit_code_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  void signal(int signal_number) const { ::kill(pid_, signal_number); }
  bool running() {
    if (exit_code_)
      return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_)
      return true;
    exit_code_ = decode(status);
    return false;
  }
  int wait() {
    if (!exit_code_) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exit_code_ = decode(status);
    }
    return *exit_code_;
  }

 private:
  static int decode(int status) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

enum class Fault {
  kKillOrchestrator,
  kKillTrainers,
  kKillBoth,
  kSigterm,
  kSigint,
  kSighup,
  kHangTrainer,
  kSecondOrchestrator,
};
constexpr int kFaultKinds = 8;

const char* fault_name(Fault fault) {
  switch (fault) {
    case Fault::kKillOrchestrator:
      return "SIGKILL orchestrator";
    case Fault::kKillTrainers:
      return "SIGKILL trainers";
    case Fault::kKillBoth:
      return "SIGKILL orchestrator and trainers";
    case Fault::kSigterm:
      return "SIGTERM orchestrator";
    case Fault::kSigint:
      return "SIGINT orchestrator";
    case Fault::kSighup:
      return "SIGHUP orchestrator";
    case Fault::kHangTrainer:
      return "SIGSTOP a trainer (hung)";
    case Fault::kSecondOrchestrator:
      return "second orchestrator on the database";
  }
  return "?";
}

// What must be the same however the sweep was interrupted: per cell, its state and final numbers,
// its curve and its evaluations, losses to the last bit (%a), times excluded.
std::string results_dump(const std::string& db) {
  const Store store = Store::open(db, Store::Mode::kExisting);
  std::ostringstream out;
  const auto bits = [](const std::optional<double>& v) {
    char text[64];
    std::snprintf(text, sizeof(text), "%a", v.value_or(-1.0));
    return std::string(text);
  };
  for (const auto& job : store.jobs("faults")) {
    out << job.cell << " " << results::to_string(job.state) << " " << job.final_status.value_or("-")
        << " " << job.steps << " " << bits(job.loss_val) << "\n";
    for (const auto& p : store.curve(job.id))
      out << "  step " << p.step << " " << p.tokens << " " << bits(p.loss) << "\n";
    for (const auto& e : store.evaluations(job.id))
      out << "  eval " << e.step << " " << e.depth << " " << bits(e.loss) << "\n";
  }
  return out.str();
}

// Step events the trainers of a sweep have written so far, replays included.
int64_t step_events(const std::string& runs_dir) {
  int64_t count = 0;
  std::error_code error;
  // Checkpoint folders come and go while it looks: an error ends the look, not the test.
  for (auto it = fs::recursive_directory_iterator(runs_dir, error);
       !error && it != fs::recursive_directory_iterator();
       it.increment(error)) {
    if (it->path().filename() != "events.jsonl")
      continue;
    std::istringstream lines(test_support::read_text(it->path().string()));
    std::string line;
    while (std::getline(lines, line))
      count += line.find("\"event\":\"step\"") != std::string::npos ? 1 : 0;
  }
  return count;
}

// Whether `pid` is stopped (state T in /proc/<pid>/stat).
bool stopped(pid_t pid) {
  const std::string stat = test_support::read_text("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T';
}

// The process groups of the trainers the database says are running, each checked against its
// recorded start time so that a reused pid is never signalled.
std::vector<pid_t> running_trainers(const std::string& db) {
  std::vector<pid_t> out;
  std::optional<Store> opened;
  try {
    opened.emplace(Store::open(db, Store::Mode::kExisting));
  } catch (const Error&) {
    return out;  // not created yet: nothing runs
  }
  const Store& store = *opened;
  for (const auto& job : store.jobs("faults", {JobState::kRunning})) {
    const auto attempt = store.last_attempt(job.id);
    if (!attempt || attempt->ended_at || !attempt->backend_id)
      continue;
    const std::string& identity = *attempt->backend_id;  // "<pid>/<start ticks>"
    const pid_t pid = static_cast<pid_t>(std::stoll(identity.substr(0, identity.find('/'))));
    if (orchestrator::detail::process_identity(pid) == identity)
      out.push_back(pid);
  }
  return out;
}

// The longest a trainer of a finished sweep went without writing an event: from its launch to
// its first event, or between two events. It measures how quiet a healthy trainer is on this
// machine, under its present load.
double longest_silence_s(const std::string& db) {
  const Store store = Store::open(db, Store::Mode::kExisting);
  double longest = 0.0;
  for (const auto& job : store.jobs("faults")) {
    double previous = store.attempts(job.id).front().started_at;
    std::istringstream lines(test_support::read_text(job.out_dir + "/events.jsonl"));
    std::string line;
    while (std::getline(lines, line)) {
      const auto event = nlohmann::json::parse(line, nullptr, false);
      if (event.is_discarded() || !event.contains("time") || !event["time"].is_number())
        continue;
      const double time = event["time"].get<double>();
      longest = std::max(longest, time - previous);
      previous = time;
    }
  }
  return longest;
}

class FaultInjection : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new ScratchDir();
    std::string text;
    for (int i = 0; text.size() < 200000; ++i) {
      text += "In the beginning " + std::to_string(i % 97) + " was the word, and the word was " +
              std::to_string((i * 7) % 13) + ".\n";
    }
    const auto tokens = sweeps::encode_bytes(text);
    const size_t split = tokens.size() * 9 / 10;
    sweeps::write_token_shard(data_->file("train_000000.bin"),
                              {tokens.begin(), tokens.begin() + split});
    sweeps::write_token_shard(data_->file("val_000000.bin"),
                              {tokens.begin() + split, tokens.end()});
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }

  // Two cells of parcae-micro at context 32 (1,024-token steps, about 12 and 19 steps), a
  // checkpoint every 4 steps, evaluated at depths 1 and 2.
  static std::string write_sweep(const std::string& dir) {
    const nlohmann::json sweep = {
        {"name", "faults"},
        {"data", {{"train", data_->file("train_*.bin")}, {"val", data_->file("val_*.bin")}}},
        {"model", "parcae-micro"},
        {"budgets", {{{"id", "5e9"}, {"flops", 5e9}}}},
        {"axes", {{"mean_recurrence", {"1-fixed", 2}}}},
        {"training", {{"batch_tokens", 1024}, {"micro_batch_size", 32}, {"precision", "fp32"}}},
        {"eval", {{"depths", {1, 2}}, {"val_sequences", 16}}},
        {"device", "cpu"},
        {"checkpoint_interval_steps", 4},
        {"plan", {{"min_steps", 10}, {"max_flop_gap", 0.1}}}};
    const std::string file = dir + "/faults.json";
    test_support::write_text(file, sweep.dump(2));
    return file;
  }

  static std::vector<std::string> run_command(const std::string& dir,
                                              const std::vector<std::string>& extra = {}) {
    std::vector<std::string> command = {"--db",
                                        dir + "/faults.sqlite",
                                        "sweep",
                                        "run",
                                        dir + "/faults.json",
                                        "--trainer",
                                        PARCAE_TRAINER_PATH,
                                        "--max-parallel",
                                        "2",
                                        "--poll-interval",
                                        "0.1",
                                        // Faults cost failed attempts; the budget is not the
                                        // subject here.
                                        "--retries",
                                        "20"};
    command.insert(command.end(), extra.begin(), extra.end());
    return command;
  }

  static ScratchDir* data_;
};

ScratchDir* FaultInjection::data_ = nullptr;

// Every cell done by exactly one successful attempt, attempts of a cell one after another, an
// intact database, and the rows of the uninterrupted run.
void expect_invariants(const std::string& db, const std::string& reference) {
  const Store store = Store::open(db, Store::Mode::kExisting);
  EXPECT_EQ(store.integrity_check(), "ok");
  const auto jobs = store.jobs("faults");
  ASSERT_EQ(jobs.size(), 2u);
  for (const auto& job : jobs) {
    SCOPED_TRACE(job.cell);
    EXPECT_EQ(job.state, JobState::kDone);
    int done = 0;
    std::optional<double> previous_end;
    for (const auto& attempt : store.attempts(job.id)) {
      done += attempt.outcome == results::Outcome::kDone ? 1 : 0;
      ASSERT_TRUE(attempt.ended_at) << "attempt " << attempt.attempt << " never ended";
      if (previous_end) {
        EXPECT_GE(attempt.started_at, *previous_end) << "attempt " << attempt.attempt;
      }
      previous_end = attempt.ended_at;
    }
    EXPECT_EQ(done, 1);
  }
  EXPECT_EQ(results_dump(db), reference);
}

TEST_F(FaultInjection, RandomFaultsAtRandomMomentsLoseNothing) {
  const char* seed_text = std::getenv("PARCAE_FAULT_SEED");
  const uint64_t seed = seed_text != nullptr
                            ? std::strtoull(seed_text, nullptr, 10)
                            : (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  const char* trials_text = std::getenv("PARCAE_FAULT_TRIALS");
  const int trials = trials_text != nullptr ? std::atoi(trials_text) : 3 * kFaultKinds;
  std::printf("fault injection: %d trials, seed %" PRIu64 " (PARCAE_FAULT_SEED=%" PRIu64
              " replays them)\n",
              trials,
              seed,
              seed);
  std::fflush(stdout);
  RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 random(seed);

  const ScratchDir clean;
  write_sweep(clean.path());
  {
    Orchestrator run(run_command(clean.path()), clean.file("log"));
    ASSERT_EQ(run.wait(), 0) << test_support::read_text(clean.file("log"));
  }
  const std::string reference = results_dump(clean.file("faults.sqlite"));
  const int64_t total_steps = step_events(clean.file("runs"));
  ASSERT_GT(total_steps, 20);
  // The silence limit of the hung-trainer trials: far above the quietest stretch of a healthy
  // trainer here (a slow or busy machine raises both), so that only the frozen one reaches it. A
  // healthy trainer killed all the same would cost an attempt, not the invariants.
  const std::string silence_limit = std::to_string(
      static_cast<int>(std::max(10.0, 4 * longest_silence_s(clean.file("faults.sqlite")))));
  std::printf("fault injection: --silence-limit %s for the hung trainers\n", silence_limit.c_str());

  std::map<std::string, int> tried;
  for (int trial = 0; trial < trials; ++trial) {
    const Fault fault = static_cast<Fault>(trial % kFaultKinds);
    const bool stop_signal =
        fault == Fault::kSigterm || fault == Fault::kSigint || fault == Fault::kSighup;
    // A stop signal is tested from the first step on: before it, the orchestrator may still be
    // planning, before its handlers are in place, where a signal's default action is the norm.
    const int64_t moment_steps =
        std::uniform_int_distribution<int64_t>(stop_signal ? 1 : 0, total_steps - 1)(random);
    const int jitter_ms = std::uniform_int_distribution<int>(0, 150)(random);
    SCOPED_TRACE(::testing::Message()
                 << "trial " << trial << ": " << fault_name(fault) << " after " << moment_steps
                 << " step events + " << jitter_ms << " ms (PARCAE_FAULT_SEED=" << seed << ")");
    const ScratchDir dir;
    write_sweep(dir.path());
    const std::string db = dir.file("faults.sqlite");
    const std::string log = dir.file("log");
    // A hung trainer is found only by the silence limit; elsewhere a limit this short would only
    // kill healthy trainers on a busy machine.
    const std::vector<std::string> extra =
        fault == Fault::kHangTrainer ? std::vector<std::string>{"--silence-limit", silence_limit}
                                     : std::vector<std::string>{};
    std::optional<Orchestrator> victim(std::in_place, run_command(dir.path(), extra), log);
    while (victim->running() && step_events(dir.file("runs")) < moment_steps)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter_ms));

    bool finish_with_victim = false;
    switch (fault) {
      case Fault::kKillOrchestrator:
        victim->signal(SIGKILL);
        break;
      case Fault::kKillTrainers:
        for (const pid_t pid : running_trainers(db))
          ::kill(-pid, SIGKILL);
        finish_with_victim = true;  // the orchestrator retries them itself
        break;
      case Fault::kKillBoth: {
        const auto trainers = running_trainers(db);
        victim->signal(SIGKILL);
        for (const pid_t pid : trainers)
          ::kill(-pid, SIGKILL);
        break;
      }
      case Fault::kSigterm:
      case Fault::kSigint:
      case Fault::kSighup: {
        const int signal_number = fault == Fault::kSigterm  ? SIGTERM
                                  : fault == Fault::kSigint ? SIGINT
                                                            : SIGHUP;
        victim->signal(signal_number);
        const int code = victim->wait();
        // 0 only when the sweep ended between the moment and the signal.
        EXPECT_THAT(code, ::testing::AnyOf(0, 128 + signal_number)) << test_support::read_text(log);
        if (code == 128 + signal_number) {
          EXPECT_THAT(test_support::read_text(log),
                      ::testing::HasSubstr("stopping on signal " + std::to_string(signal_number)));
          // It waited for its trainers: none is left running.
          EXPECT_TRUE(running_trainers(db).empty());
        }
        break;
      }
      case Fault::kHangTrainer: {
        const auto trainers = running_trainers(db);
        if (!trainers.empty())
          ::kill(-trainers.front(), SIGSTOP);
        // A trainer that exited just before the signal cannot hang; one that stopped must be
        // found by the silence limit.
        const bool hung = !trainers.empty() && stopped(trainers.front());
        finish_with_victim = true;
        const int code = victim->wait();
        EXPECT_EQ(code, 0) << test_support::read_text(log);
        if (hung) {
          EXPECT_THAT(test_support::read_text(log),
                      ::testing::HasSubstr("(--silence-limit " + silence_limit + ")"));
        }
        break;
      }
      case Fault::kSecondOrchestrator: {
        Orchestrator second(run_command(dir.path()), dir.file("second.log"));
        EXPECT_EQ(second.wait(), 0) << test_support::read_text(dir.file("second.log"));
        finish_with_victim = true;
        break;
      }
    }
    if (finish_with_victim) {
      EXPECT_EQ(victim->wait(), 0) << test_support::read_text(log);
    } else {
      victim->wait();
    }
    victim.reset();
    // The plain rerun that must finish whatever the fault left.
    {
      Orchestrator rerun(run_command(dir.path()), dir.file("rerun.log"));
      ASSERT_EQ(rerun.wait(), 0) << test_support::read_text(dir.file("rerun.log"));
    }
    // A second orchestrator can finish the sweep while the first still waits for trainers it
    // adopted; by now both have exited, so no trainer of this sweep may be left.
    EXPECT_TRUE(running_trainers(db).empty());
    expect_invariants(db, reference);
    ++tried[fault_name(fault)];
    if (HasFatalFailure() || HasNonfatalFailure())
      break;
  }
  std::printf("fault injection: %d trials (seed %" PRIu64 "), nothing lost:", trials, seed);
  for (const auto& [name, count] : tried)
    std::printf(" %s x%d;", name.c_str(), count);
  std::printf("\n");
}

}  // namespace
}  // namespace parcae::cli
