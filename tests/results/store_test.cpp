// The typed store: recording plans idempotently, atomic claims (also from two connections at
// once), the attempt lifecycle, retry and cancel, fits and export.
#include <atomic>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "results/results.h"
#include "sweeps/error.h"
#include "tests/results/store_fixture.h"
#include "tests/support/scratch_dir.h"

namespace parcae::results {
namespace {

using test_support::local_start;
using test_support::record;
using test_support::ScratchDir;
using test_support::tiny_sweep_json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(RecordPlan, RecordingTheSamePlanTwiceAddsNothing) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  const PlanRecordResult first = record(store, tiny_sweep_json(), dir.file("runs/tiny"));
  EXPECT_EQ(first.inserted, 2);
  const PlanRecordResult second = record(store, tiny_sweep_json(), dir.file("runs/tiny"));
  EXPECT_EQ(second.inserted, 0);
  EXPECT_EQ(second.unchanged, 2);
  const auto jobs = store.jobs("tiny");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].cell, "C2e11-mu2-seed0");
  EXPECT_EQ(jobs[0].state, JobState::kPlanned);
  EXPECT_EQ(jobs[0].budget_id, "2e11");
  EXPECT_EQ(jobs[0].out_dir, dir.file("runs/tiny/" + jobs[0].id));
  EXPECT_EQ(jobs[0].config.at("cell"), "C2e11-mu2-seed0");
}

TEST(RecordPlan, AddingAnAxisValueSchedulesOnlyTheNewCell) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4}), dir.path());
  const PlanRecordResult more = record(store, tiny_sweep_json({2, 4, 6}), dir.path());
  EXPECT_EQ(more.inserted, 1);
  EXPECT_EQ(more.unchanged, 2);
  EXPECT_EQ(store.jobs("tiny").size(), 3u);
  const PlanRecordResult fewer = record(store, tiny_sweep_json({2}), dir.path());
  EXPECT_THAT(fewer.stale_cells, ElementsAre("C2e11-mu4-seed0", "C2e11-mu6-seed0"));
  EXPECT_EQ(store.jobs("tiny").size(), 3u);
}

TEST(RecordPlan, ChangedCellsThatNeverStartedAreReplaced) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4}, 8e-3), dir.path());
  const PlanRecordResult changed = record(store, tiny_sweep_json({2, 4}, 6e-3), dir.path());
  EXPECT_EQ(changed.replaced, 2);
  EXPECT_EQ(changed.inserted, 0);
  const auto jobs = store.jobs("tiny");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_DOUBLE_EQ(jobs[0].config.at("training").at("adamw_lr").get<double>(), 6e-3);
}

TEST(RecordPlan, ChangedCellsThatStartedAreRefusedAndNothingIsWritten) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4}, 8e-3), dir.path());
  const std::string started = store.jobs("tiny")[0].id;
  ASSERT_TRUE(store.claim_job(started, local_start()));
  try {
    record(store, tiny_sweep_json({2, 4, 6}, 6e-3), dir.path());
    FAIL() << "a started cell was silently replaced";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("C2e11-mu2-seed0"));
    EXPECT_THAT(e.what(), HasSubstr("new name"));
  }
  const auto jobs = store.jobs("tiny");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, started);
  EXPECT_DOUBLE_EQ(store.find_sweep("tiny")->spec.at("training").at("adamw_lr").get<double>(),
                   8e-3);
}

TEST(Claims, OnlyOneOfTwoConnectionsClaimsAJob) {
  const ScratchDir dir;
  Store a = Store::open(dir.file("db.sqlite"));
  Store b = Store::open(dir.file("db.sqlite"));
  record(a, tiny_sweep_json(), dir.path());
  const std::string id = a.jobs("tiny")[0].id;
  EXPECT_EQ(a.claim_job(id, local_start("a/1/1")), 1);
  EXPECT_EQ(b.claim_job(id, local_start("b/1/1")), std::nullopt);
  AttemptEnd preempted;
  preempted.outcome = Outcome::kPreempted;
  preempted.exit_code = 143;
  preempted.reason = "preempted";
  preempted.next_state = JobState::kPreempted;
  EXPECT_EQ(a.finish_attempt(id, 1, preempted), JobState::kPreempted);
  EXPECT_EQ(b.claim_job(id, local_start("b/1/1")), 2);
  const auto attempts = a.attempts(id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, Outcome::kPreempted);
  EXPECT_EQ(attempts[0].exit_code, 143);
  EXPECT_EQ(attempts[1].owner, "b/1/1");
  EXPECT_FALSE(attempts[1].ended_at);
}

