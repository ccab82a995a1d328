// A tiny sweep end to end with the real parcae-train on the CPU: planned from a file, run with
// two trainers at once, SIGKILLed partway, run again, and then every cell is done exactly once
// with its whole curve, its evaluations at every depth and its provenance. Built only where
// parcae-train is (a trainer build, or PARCAE_TEST_TRAINER pointing at one).
#include <signal.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "results/results.h"
#include "sweeps/token_shards.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

using results::JobState;
using results::Store;
using test_support::CliProcess;
using test_support::run_cli;
using test_support::ScratchDir;

// Byte-tokenized text with some structure to learn, as llm.c shards.
void write_shards(const std::string& dir) {
  std::string text;
  for (int i = 0; text.size() < 400000; ++i) {
    text += "In the beginning " + std::to_string(i % 97) + " was the word, and the word was " +
            std::to_string((i * 7) % 13) + ".\n";
  }
  const auto tokens = sweeps::encode_bytes(text);
  const size_t split = tokens.size() * 9 / 10;
  sweeps::write_token_shard(dir + "/train_000000.bin", {tokens.begin(), tokens.begin() + split});
  sweeps::write_token_shard(dir + "/val_000000.bin", {tokens.begin() + split, tokens.end()});
}

TEST(RealTrainer, TinySweepSurvivesAKillAndEndsWithEveryCellDoneOnce) {
  const ScratchDir dir;
  std::filesystem::create_directories(dir.file("data"));
  write_shards(dir.file("data"));
  // parcae-micro at its context of 32: 1,024-token steps; 12-27 steps per cell.
  const nlohmann::json sweep = {
      {"name", "e2e"},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", "parcae-micro"},
      {"budgets", {{{"id", "5e9"}, {"flops", 5e9}}, {{"id", "1e10"}, {"flops", 1e10}}}},
      {"axes", {{"mean_recurrence", {"1-fixed", 2}}}},
      {"training", {{"batch_tokens", 1024}, {"micro_batch_size", 32}, {"precision", "fp32"}}},
      {"eval", {{"depths", {1, 2, 4}}, {"val_sequences", 32}}},
      {"device", "cpu"},
      {"checkpoint_interval_steps", 4},
      {"plan", {{"min_steps", 10}, {"max_flop_gap", 0.1}}}};
  const std::string file = dir.file("e2e.json");
  test_support::write_text(file, sweep.dump(2));
  const std::string db = dir.file("e2e.sqlite");
  const std::vector<std::string> command = {"--db",
                                            db,
                                            "sweep",
                                            "run",
                                            file,
                                            "--trainer",
                                            PARCAE_TRAINER_PATH,
                                            "--max-parallel",
                                            "2",
                                            "--poll-interval",
                                            "0.2"};
  {
    CliProcess victim(command);
    std::string line;
    for (int i = 0; i < 3 && victim.read_err_line(line); ++i) {
    }
    victim.kill(SIGKILL);
    victim.wait();
  }
  const auto result = run_cli(command);
  ASSERT_EQ(result.exit_code, 0) << result.err;

  const Store store = Store::open(db);
  EXPECT_EQ(store.integrity_check(), "ok");
  const auto jobs = store.jobs("e2e");
  ASSERT_EQ(jobs.size(), 4u);
  for (const auto& job : jobs) {
    SCOPED_TRACE(job.cell);
    EXPECT_EQ(job.state, JobState::kDone);
    EXPECT_EQ(job.final_status, "done");
    ASSERT_TRUE(job.loss_val);
    EXPECT_LT(*job.loss_val, 5.6);  // below ln(256): the byte model learned something
    const auto curve = store.curve(job.id);
    ASSERT_EQ(static_cast<int64_t>(curve.size()), job.steps);
    for (size_t i = 0; i < curve.size(); ++i)
      EXPECT_EQ(curve[i].step, static_cast<int64_t>(i) + 1);
    std::set<int> depths;
    for (const auto& e : store.evaluations(job.id))
      depths.insert(e.depth);
    EXPECT_EQ(depths.count(1), 1u);
    EXPECT_EQ(depths.count(4), 1u);
    const auto provenance = store.provenance(job.id);
    ASSERT_FALSE(provenance.empty());
    EXPECT_EQ(provenance.back().parameters_total, job.parameters_total);
    EXPECT_EQ(provenance.back().flops_per_token, job.flops_per_token);
    int done = 0;
    for (const auto& attempt : store.attempts(job.id))
      done += attempt.outcome == results::Outcome::kDone ? 1 : 0;
    EXPECT_EQ(done, 1);
  }
}

}  // namespace
}  // namespace parcae::cli
