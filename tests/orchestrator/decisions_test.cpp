// The scheduler's pure parts: how an attempt's end is judged from its exit code and events, the
// GPU list flag, slot packing, the trainer lookup and process identities.
#include <unistd.h>

#include <cstdlib>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "orchestrator/detail/process.h"
#include "orchestrator/detail/resources.h"
#include "orchestrator/detail/scheduler.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::orchestrator {
namespace {

using detail::decide_attempt_end;
using detail::ExitFacts;
using results::JobState;
using results::Outcome;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ExitFacts exited(std::optional<int> code, std::optional<std::string> status = std::nullopt) {
  ExitFacts facts;
  facts.exit_code = code;
  facts.final_status = status;
  return facts;
}

TEST(AttemptEnd, ExitZeroWithADoneEventIsDoneOrDiverged) {
  auto end = decide_attempt_end(exited(0, "done"), {});
  EXPECT_EQ(end.outcome, Outcome::kDone);
  EXPECT_EQ(end.next_state, JobState::kDone);
  EXPECT_FALSE(end.count_failure);
  end = decide_attempt_end(exited(0, "diverged"), {});
  EXPECT_EQ(end.outcome, Outcome::kDiverged);
  EXPECT_EQ(end.next_state, JobState::kDiverged);
}

TEST(AttemptEnd, FailuresAreRetriedWithinTheBudgetThenFail) {
  ExitFacts facts = exited(1);
  facts.failures = 1;
  auto end = decide_attempt_end(facts, {2, 100});
  EXPECT_EQ(end.next_state, JobState::kPlanned);
  EXPECT_TRUE(end.count_failure);
  facts.failures = 2;
  end = decide_attempt_end(facts, {2, 100});
  EXPECT_EQ(end.next_state, JobState::kFailed);
  EXPECT_THAT(end.reason, HasSubstr("attempt failed 3 times; --retries 2"));
}

TEST(AttemptEnd, ATrainerKilledForSilenceIsARetriedFailureThatSaysWhy) {
  ExitFacts facts = exited(128 + 9);
  facts.silent_s = 61.4;
  auto end = decide_attempt_end(facts, {2, 100});
  EXPECT_EQ(end.outcome, Outcome::kFailed);
  EXPECT_EQ(end.next_state, JobState::kPlanned);
  EXPECT_TRUE(end.count_failure);
  EXPECT_THAT(end.reason, HasSubstr("no event for 61 s (--silence-limit)"));
  // A done event that came in before the kill landed wins: the run finished.
  facts.final_status = "done";
  facts.exit_code = 0;
  end = decide_attempt_end(facts, {2, 100});
  EXPECT_EQ(end.outcome, Outcome::kDone);
}

TEST(AttemptEnd, DeathBySignalIsARetriedFailure) {
  const auto end = decide_attempt_end(exited(128 + 9), {2, 100});
  EXPECT_EQ(end.outcome, Outcome::kFailed);
  EXPECT_EQ(end.next_state, JobState::kPlanned);
  EXPECT_THAT(end.reason, HasSubstr("killed by signal 9"));
}

TEST(AttemptEnd, DeterministicErrorsFailAtOnce) {
  for (int code : {2, 126, 127}) {
    SCOPED_TRACE(code);
    const auto end = decide_attempt_end(exited(code), {10, 100});
    EXPECT_EQ(end.next_state, JobState::kFailed);
    EXPECT_TRUE(end.count_failure);
  }
}

TEST(AttemptEnd, PreemptionRequeuesOnItsOwnBudget) {
  ExitFacts facts = exited(143);
  facts.failures = 99;
  auto end = decide_attempt_end(facts, {0, 3});
  EXPECT_EQ(end.outcome, Outcome::kPreempted);
  EXPECT_EQ(end.next_state, JobState::kPreempted);
  EXPECT_TRUE(end.count_preemption);
  EXPECT_FALSE(end.count_failure);
  facts.preemptions = 3;
  end = decide_attempt_end(facts, {0, 3});
  EXPECT_EQ(end.next_state, JobState::kFailed);
}

TEST(AttemptEnd, AnyExitWhileStoppingIsAnUncountedPreemption) {
  ExitFacts facts = exited(143);
  facts.stopping = true;
  auto end = decide_attempt_end(facts, {0, 0});
  EXPECT_EQ(end.next_state, JobState::kPreempted);
  EXPECT_FALSE(end.count_preemption);
  facts.exit_code = 137;  // killed after the grace period
  end = decide_attempt_end(facts, {0, 0});
  EXPECT_EQ(end.next_state, JobState::kPreempted);
  EXPECT_FALSE(end.count_failure);
}

TEST(AttemptEnd, UnknownExitIsJudgedByTheEvents) {
  auto end = decide_attempt_end(exited(std::nullopt, "done"), {});
  EXPECT_EQ(end.next_state, JobState::kDone);
  end = decide_attempt_end(exited(std::nullopt), {});
  EXPECT_EQ(end.outcome, Outcome::kLost);
  EXPECT_EQ(end.next_state, JobState::kPreempted);
  EXPECT_TRUE(end.count_preemption);
}

TEST(GpuList, RangesAndListsParse) {
  EXPECT_THAT(parse_gpu_list("0-3,6"), ElementsAre(0, 1, 2, 3, 6));
  EXPECT_THAT(parse_gpu_list("2"), ElementsAre(2));
  EXPECT_THAT(parse_gpu_list("1,1,0"), ElementsAre(1, 0));
  for (const char* bad : {"", "a", "3-1", "0,", "-1", "0-", "1.5"}) {
    SCOPED_TRACE(bad);
    try {
      parse_gpu_list(bad);
      FAIL() << "accepted";
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr("--gpus"));
    }
  }
}

