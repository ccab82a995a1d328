// First-use data preparation: a sweep file whose shards do not exist yet but that says how to make
// them (data.prepare) is planned after its text is byte-tokenized into the named folder, once; a
// command that fails is an input error naming the field, and leaves no shards behind.
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "sweeps/token_shards.h"
#include "tests/support/scratch_dir.h"

namespace parcae::orchestrator {
namespace {

namespace fs = std::filesystem;
using test_support::ScratchDir;
using test_support::write_text;
using ::testing::HasSubstr;

std::string write_preparing_sweep(const std::string& dir, const nlohmann::json& prepare) {
  const nlohmann::json sweep = {
      {"name", "prepared"},
      {"data",
       {{"train", "corpus/train_*.bin"}, {"val", "corpus/val_*.bin"}, {"prepare", prepare}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", {{{"id", "2e11"}, {"flops", 2e11}}}},
      {"axes", {{"mean_recurrence", {2, 4}}}},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 50}}}};
  const std::string path = dir + "/prepared.json";
  write_text(path, sweep.dump(2));
  return path;
}

// The text a shard holds.
std::string shard_text(const std::string& path) {
  const sweeps::TokenShard shard(path, sweeps::kByteVocabSize);
  return sweeps::decode_bytes(std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size()));
}

std::string repeated_text(int lines) {
  std::string text;
  for (int i = 0; i < lines; ++i)
    text += "In the beginning God created the heaven and the earth. " + std::to_string(i) + "\n";
  return text;
}

TEST(DataPreparation, TextFilesBecomeShardsOnFirstUseAndAreReusedAfter) {
  ScratchDir dir;
  const std::string text = repeated_text(200);
  write_text(dir.file("source.txt"), text);
  const std::string sweep_file = write_preparing_sweep(
      dir.path(), {{"text", {"source.txt"}}, {"out", "corpus"}, {"val_fraction", 0.25}});
  PlanOptions options;
  options.sweep_file = sweep_file;
  options.db_path = dir.file("db.sqlite");
  std::vector<std::string> notes;
  options.on_note = [&notes](const std::string& note) { notes.push_back(note); };

  const PlanOutcome first = plan_sweep_file(options);
  ASSERT_EQ(first.spec.data.train_shards.size(), 1u);
  ASSERT_EQ(first.spec.data.val_shards.size(), 1u);
  const std::string val = shard_text(first.spec.data.val_shards[0]);
  EXPECT_EQ(shard_text(first.spec.data.train_shards[0]) + val, text);
  EXPECT_EQ(static_cast<int64_t>(val.size()), std::llround(0.25 * text.size()));
  EXPECT_EQ(notes.size(), 2u);
  EXPECT_FALSE(fs::exists(dir.file("corpus.partial")));

  const auto written = fs::last_write_time(first.spec.data.train_shards[0]);
  notes.clear();
  const PlanOutcome second = plan_sweep_file(options);
  EXPECT_TRUE(notes.empty());
  EXPECT_EQ(fs::last_write_time(second.spec.data.train_shards[0]), written);
  EXPECT_EQ(second.recorded->inserted, 0);
  EXPECT_EQ(second.recorded->unchanged, 2);
}

TEST(DataPreparation, ACommandsOutputIsTheText) {
  ScratchDir dir;
  write_text(dir.file("source.txt"), repeated_text(100));
  const std::string sweep_file = write_preparing_sweep(
      dir.path(), {{"command", {"cat", dir.file("source.txt")}}, {"out", "corpus"}});
  PlanOptions options;
  options.sweep_file = sweep_file;
  options.db_path = dir.file("db.sqlite");
  const PlanOutcome outcome = plan_sweep_file(options);
  EXPECT_EQ(
      shard_text(outcome.spec.data.train_shards[0]) + shard_text(outcome.spec.data.val_shards[0]),
      repeated_text(100));
}

TEST(DataPreparation, TwoPlannersAtOnceWriteTheShardsOnce) {
  ScratchDir dir;
  write_text(dir.file("source.txt"), repeated_text(2000));
  const std::string sweep_file =
      write_preparing_sweep(dir.path(), {{"text", {"source.txt"}}, {"out", "corpus"}});
  std::vector<int> prepared(2, 0);
  auto plan = [&](int i) {
    PlanOptions options;
    options.sweep_file = sweep_file;
    options.db_path = dir.file("db.sqlite");
    options.on_note = [&prepared, i](const std::string& note) {
      if (note.find("preparing") != std::string::npos)
        ++prepared[i];
    };
    plan_sweep_file(options);
  };
  std::thread a(plan, 0), b(plan, 1);
  a.join();
  b.join();
  EXPECT_EQ(prepared[0] + prepared[1], 1);
  EXPECT_TRUE(fs::exists(dir.file("corpus/train_000000.bin")));
}

TEST(DataPreparation, AFailingCommandIsAnInputErrorAndLeavesNoShards) {
  ScratchDir dir;
  const std::string sweep_file =
      write_preparing_sweep(dir.path(), {{"command", {"false"}}, {"out", "corpus"}});
  PlanOptions options;
  options.sweep_file = sweep_file;
  options.db_path = dir.file("db.sqlite");
  try {
    plan_sweep_file(options);
    FAIL() << "a failing command was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "data.prepare.command");
    EXPECT_THAT(e.what(), HasSubstr("exited with 1"));
    EXPECT_THAT(e.what(), HasSubstr(sweep_file));
  }
  EXPECT_FALSE(fs::exists(dir.file("corpus/train_000000.bin")));
  EXPECT_FALSE(fs::exists(dir.file("db.sqlite")));

  const std::string missing = write_preparing_sweep(
      dir.path(), {{"command", {"parcae-no-such-command"}}, {"out", "corpus"}});
  options.sweep_file = missing;
  EXPECT_THROW(plan_sweep_file(options), InputError);
}

TEST(DataPreparation, ADryRunPreparesNothing) {
  ScratchDir dir;
  write_text(dir.file("source.txt"), repeated_text(100));
  PlanOptions options;
  options.sweep_file =
      write_preparing_sweep(dir.path(), {{"text", {"source.txt"}}, {"out", "corpus"}});
  options.db_path = dir.file("db.sqlite");
  options.dry_run = true;
  const PlanOutcome outcome = plan_sweep_file(options);
  EXPECT_EQ(outcome.plan.jobs().size(), 2u);
  EXPECT_FALSE(fs::exists(dir.file("corpus")));
}

}  // namespace
}  // namespace parcae::orchestrator