TEST(Claims, TwoConnectionsRacingOverEveryJobClaimEachExactlyOnce) {
  const ScratchDir dir;
  {
    Store store = Store::open(dir.file("db.sqlite"));
    nlohmann::json sweep = tiny_sweep_json();
    sweep["axes"]["mean_recurrence"] = {{"range", {1, 24, 1}}};
    sweep["plan"]["min_steps"] = 0;
    sweep["plan"]["keep_flagged"] = true;  // mu = 24 misses its budget by more than 1%
    record(store, sweep, dir.path());
  }
  std::atomic<int> claimed{0};
  auto racer = [&](const std::string& owner) {
    Store store = Store::open(dir.file("db.sqlite"));
    for (const auto& job : store.jobs("tiny")) {
      if (store.claim_job(job.id, local_start(owner)))
        ++claimed;
    }
  };
  std::thread first(racer, "a/1/1"), second(racer, "b/2/2");
  first.join();
  second.join();
  const Store store = Store::open(dir.file("db.sqlite"));
  EXPECT_EQ(claimed.load(), 24);
  for (const auto& job : store.jobs("tiny")) {
    EXPECT_EQ(job.state, JobState::kRunning);
    EXPECT_EQ(store.attempts(job.id).size(), 1u) << job.cell;
  }
}

TEST(Open, ConnectionsOpeningOneNewFileAtOnceAllSeeOneParcaeDatabase) {
  // A reader between another's schema creation and its header would see tables without our
  // application id; repeated, so the window is hit when the check is not one snapshot.
  for (int round = 0; round < 40; ++round) {
    const ScratchDir dir;
    const std::string path = dir.file("db.sqlite");
    std::vector<std::string> errors(4);
    std::vector<std::thread> openers;
    for (size_t i = 0; i < errors.size(); ++i) {
      openers.emplace_back([&, i] {
        try {
          const Store store = Store::open(path);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : openers)
      t.join();
    for (const auto& error : errors)
      ASSERT_EQ(error, "") << "round " << round;
    EXPECT_EQ(Store::open(path, Store::Mode::kExisting).opened_version(), kSchemaVersion);
  }
}

TEST(Open, ADatabaseThatCannotUseWriteAheadLoggingIsRefusedNamingIt) {
  try {
    Store::open(":memory:");
    FAIL() << "an in-memory database was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "--db");
    EXPECT_THAT(e.what(), HasSubstr("journal mode 'memory'"));
  }
}

TEST(Lifecycle, FinishingAnAttemptTwiceIsRefused) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json(), dir.path());
  const std::string id = store.jobs("tiny")[0].id;
  ASSERT_EQ(store.claim_job(id, local_start()), 1);
  store.set_attempt_process(id, 1, 4242, "4242/99");
  AttemptEnd done;
  done.outcome = Outcome::kDone;
  done.exit_code = 0;
  done.reason = "trainer finished (done)";
  done.next_state = JobState::kDone;
  EXPECT_EQ(store.finish_attempt(id, 1, done), JobState::kDone);
  EXPECT_EQ(store.finish_attempt(id, 1, done), std::nullopt);
  const auto attempt = store.last_attempt(id);
  EXPECT_EQ(attempt->pid, 4242);
  EXPECT_EQ(attempt->backend_id, "4242/99");
  EXPECT_EQ(store.find_job(id)->state, JobState::kDone);
  // Done jobs are not claimed again.
  EXPECT_EQ(store.claim_job(id, local_start()), std::nullopt);
}

TEST(Lifecycle, FailuresAndPreemptionsAreCountedSeparately) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json(), dir.path());
  const std::string id = store.jobs("tiny")[0].id;
  AttemptEnd failed;
  failed.outcome = Outcome::kFailed;
  failed.exit_code = 1;
  failed.reason = "exit 1: out of memory (will retry)";
  failed.next_state = JobState::kPlanned;
  failed.count_failure = true;
  AttemptEnd preempted;
  preempted.outcome = Outcome::kPreempted;
  preempted.exit_code = 143;
  preempted.next_state = JobState::kPreempted;
  preempted.count_preemption = true;
  ASSERT_EQ(store.claim_job(id, local_start()), 1);
  store.finish_attempt(id, 1, failed);
  ASSERT_EQ(store.claim_job(id, local_start()), 2);
  store.finish_attempt(id, 2, preempted);
  ASSERT_EQ(store.claim_job(id, local_start()), 3);
  store.finish_attempt(id, 3, preempted);
  const auto job = store.find_job(id);
  EXPECT_EQ(job->failures, 1);
  EXPECT_EQ(job->preemptions, 2);
  EXPECT_EQ(job->last_error, "exit 1: out of memory (will retry)");
}

