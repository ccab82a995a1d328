// First-use data preparation: a sweep file whose shards do not exist yet but that says how to make
// them (data.prepare) is planned after its text is tokenized into the named folder, once, as
// documents after a BOS with tokenizer.json beside them; a command that fails is an input error
// naming the field, and leaves no shards behind. SentencePiece BPE round-trips text: text ->
// shards -> text gives back every document.
#include <cmath>
#include <filesystem>
#include <fstream>
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

// A sweep whose text is cut into one document per line unless `prepare` says otherwise.
std::string write_preparing_sweep(const std::string& dir, nlohmann::json prepare) {
  if (!prepare.contains("documents"))
    prepare["documents"] = "line";
  const nlohmann::json sweep = {{"name", "prepared"},
                                {"data",
                                 {{"train", "corpus/train_*.bin"},
                                  {"val", "corpus/val_*.bin"},
                                  {"bos_token", sweeps::kByteBosToken},
                                  {"prepare", prepare}}},
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

// The text a byte-level shard holds, without the BOS before each document.
std::string shard_text(const std::string& path) {
  const sweeps::TokenShard shard(path, sweeps::kByteVocabSize);
  std::vector<uint16_t> ids;
  for (int64_t i = 0; i < shard.size(); ++i) {
    if (shard[i] != sweeps::kByteBosToken)
      ids.push_back(shard[i]);
  }
  return sweeps::decode_bytes(ids);
}

// The documents of a stream of shards, each decoded by `tokenizer` from after its BOS.
std::vector<std::string> shard_documents(const std::vector<std::string>& paths,
                                         const sweeps::TextTokenizer& tokenizer) {
  std::vector<std::vector<uint16_t>> documents;
  for (const auto& path : paths) {
    const sweeps::TokenShard shard(path, tokenizer.vocab_size());
    for (int64_t i = 0; i < shard.size(); ++i) {
      if (shard[i] == tokenizer.bos_token())
        documents.emplace_back();
      else
        documents.back().push_back(shard[i]);
    }
  }
  std::vector<std::string> texts;
  for (const auto& ids : documents)
    texts.push_back(tokenizer.decode(ids));
  return texts;
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
  // Whole lines held out: the fewest last ones that reach a quarter of the tokens (a line is
  // 58 to 60 tokens with its BOS).
  const int64_t val_tokens = sweeps::corpus_token_count(first.spec.data.val_shards);
  const int64_t all_tokens = val_tokens + sweeps::corpus_token_count(first.spec.data.train_shards);
  EXPECT_GE(val_tokens, std::llround(0.25 * static_cast<double>(all_tokens)));
  EXPECT_LT(val_tokens - 60, std::llround(0.25 * static_cast<double>(all_tokens)));
  EXPECT_EQ(sweeps::corpus_token_count(first.spec.data.train_shards) +
                sweeps::corpus_token_count(first.spec.data.val_shards),
            static_cast<int64_t>(text.size()) + 200);  // a BOS per line
  EXPECT_TRUE(fs::exists(dir.file("corpus/tokenizer.json")));
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

TEST(DataPreparation, ASampledHeldOutSplitReachesTheShards) {
  ScratchDir dir;
  const std::string text = repeated_text(200);
  write_text(dir.file("source.txt"), text);
  const std::string sweep_file = write_preparing_sweep(dir.path(),
                                                       {{"text", {"source.txt"}},
                                                        {"out", "corpus"},
                                                        {"documents", "line"},
                                                        {"held_out", "sample"},
                                                        {"val_fraction", 0.25}});
  PlanOptions options;
  options.sweep_file = sweep_file;
  options.db_path = dir.file("db.sqlite");
  const PlanOutcome planned = plan_sweep_file(options);
  ASSERT_EQ(planned.spec.data.val_shards.size(), 1u);
  const std::string val = shard_text(planned.spec.data.val_shards[0]);
  // Not the tail: the held-out lines come from across the text.
  EXPECT_NE(text.substr(text.size() - val.size()), val);
  EXPECT_EQ(shard_text(planned.spec.data.train_shards[0]).size() + val.size(), text.size());
  std::ifstream info(dir.file("corpus/tokenizer.json"));
  EXPECT_EQ(nlohmann::json::parse(info).at("held_out"), "sample");
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

TEST(DataPreparation, AFolderWithoutTokenizerJsonIsPreparedAgain) {
  // Shards of an older preparation (no BOS, no tokenizer.json) are replaced by documents.
  ScratchDir dir;
  write_text(dir.file("source.txt"), repeated_text(100));
  fs::create_directories(dir.file("corpus"));
  sweeps::write_token_shard(dir.file("corpus/train_000000.bin"), std::vector<uint16_t>(100, 65));
  sweeps::write_token_shard(dir.file("corpus/val_000000.bin"), std::vector<uint16_t>(100, 65));
  PlanOptions options;
  options.sweep_file =
      write_preparing_sweep(dir.path(), {{"text", {"source.txt"}}, {"out", "corpus"}});
  options.db_path = dir.file("db.sqlite");
  const PlanOutcome outcome = plan_sweep_file(options);
  EXPECT_EQ(
      shard_text(outcome.spec.data.train_shards[0]) + shard_text(outcome.spec.data.val_shards[0]),
      repeated_text(100));
  EXPECT_TRUE(fs::exists(dir.file("corpus/tokenizer.json")));
}

// Text with what a tokenizer can get wrong: several spaces, tabs, digits, accents, a symbol no
// training line holds, and paragraphs of several lines.
std::string tricky_text() {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += "Paragraph " + std::to_string(i * 37) + ":  the caf\u00e9 sells\ttea and " +
            std::to_string(i % 13) + " cakes.\n";
    text +=
        "   Indented line with  double  spaces and the year " + std::to_string(1900 + i) + ".\n\n";
  }
  text += "A last paragraph with a rare sign \u2603 and trailing spaces   \n";
  return text;
}

TEST(SentencePiece, TextBecomesShardsAndComesBackUnchanged) {
  ScratchDir dir;
  const std::string text = tricky_text();
  write_text(dir.file("text.txt"), text);
  sweeps::TokenizerOptions options;
  options.kind = "sentencepiece";
  options.vocab_size = 400;
  const auto tokenizer = make_tokenizer(options, {dir.file("text.txt")}, "(test)", "--");
  EXPECT_EQ(tokenizer->name(), "sentencepiece");
  EXPECT_EQ(tokenizer->bos_token(), 1);
  EXPECT_LE(tokenizer->vocab_size(), 400);
  EXPECT_GT(tokenizer->vocab_size(), 260);

  sweeps::TextPreparation preparation;
  preparation.documents = sweeps::DocumentSplit::kParagraph;
  preparation.val_fraction = 0.1;
  const sweeps::PreparedShards shards = sweeps::prepare_text_shards(
      {dir.file("text.txt")}, dir.file("shards"), preparation, *tokenizer);
  // BPE merges: far fewer tokens than bytes.
  EXPECT_LT(shards.train_tokens + shards.val_tokens, static_cast<int64_t>(text.size()) / 2);
  EXPECT_TRUE(fs::exists(dir.file("shards/tokenizer.model")));

  // Decoded with the tokenizer recorded beside the shards, every document comes back.
  const auto recorded = load_tokenizer(dir.file("shards"));
  std::vector<std::string> documents = shard_documents(shards.train_shards, *recorded);
  for (const auto& document : shard_documents(shards.val_shards, *recorded))
    documents.push_back(document);
  EXPECT_EQ(documents, sweeps::split_documents(text, sweeps::DocumentSplit::kParagraph));

  // The recorded model, loaded, encodes as the learned one does.
  options.model = dir.file("shards/tokenizer.model");
  const auto loaded = make_tokenizer(options, {}, "(test)", "--");
  EXPECT_EQ(loaded->encode("the caf\u00e9 sells tea"),
            tokenizer->encode("the caf\u00e9 sells tea"));
}

TEST(SentencePiece, BadSettingsAreInputErrorsNamingTheField) {
  ScratchDir dir;
  write_text(dir.file("text.txt"), tricky_text());
  sweeps::TokenizerOptions options;
  options.kind = "sentencepiece";
  options.vocab_size = 100;
  try {
    make_tokenizer(options, {dir.file("text.txt")}, "sweep.json", "data.prepare.");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "data.prepare.vocab_size");
  }
  options.vocab_size = 400;
  options.model = dir.file("text.txt");  // not a model
  EXPECT_THROW(make_tokenizer(options, {}, "sweep.json", "data.prepare."), InputError);
  options.kind = "wordpiece";
  try {
    make_tokenizer(options, {}, "sweep.json", "data.prepare.");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "data.prepare.tokenizer");
  }
  EXPECT_THROW(load_tokenizer(dir.file("no-such-folder")), InputError);
}

TEST(DataPreparation, ASweepCanPrepareItsShardsWithSentencePiece) {
  ScratchDir dir;
  write_text(dir.file("source.txt"), tricky_text());
  PlanOptions options;
  options.sweep_file = write_preparing_sweep(dir.path(),
                                             {{"text", {"source.txt"}},
                                              {"out", "corpus"},
                                              {"documents", "paragraph"},
                                              {"tokenizer", "sentencepiece"},
                                              {"vocab_size", 400}});
  options.db_path = dir.file("db.sqlite");
  const PlanOutcome outcome = plan_sweep_file(options);
  ASSERT_FALSE(outcome.spec.data.train_shards.empty());
  std::ifstream in(dir.file("corpus/tokenizer.json"));
  const nlohmann::json info = nlohmann::json::parse(in);
  EXPECT_EQ(info.at("tokenizer"), "sentencepiece");
  EXPECT_EQ(info.at("bos_token"), 1);
  EXPECT_EQ(info.at("model"), "tokenizer.model");
  EXPECT_TRUE(fs::exists(dir.file("corpus/tokenizer.model")));
  EXPECT_FALSE(fs::exists(dir.file("corpus.partial")));
}

}  // namespace
}  // namespace parcae::orchestrator
