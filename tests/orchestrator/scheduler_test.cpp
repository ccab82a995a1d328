// The scheduler with a fake trainer, in this process: retries, fail-fast on bad input, preemption
// and resume, resuming a `running` job whose process died, adopting a trainer that outlived its
// orchestrator, cancel, and a clean stop on a signal. Each test plans a small sweep of
// parcae-micro cells and scripts what each attempt of each cell does (test_support.h).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "orchestrator/detail/process.h"
#include "orchestrator/orchestrator.h"
#include "results/results.h"
#include "sweeps/error.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::orchestrator {
namespace {

using results::JobState;
using results::Outcome;
using results::Store;
using test_support::plan_actions;
using test_support::ScratchDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Outcome> outcomes(const Store& store, const std::string& job) {
  std::vector<Outcome> out;
  for (const auto& a : store.attempts(job))
    out.push_back(a.outcome);
  return out;
}

std::vector<int64_t> curve_steps(const Store& store, const std::string& job) {
  std::vector<int64_t> out;
  for (const auto& p : store.curve(job))
    out.push_back(p.step);
  return out;
}

class Scheduler : public ::testing::Test {
 protected:
  void SetUp() override {
    trainer_ = test_support::write_fake_trainer(dir_.path());
    plans_ = dir_.file("plans");
    std::filesystem::create_directories(plans_);
    ::setenv("FAKE_PLAN_DIR", plans_.c_str(), 1);
    ::setenv("FAKE_FIFO", fifo_.path().c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("FAKE_PLAN_DIR");
    ::unsetenv("FAKE_FIFO");
  }

  // Plans a sweep over `mus` and returns the job id of each cell, in order.
  std::vector<std::string> plan(const std::vector<int>& mus) {
    PlanOptions options;
    options.sweep_file = test_support::write_sweep(dir_.path(), "tiny", mus);
    options.db_path = db_;
    const PlanOutcome outcome = plan_sweep_file(options);
    std::vector<std::string> ids;
    for (const auto* cell : outcome.plan.jobs())
      ids.push_back(cell->job_id);
    return ids;
  }

  RunOptions run_options() {
    RunOptions options;
    options.db_path = db_;
    options.sweep = "tiny";
    options.trainer = trainer_;
    options.gpus = "none";
    options.poll_interval_s = 0.05;
    options.stop_grace_s = 60;
    options.on_progress = [this](const ProgressEvent& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      events_.push_back(e);
    };
    return options;
  }

  std::vector<ProgressEvent> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }

  ScratchDir dir_;
  std::string db_ = dir_.file("db.sqlite");
  std::string trainer_;
  std::string plans_;
  test_support::BlockFifo fifo_{dir_.file("blocked.fifo")};
  std::mutex mutex_;
  std::vector<ProgressEvent> events_;
};

TEST_F(Scheduler, EveryPlannedJobRunsOnceAndEndsDoneWithItsRows) {
  const auto ids = plan({2, 4, 6});
  RunOptions options = run_options();
  options.max_parallel = 2;
  const RunSummary summary = run_sweep(options);
  EXPECT_EQ(summary.exit_code(), 0);
  EXPECT_EQ(summary.launched, 3);
  EXPECT_EQ(summary.counts.at(JobState::kDone), 3);
  const Store store = Store::open(db_);
  for (const auto& id : ids) {
    const auto job = store.find_job(id);
    EXPECT_EQ(job->state, JobState::kDone);
    EXPECT_EQ(job->loss_val, 11.25);
    EXPECT_THAT(curve_steps(store, id), ElementsAre(1, 2, 3, 4, 5, 6));
    EXPECT_EQ(store.evaluations(id).size(), 3u);
    const auto attempts = store.attempts(id);
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].exit_code, 0);
    EXPECT_EQ(attempts[0].gpu_model, "cpu");
    EXPECT_EQ(attempts[0].devices, "");
    EXPECT_TRUE(attempts[0].pid);
    EXPECT_TRUE(std::filesystem::exists(job->out_dir + "/job.json"));
    EXPECT_TRUE(std::filesystem::exists(job->out_dir + "/trainer.log"));
  }
  // A second run has nothing to do.
  const RunSummary again = run_sweep(run_options());
  EXPECT_EQ(again.launched, 0);
  EXPECT_EQ(again.exit_code(), 0);
}

