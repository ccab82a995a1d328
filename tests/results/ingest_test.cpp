// Ingest of events.jsonl: idempotent, incremental across a truncated last line, tolerant of
// garbage lines (reported, skipped), and upserting the steps a resumed trainer replays.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "results/results.h"
#include "tests/results/store_fixture.h"
#include "tests/support/scratch_dir.h"

namespace parcae::results {
namespace {

using test_support::append_text;
using test_support::ScratchDir;
using test_support::write_text;

std::string start_line(int64_t step, bool resumed) {
  return fmt::format(
      R"({{"event":"start","time":100.5,"step":{},"job_id":"x","resumed":{},"versions":{{"parcae":"0.1.0","git_commit":"abc123","libtorch":"1.13.1","cuda":"none"}},"device":"cpu","world_size":1,"parameters":{{"total":63936,"noncore":43392,"core":12352,"embedding":8192}},"flops_per_token":441088,"max_steps":110,"train_tokens":453424,"seed":0,"budget_flops":2e11}})"
      "\n",
      step,
      resumed ? "true" : "false");
}

std::string step_line(int64_t step, double loss) {
  return fmt::format(
      R"({{"event":"step","time":{},"step":{},"tokens":{},"flops":{},"loss":{},"lr_adamw":0.008,"lr_muon":0.008,"grad_norm":0.5,"tokens_per_s":1000.0,"skipped":false,"mean_depth":2.1}})"
      "\n",
      100 + step,
      step,
      step * 4096,
      step * 4096.0 * 441088,
      loss);
}

std::string eval_line(int64_t step, int depth, double loss) {
  return fmt::format(R"({{"event":"eval","time":200,"step":{},"tokens":{},"depth":{},"loss":{}}})"
                     "\n",
                     step,
                     step * 4096,
                     depth,
                     loss);
}

class Ingest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.emplace(Store::open(dir_.file("db.sqlite")));
    test_support::record(*store_, test_support::tiny_sweep_json({2}), dir_.file("runs"));
    job_ = store_->jobs("tiny").at(0).id;
    events_ = dir_.file("events.jsonl");
  }

  std::vector<CurvePoint> curve() const { return store_->curve(job_); }

  ScratchDir dir_;
  std::optional<Store> store_;
  std::string job_;
  std::string events_;
};

TEST_F(Ingest, MissingFileIsAnEmptyOne) {
  const IngestReport report = store_->ingest_events(job_, events_);
  EXPECT_EQ(report.lines, 0);
  EXPECT_TRUE(curve().empty());
}

TEST_F(Ingest, IngestingTwiceAddsNothing) {
  write_text(events_,
             start_line(0, false) + step_line(1, 5.0) + step_line(2, 4.5) + eval_line(2, 1, 4.9) +
                 eval_line(2, 2, 4.7));
  const IngestReport first = store_->ingest_events(job_, events_);
  EXPECT_EQ(first.events, 5);
  EXPECT_TRUE(first.bad_lines.empty());
  const IngestReport second = store_->ingest_events(job_, events_);
  EXPECT_EQ(second.lines, 0);
  EXPECT_EQ(second.events, 0);
  ASSERT_EQ(curve().size(), 2u);
  EXPECT_EQ(store_->evaluations(job_).size(), 2u);
  EXPECT_EQ(store_->provenance(job_).size(), 1u);
  const auto job = store_->find_job(job_);
  EXPECT_EQ(job->steps_done, 2);
  EXPECT_EQ(job->last_loss, 4.5);
  EXPECT_EQ(job->events_lines, 5);
}