TEST(Lifecycle, CancelledRunningJobStaysCancelledWhenItsAttemptEnds) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json(), dir.path());
  const auto jobs = store.jobs("tiny");
  ASSERT_EQ(store.claim_job(jobs[0].id, local_start()), 1);
  const auto running = store.cancel_jobs({jobs[0].id, jobs[1].id});
  EXPECT_THAT(running, ElementsAre(jobs[0].id));
  EXPECT_EQ(store.find_job(jobs[1].id)->state, JobState::kCancelled);
  AttemptEnd preempted;
  preempted.outcome = Outcome::kPreempted;
  preempted.exit_code = 143;
  preempted.reason = "preempted after saving (exit 143)";
  preempted.next_state = JobState::kPreempted;
  EXPECT_EQ(store.finish_attempt(jobs[0].id, 1, preempted), JobState::kCancelled);
  EXPECT_EQ(store.last_attempt(jobs[0].id)->outcome, Outcome::kCancelled);
  // A cancelled job cannot be claimed until it is retried.
  EXPECT_EQ(store.claim_job(jobs[1].id, local_start()), std::nullopt);
}

TEST(Lifecycle, RetryMovesOnlyFailedAndCancelledJobsWithFreshBudgets) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4, 6}), dir.path());
  const auto jobs = store.jobs("tiny");
  AttemptEnd failed;
  failed.outcome = Outcome::kFailed;
  failed.exit_code = 1;
  failed.next_state = JobState::kFailed;
  failed.count_failure = true;
  ASSERT_TRUE(store.claim_job(jobs[0].id, local_start()));
  store.finish_attempt(jobs[0].id, 1, failed);
  store.cancel_jobs({jobs[1].id});
  const auto moved = store.retry_jobs({jobs[0].id, jobs[1].id, jobs[2].id});
  EXPECT_THAT(moved, ElementsAre(jobs[0].id, jobs[1].id));
  EXPECT_EQ(store.find_job(jobs[0].id)->state, JobState::kPlanned);
  EXPECT_EQ(store.find_job(jobs[0].id)->failures, 0);
  EXPECT_EQ(store.attempts(jobs[0].id).size(), 1u);  // history is kept
  EXPECT_EQ(store.find_job(jobs[1].id)->state, JobState::kPlanned);
}

TEST(Lookup, JobsAreFoundByAUniquePrefixAndCountedByState) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4}), dir.path());
  const auto jobs = store.jobs("tiny");
  EXPECT_EQ(store.find_job(jobs[1].id.substr(0, 12))->id, jobs[1].id);
  EXPECT_FALSE(store.find_job("zzzz"));
  ASSERT_TRUE(store.claim_job(jobs[0].id, local_start()));
  const SweepCounts counts = store.counts("tiny");
  EXPECT_EQ(counts.jobs, 2);
  EXPECT_EQ(counts.by_state.at(JobState::kRunning), 1);
  EXPECT_EQ(counts.by_state.at(JobState::kPlanned), 1);
  EXPECT_EQ(counts.by_state.at(JobState::kDone), 0);
  EXPECT_DOUBLE_EQ(counts.flops_total, jobs[0].achieved_flops + jobs[1].achieved_flops);
  EXPECT_EQ(store.jobs("tiny", {JobState::kRunning}).size(), 1u);
}

TEST(Fits, SavedFitsComeBackWithTheirJobIds) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json(), dir.path());
  FitRecord fit;
  fit.law = "isoflop";
  fit.sweep = "tiny";
  fit.coefficients = {{"a", 0.4}, {"k", 1.5}};
  fit.intervals = {{"a", {0.3, 0.5}}};
  fit.job_ids = {store.jobs("tiny")[0].id};
  fit.details = {{"ci", 0.95}};
  const int64_t id = store.save_fit(fit);
  const auto fits = store.fits("tiny");
  ASSERT_EQ(fits.size(), 1u);
  EXPECT_EQ(fits[0].id, id);
  EXPECT_EQ(fits[0].law, "isoflop");
  EXPECT_DOUBLE_EQ(fits[0].coefficients.at("a").get<double>(), 0.4);
  EXPECT_EQ(fits[0].job_ids, fit.job_ids);
  EXPECT_GT(fits[0].created_at, 0.0);
}

TEST(Export, JobsTableHasOneRowPerJobAndUnknownTablesAreRefused) {
  const ScratchDir dir;
  Store store = Store::open(dir.file("db.sqlite"));
  record(store, tiny_sweep_json({2, 4, 6}), dir.path());
  const Table table = store.export_table("tiny", "jobs");
  ASSERT_EQ(table.rows.size(), 3u);
  EXPECT_EQ(table.columns[0], "job_id");
  EXPECT_EQ(table.columns[1], "cell");
  EXPECT_EQ(table.rows[2][1], "C2e11-mu6-seed0");
  EXPECT_THROW(store.export_table("tiny", "people"), InputError);
}

}  // namespace
}  // namespace parcae::results