TEST_F(Scheduler, FailedAttemptsAreRetriedUntilOneSucceeds) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"fail", "fail", "ok"});
  RunOptions options = run_options();
  options.retries = 2;
  EXPECT_EQ(run_sweep(options).exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_THAT(outcomes(store, ids[0]),
              ElementsAre(Outcome::kFailed, Outcome::kFailed, Outcome::kDone));
  const auto attempts = store.attempts(ids[0]);
  EXPECT_EQ(attempts[0].exit_code, 1);
  EXPECT_THAT(*attempts[0].reason, HasSubstr("exit 1: simulated crash (will retry)"));
  EXPECT_EQ(store.find_job(ids[0])->state, JobState::kDone);
  EXPECT_EQ(store.find_job(ids[0])->failures, 2);
}

TEST_F(Scheduler, AJobThatKeepsFailingGivesUpAfterItsRetries) {
  const auto ids = plan({2, 4});
  plan_actions(plans_, "C2e11-mu2-seed0", {"fail"});
  RunOptions options = run_options();
  options.retries = 1;
  const RunSummary summary = run_sweep(options);
  EXPECT_EQ(summary.exit_code(), 1);
  EXPECT_EQ(summary.counts.at(JobState::kFailed), 1);
  EXPECT_EQ(summary.counts.at(JobState::kDone), 1);
  const Store store = Store::open(db_);
  EXPECT_THAT(outcomes(store, ids[0]), ElementsAre(Outcome::kFailed, Outcome::kFailed));
  EXPECT_THAT(*store.last_attempt(ids[0])->reason,
              HasSubstr("attempt failed 2 times; --retries 1"));
  EXPECT_EQ(store.find_job(ids[0])->state, JobState::kFailed);
}

TEST_F(Scheduler, BadInputFailsAtOnceWithoutRetrying) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"bad", "ok"});
  RunOptions options = run_options();
  options.retries = 5;
  EXPECT_EQ(run_sweep(options).exit_code(), 1);
  const Store store = Store::open(db_);
  const auto attempts = store.attempts(ids[0]);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].exit_code, 2);
  EXPECT_THAT(*attempts[0].reason, HasSubstr("bad input (exit 2): job.json: model.d_model = 0"));
  EXPECT_THAT(*attempts[0].reason, HasSubstr("not retried"));
}

TEST_F(Scheduler, ExitZeroWithoutADoneEventIsAFailedAttempt) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"nodone", "ok"});
  EXPECT_EQ(run_sweep(run_options()).exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_THAT(outcomes(store, ids[0]), ElementsAre(Outcome::kFailed, Outcome::kDone));
  EXPECT_THAT(*store.attempts(ids[0])[0].reason, HasSubstr("exit 0 without a done event"));
}

TEST_F(Scheduler, DivergedRunsEndDivergedAndAreNotFailures) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"diverge"});
  const RunSummary summary = run_sweep(run_options());
  EXPECT_EQ(summary.exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_EQ(store.find_job(ids[0])->state, JobState::kDiverged);
  EXPECT_THAT(outcomes(store, ids[0]), ElementsAre(Outcome::kDiverged));
}

TEST_F(Scheduler, PreemptedJobsResumeFromTheirCheckpointWithoutCountingAsFailures) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"preempt", "preempt", "ok"});
  RunOptions options = run_options();
  options.retries = 0;
  EXPECT_EQ(run_sweep(options).exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_THAT(outcomes(store, ids[0]),
              ElementsAre(Outcome::kPreempted, Outcome::kPreempted, Outcome::kDone));
  EXPECT_EQ(store.attempts(ids[0])[0].exit_code, 143);
  const auto job = store.find_job(ids[0]);
  EXPECT_EQ(job->state, JobState::kDone);
  EXPECT_EQ(job->failures, 0);
  EXPECT_EQ(job->preemptions, 2);
  // Step 4 came after the checkpoint at 3 and was replayed twice: still one row per step.
  EXPECT_THAT(curve_steps(store, ids[0]), ElementsAre(1, 2, 3, 4, 5, 6));
  const auto provenance = store.provenance(ids[0]);
  ASSERT_EQ(provenance.size(), 3u);
  EXPECT_FALSE(provenance[0].resumed);
  EXPECT_TRUE(provenance[1].resumed);
  EXPECT_TRUE(provenance[2].resumed);
}