TEST_F(Ingest, TruncatedLastLineIsLeftForTheNextCall) {
  const std::string full = step_line(1, 5.0) + step_line(2, 4.5);
  const std::string third = step_line(3, 4.25);
  write_text(events_, full + third.substr(0, 30));
  const IngestReport partial = store_->ingest_events(job_, events_);
  EXPECT_EQ(partial.events, 2);
  EXPECT_EQ(partial.pending_bytes, 30);
  EXPECT_TRUE(partial.bad_lines.empty());
  EXPECT_EQ(store_->find_job(job_)->events_offset, static_cast<int64_t>(full.size()));
  append_text(events_, third.substr(30));
  const IngestReport rest = store_->ingest_events(job_, events_);
  EXPECT_EQ(rest.events, 1);
  EXPECT_EQ(rest.pending_bytes, 0);
  ASSERT_EQ(curve().size(), 3u);
  EXPECT_EQ(curve()[2].loss, 4.25);
}

TEST_F(Ingest, GarbageLinesAreReportedOnceAndSkipped) {
  write_text(events_,
             step_line(1, 5.0) + "this is not json\n" + R"({"event":"step","time":1,"step":2})" +
                 "\n" + R"({"event":"teleport","time":1,"step":2})" + "\n" + step_line(3, 4.0));
  const IngestReport report = store_->ingest_events(job_, events_);
  EXPECT_EQ(report.events, 2);
  ASSERT_EQ(report.bad_lines.size(), 3u);
  EXPECT_EQ(report.bad_lines[0].line, 2);
  EXPECT_EQ(report.bad_lines[0].message, "not valid JSON");
  EXPECT_EQ(report.bad_lines[1].line, 3);
  EXPECT_THAT(report.bad_lines[1].message, ::testing::HasSubstr("\"tokens\""));
  EXPECT_THAT(report.bad_lines[2].message, ::testing::HasSubstr("teleport"));
  ASSERT_EQ(curve().size(), 2u);
  EXPECT_EQ(curve()[1].step, 3);
  EXPECT_TRUE(store_->ingest_events(job_, events_).bad_lines.empty());
}

// The start event names the version of the events (sweeps/run_contract.h); another version's
// start is refused with both versions named, and its own version is read as before.
TEST_F(Ingest, AStartEventOfAnotherEventsVersionIsReportedNamingBothVersions) {
  std::string other = start_line(0, false);  // ends with "}\n"
  other.insert(other.size() - 2, R"(,"events_version":2)");
  std::string same = start_line(0, false);
  same.insert(same.size() - 2, R"(,"events_version":1)");
  write_text(events_, other + same);
  const IngestReport report = store_->ingest_events(job_, events_);
  ASSERT_EQ(report.bad_lines.size(), 1u);
  EXPECT_EQ(report.bad_lines[0].line, 1);
  EXPECT_THAT(report.bad_lines[0].message, ::testing::HasSubstr("\"events_version\" = 2"));
  EXPECT_THAT(report.bad_lines[0].message, ::testing::HasSubstr("expected 1"));
  EXPECT_EQ(report.events, 1);
}

TEST_F(Ingest, StepsReplayedAfterAResumeReplaceTheEarlierRows) {
  // The trainer checkpointed at step 2, got as far as step 4, was preempted, and resumed from 2.
  write_text(events_,
             start_line(0, false) + step_line(1, 5.0) + step_line(2, 4.5) + step_line(3, 4.4) +
                 step_line(4, 4.3) + eval_line(4, 1, 9.0) +
                 R"({"event":"preempted","time":300,"step":4})" + "\n");
  const IngestReport before = store_->ingest_events(job_, events_);
  EXPECT_TRUE(before.saw_preempted);
  append_text(events_,
              start_line(2, true) + step_line(3, 4.41) + step_line(4, 4.31) + step_line(5, 4.2) +
                  eval_line(4, 1, 4.35));
  store_->ingest_events(job_, events_);
  const auto points = curve();
  ASSERT_EQ(points.size(), 5u);
  EXPECT_EQ(points[2].loss, 4.41);
  EXPECT_EQ(points[3].loss, 4.31);
  EXPECT_EQ(points[4].step, 5);
  const auto evaluations = store_->evaluations(job_);
  ASSERT_EQ(evaluations.size(), 1u);
  EXPECT_EQ(evaluations[0].loss, 4.35);
  const auto provenance = store_->provenance(job_);
  ASSERT_EQ(provenance.size(), 2u);
  EXPECT_FALSE(provenance[0].resumed);
  EXPECT_TRUE(provenance[1].resumed);
  EXPECT_EQ(provenance[1].versions.at("git_commit"), "abc123");
  EXPECT_EQ(provenance[1].parameters_total, 63936);
}