TEST(Slots, SingleGpuJobsArePackedOntoTheLeastLoadedGpu) {
  detail::SlotPool pool({0, 1}, 2, 0);
  EXPECT_EQ(pool.capacity(), 4);
  EXPECT_THAT(*pool.acquire(1), ElementsAre(0));
  EXPECT_THAT(*pool.acquire(1), ElementsAre(1));
  EXPECT_THAT(*pool.acquire(1), ElementsAre(0));
  EXPECT_THAT(*pool.acquire(1), ElementsAre(1));
  EXPECT_FALSE(pool.acquire(1));
  pool.release({1});
  EXPECT_THAT(*pool.acquire(1), ElementsAre(1));
}

TEST(Slots, MultiGpuJobsTakeIdleGpusOnly) {
  detail::SlotPool pool({0, 1, 2}, 2, 0);
  EXPECT_THAT(*pool.acquire(1), ElementsAre(0));
  EXPECT_THAT(*pool.acquire(2), ElementsAre(1, 2));
  EXPECT_FALSE(pool.acquire(2));
  EXPECT_THAT(*pool.acquire(1), ElementsAre(0));
  EXPECT_FALSE(pool.acquire(1));
  pool.release({1, 2});
  EXPECT_THAT(*pool.acquire(1), ElementsAre(1));
}

TEST(Slots, MaxParallelCapsGpuSlotsAndSetsCpuPlaces) {
  detail::SlotPool gpus({0, 1}, 4, 3);
  EXPECT_EQ(gpus.capacity(), 3);
  detail::SlotPool cpu({}, 1, 2);
  EXPECT_TRUE(cpu.cpu());
  EXPECT_TRUE(cpu.acquire(1));
  EXPECT_TRUE(cpu.acquire(1));
  EXPECT_FALSE(cpu.acquire(1));
}

TEST(Trainer, ExplicitPathThenEnvironmentElseAnErrorSayingWhere) {
  const test_support::ScratchDir dir;
  const std::string fake = test_support::write_fake_trainer(dir.path());
  EXPECT_EQ(find_trainer(fake), fake);
  test_support::write_text(dir.file("not-executable"), "#!/bin/sh\n");
  EXPECT_THROW(find_trainer(dir.file("not-executable")), InputError);
  ::setenv("PARCAE_TRAIN", fake.c_str(), 1);
  EXPECT_EQ(find_trainer(""), fake);
  ::unsetenv("PARCAE_TRAIN");
  // This test binary's folder has no parcae-train.
  try {
    find_trainer("");
    FAIL() << "found a trainer where there is none";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("cannot find parcae-train: not at " + detail::executable_dir()));
  }
}

TEST(Processes, IdentitiesNameLiveProcessesOnly) {
  const std::string self = detail::process_identity(::getpid());
  EXPECT_TRUE(detail::identity_alive(self));
  const std::string pid = self.substr(0, self.find('/'));
  EXPECT_FALSE(detail::identity_alive(pid + "/1"));  // same pid, another start time
  EXPECT_FALSE(detail::identity_alive("999999999/1"));
  EXPECT_EQ(detail::owner_state(detail::self_owner()), detail::OwnerState::kSelf);
  EXPECT_EQ(detail::owner_state(detail::host_name() + "/999999999/1"), detail::OwnerState::kDead);
  EXPECT_EQ(detail::owner_state("another-host.example/1/1"), detail::OwnerState::kUnknown);
}

}  // namespace
}  // namespace parcae::orchestrator