TEST_F(Scheduler, PreemptionsBeyondTheirBudgetFailTheJob) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"preempt"});
  RunOptions options = run_options();
  options.preemption_retries = 2;
  EXPECT_EQ(run_sweep(options).exit_code(), 1);
  const Store store = Store::open(db_);
  EXPECT_EQ(store.attempts(ids[0]).size(), 3u);
  EXPECT_THAT(*store.last_attempt(ids[0])->reason, HasSubstr("gave up after 3 interruptions"));
}

TEST_F(Scheduler, ARunningJobWhoseProcessDiedIsResumedFromItsCheckpoint) {
  const auto ids = plan({2, 4});
  // A previous orchestrator claimed the job, its trainer checkpointed at step 3, wrote step 4,
  // and both died: neither process exists any more.
  {
    Store store = Store::open(db_);
    results::AttemptStart start;
    start.host = detail::host_name();
    start.owner = detail::host_name() + "/999999999/1";
    start.gpu_model = "cpu";
    ASSERT_EQ(store.claim_job(ids[0], start), 1);
    store.set_attempt_process(ids[0], 1, 999999999, "999999999/1");
    const std::string out = store.find_job(ids[0])->out_dir;
    test_support::write_text(out + "/checkpoint/step", "3\n");
    std::string events;
    for (int step = 1; step <= 4; ++step) {
      events += "{\"event\":\"step\",\"time\":1,\"step\":" + std::to_string(step) +
                ",\"tokens\":" + std::to_string(step * 4096) + ",\"flops\":1,\"loss\":99.5}\n";
    }
    test_support::write_text(out + "/events.jsonl", events);
  }
  EXPECT_EQ(run_sweep(run_options()).exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_THAT(outcomes(store, ids[0]), ElementsAre(Outcome::kLost, Outcome::kDone));
  EXPECT_THAT(*store.attempts(ids[0])[0].reason, HasSubstr("process gone"));
  EXPECT_EQ(store.find_job(ids[0])->preemptions, 1);
  EXPECT_THAT(curve_steps(store, ids[0]), ElementsAre(1, 2, 3, 4, 5, 6));
  // Steps 1-3 are the dead attempt's, 4-6 the resumed one's (step 4 replaced).
  EXPECT_EQ(store.curve(ids[0])[2].loss, 99.5);
  EXPECT_EQ(store.curve(ids[0])[3].loss, 16.5);
  ASSERT_EQ(store.provenance(ids[0]).size(), 1u);
  EXPECT_TRUE(store.provenance(ids[0])[0].resumed);
  EXPECT_EQ(store.find_job(ids[1])->state, JobState::kDone);
}

TEST_F(Scheduler, ATrainerThatOutlivedItsOrchestratorIsAdoptedNotRunTwice) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"block", "ok"});
  Store store = Store::open(db_);
  const auto job = store.find_job(ids[0]);
  results::AttemptStart start;
  start.host = detail::host_name();
  start.owner = detail::host_name() + "/999999999/1";  // an orchestrator that is gone
  ASSERT_EQ(store.claim_job(ids[0], start), 1);
  std::filesystem::create_directories(job->out_dir);
  sweeps::write_job_file(sweeps::job_config_from_json(job->config, "db"),
                         job->out_dir + "/job.json");
  // The orphaned trainer, started here as the dead orchestrator would have.
  std::vector<std::string> args = {
      trainer_, "--job", job->out_dir + "/job.json", "--out", job->out_dir};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, trainer_.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  store.set_attempt_process(ids[0], 1, pid, detail::process_identity(pid));
  fifo_.wait_for(1);

  RunOptions options = run_options();
  std::promise<void> adopted;
  auto record = options.on_progress;
  options.on_progress = [&](const ProgressEvent& e) {
    record(e);
    if (e.kind == ProgressEvent::Kind::kAdopted)
      adopted.set_value();
  };
  auto run = std::async(std::launch::async, [&] { return run_sweep(options); });
  adopted.get_future().wait();
  // The adopted trainer is preempted: its exit status is unknown to a non-parent, so the job is
  // resumed from its checkpoint by a second attempt, which starts only after the first ended.
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const RunSummary summary = run.get();
  EXPECT_EQ(summary.adopted, 1);
  EXPECT_EQ(summary.launched, 1);
  const auto attempts = store.attempts(ids[0]);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, Outcome::kLost);
  EXPECT_FALSE(attempts[0].exit_code);
  EXPECT_EQ(attempts[1].outcome, Outcome::kDone);
  EXPECT_GE(attempts[1].started_at, *attempts[0].ended_at);
  EXPECT_FALSE(std::filesystem::exists(job->out_dir + "/overlaps"));
  EXPECT_THAT(curve_steps(store, ids[0]), ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST_F(Scheduler, CancelStopsARunningTrainerAndKeepsItsRows) {
  const auto ids = plan({2, 4});
  plan_actions(plans_, "C2e11-mu2-seed0", {"block"});
  RunOptions options = run_options();
  options.max_parallel = 2;
  auto run = std::async(std::launch::async, [&] { return run_sweep(options); });
  fifo_.wait_for(1);
  const CancelResult cancelled = cancel(db_, {ids[0]}, 30);
  EXPECT_THAT(cancelled.cancelled, ElementsAre(ids[0]));
  EXPECT_THAT(cancelled.stopped, ElementsAre(ids[0]));
  EXPECT_TRUE(cancelled.killed.empty());
  const RunSummary summary = run.get();
  EXPECT_EQ(summary.exit_code(), 0);
  const Store store = Store::open(db_);
  const auto job = store.find_job(ids[0]);
  EXPECT_EQ(job->state, JobState::kCancelled);
  EXPECT_THAT(outcomes(store, ids[0]), ElementsAre(Outcome::kCancelled));
  EXPECT_EQ(store.last_attempt(ids[0])->exit_code, 143);
  EXPECT_THAT(curve_steps(store, ids[0]), ElementsAre(1, 2));
  EXPECT_EQ(store.find_job(ids[1])->state, JobState::kDone);
  // Cancelled planned jobs never start, and retry brings a cancelled job back.
  EXPECT_THAT(retry(db_, {ids[0]}), ElementsAre(ids[0]));
  plan_actions(plans_, "C2e11-mu2-seed0", {"ok"});
  EXPECT_EQ(run_sweep(run_options()).exit_code(), 0);
  EXPECT_EQ(Store::open(db_).find_job(ids[0])->state, JobState::kDone);
}

// The first attempt writes two steps and then nothing, for ever: after --silence-limit it is
// killed, and the retry finishes. A slow machine can only make an attempt look silent late, never
// early, so only the hung attempt's row is asserted, not how many attempts the retry took.
TEST_F(Scheduler, ATrainerSilentPastTheLimitIsKilledAndRetried) {
  const auto ids = plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"hang", "ok"});
  RunOptions options = run_options();
  // Far above the quiet stretches of the scripted trainer that follows, even on a busy machine;
  // a healthy attempt killed all the same would only cost a retry.
  options.silence_limit_s = 5;
  options.retries = 10;
  const RunSummary summary = run_sweep(options);
  EXPECT_EQ(summary.exit_code(), 0);
  const Store store = Store::open(db_);
  EXPECT_EQ(store.find_job(ids[0])->state, JobState::kDone);
  const auto attempts = store.attempts(ids[0]);
  ASSERT_GE(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, Outcome::kFailed);
  EXPECT_EQ(attempts[0].exit_code, 128 + SIGKILL);
  EXPECT_THAT(attempts[0].reason.value_or(""), HasSubstr("(--silence-limit): taken for hung"));
  EXPECT_EQ(attempts.back().outcome, Outcome::kDone);
  EXPECT_THAT(curve_steps(store, ids[0]), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST_F(Scheduler, AStopSignalLetsTrainersSaveAndTheNextRunFinishes) {
  const auto ids = plan({2, 4, 6});
  plan_actions(plans_, "C2e11-mu2-seed0", {"block", "ok"});
  plan_actions(plans_, "C2e11-mu4-seed0", {"block", "ok"});
  std::atomic<int> stop{0};
  RunOptions options = run_options();
  options.max_parallel = 2;
  options.stop_signal = &stop;
  auto run = std::async(std::launch::async, [&] { return run_sweep(options); });
  fifo_.wait_for(2);
  stop.store(SIGTERM);
  const RunSummary summary = run.get();
  EXPECT_EQ(summary.stopped_by_signal, SIGTERM);
  EXPECT_EQ(summary.exit_code(), 128 + SIGTERM);
  {
    const Store store = Store::open(db_);
    for (const auto& id : {ids[0], ids[1]}) {
      const auto job = store.find_job(id);
      EXPECT_EQ(job->state, JobState::kPreempted);
      EXPECT_EQ(job->preemptions, 0);  // our own stop is not the job's fault
      EXPECT_EQ(store.last_attempt(id)->exit_code, 143);
      EXPECT_THAT(*store.last_attempt(id)->reason,
                  HasSubstr("stopped by the orchestrator after saving"));
      EXPECT_EQ(job->checkpoint_step, 2);
    }
    // Nothing new was dispatched after the signal.
    EXPECT_EQ(store.find_job(ids[2])->state, JobState::kPlanned);
  }
  const RunSummary rest = run_sweep(run_options());
  EXPECT_EQ(rest.exit_code(), 0);
  const Store store = Store::open(db_);
  for (const auto& id : ids) {
    EXPECT_EQ(store.find_job(id)->state, JobState::kDone);
    EXPECT_THAT(curve_steps(store, id), ElementsAre(1, 2, 3, 4, 5, 6));
  }
  EXPECT_TRUE(store.provenance(ids[0]).back().resumed);
}

TEST_F(Scheduler, LinesThatAreNotEventsAreReportedAsProgress) {
  plan({2});
  plan_actions(plans_, "C2e11-mu2-seed0", {"garbage"});
  EXPECT_EQ(run_sweep(run_options()).exit_code(), 0);
  bool reported = false;
  for (const auto& e : events()) {
    if (e.kind == ProgressEvent::Kind::kBadEvents) {
      reported = true;
      EXPECT_THAT(e.message, HasSubstr("line 3: not valid JSON"));
    }
  }
  EXPECT_TRUE(reported);
}

TEST_F(Scheduler, ProgressReportsEveryStateChangeWithCounts) {
  plan({2, 4});
  run_sweep(run_options());
  int started = 0, finished = 0;
  for (const auto& e : events()) {
    if (e.kind == ProgressEvent::Kind::kStarted)
      ++started;
    if (e.kind == ProgressEvent::Kind::kFinished) {
      ++finished;
      EXPECT_EQ(e.state, JobState::kDone);
      EXPECT_EQ(e.jobs, 2);
    }
  }
  EXPECT_EQ(started, 2);
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(events().back().counts.at(JobState::kDone), 2);
}

TEST_F(Scheduler, DryRunListsWhatWouldRunAndWritesNothing) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  RunOptions options = run_options();
  options.sweep = file;
  options.dry_run = true;
  const RunSummary summary = run_sweep(options);
  std::vector<std::string> cells;
  for (const auto& launch : summary.would_launch)
    cells.push_back(launch.cell);
  EXPECT_THAT(cells, ElementsAre("C2e11-mu2-seed0", "C2e11-mu4-seed0"));
  EXPECT_FALSE(std::filesystem::exists(db_));
}

TEST_F(Scheduler, ASweepFileIsPlannedBeforeItRuns) {
  RunOptions options = run_options();
  options.sweep = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  EXPECT_EQ(run_sweep(options).exit_code(), 0);
  EXPECT_EQ(Store::open(db_).counts("tiny").by_state.at(JobState::kDone), 2);
}

TEST_F(Scheduler, AMissingTrainerIsBadInputAndNothingIsClaimed) {
  plan({2});
  RunOptions options = run_options();
  options.trainer = dir_.file("no-such-trainer");
  EXPECT_THROW(run_sweep(options), InputError);
  EXPECT_EQ(Store::open(db_).counts("tiny").by_state.at(JobState::kPlanned), 1);
}

}  // namespace
}  // namespace parcae::orchestrator