TEST_F(Ingest, DoneEventRecordsTheFinalNumbersAndANewStartClearsThem) {
  write_text(
      events_,
      start_line(0, false) + step_line(1, 5.0) +
          R"({"event":"checkpoint","time":1,"step":1,"path":"ckpt/step-1"})" + "\n" +
          R"({"event":"done","time":2,"step":1,"status":"done","tokens":4096,"flops":1.8e9,"loss_train":5.0,"loss_val":5.25,"wall_time_s":3.5})" +
          "\n");
  const IngestReport report = store_->ingest_events(job_, events_);
  EXPECT_EQ(report.final_status, "done");
  auto job = store_->find_job(job_);
  EXPECT_EQ(job->final_status, "done");
  EXPECT_EQ(job->loss_val, 5.25);
  EXPECT_EQ(job->wall_time_s, 3.5);
  EXPECT_EQ(job->checkpoint_step, 1);
  EXPECT_EQ(job->checkpoint_path, "ckpt/step-1");
  append_text(events_, start_line(1, true));
  store_->ingest_events(job_, events_);
  job = store_->find_job(job_);
  EXPECT_FALSE(job->final_status);
  EXPECT_FALSE(job->loss_val);
}

TEST_F(Ingest, ErrorEventIsKeptAsTheJobsLastError) {
  write_text(
      events_,
      R"({"event":"error","time":1,"step":0,"message":"data/train_000.bin: magic = 7: expected 20240520"})"
      "\n");
  const IngestReport report = store_->ingest_events(job_, events_);
  EXPECT_EQ(report.error_message, "data/train_000.bin: magic = 7: expected 20240520");
  EXPECT_EQ(store_->find_job(job_)->last_error, "data/train_000.bin: magic = 7: expected 20240520");
}

TEST_F(Ingest, NonFiniteLossesAreStoredAsNull) {
  write_text(events_,
             R"({"event":"step","time":1,"step":1,"tokens":4096,"flops":1.0,"loss":null})"
             "\n"
             R"({"event":"step","time":1,"step":2,"tokens":8192,"flops":2.0,"loss":"nan"})"
             "\n");
  store_->ingest_events(job_, events_);
  ASSERT_EQ(curve().size(), 2u);
  EXPECT_FALSE(curve()[0].loss);
  EXPECT_FALSE(curve()[1].loss);
}

TEST_F(Ingest, AFileShorterThanTheStoredOffsetIsReadAgain) {
  write_text(events_, step_line(1, 5.0) + step_line(2, 4.5) + step_line(3, 4.0));
  store_->ingest_events(job_, events_);
  write_text(events_, step_line(1, 6.0));
  const IngestReport report = store_->ingest_events(job_, events_);
  EXPECT_TRUE(report.restarted);
  EXPECT_EQ(curve()[0].loss, 6.0);
  EXPECT_EQ(store_->find_job(job_)->events_lines, 1);
}

TEST_F(Ingest, AThousandStepsArriveInOneCallAndReingestAddsNothing) {
  std::string text;
  for (int step = 1; step <= 1000; ++step)
    text += step_line(step, 10.0 / step);
  write_text(events_, text);
  EXPECT_EQ(store_->ingest_events(job_, events_).events, 1000);
  EXPECT_EQ(store_->ingest_events(job_, events_).events, 0);
  const auto points = curve();
  ASSERT_EQ(points.size(), 1000u);
  EXPECT_DOUBLE_EQ(*points[999].loss, 0.01);
  EXPECT_EQ(points[999].tokens, 1000 * 4096);
}

}  // namespace
}  // namespace parcae::results
