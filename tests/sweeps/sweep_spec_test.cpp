// Reading sweep files: every problem reported at once, each naming the file, the field path and
// the value; unknown fields with a did-you-mean; generators; data patterns resolved against the
// sweep file's folder or --data-dir.
#include "sweeps/sweep_spec.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "sweeps/planner.h"
#include "tests/support/scratch_dir.h"
#include "tests/support/sweep_reading.h"

namespace parcae::sweeps {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

nlohmann::json valid_sweep() {
  return {{"name", "mu-sweep"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
          {"budgets", {{{"id", "2e11"}, {"flops", 2e11}}}},
          {"axes", {{"mean_recurrence", {2, 4}}}},
          {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}}};
}

SweepSpec read(const nlohmann::json& document) {
  return test_support::read_sweep_document(document, "sweep.json");
}

std::vector<std::string> problems_of(const nlohmann::json& document) {
  return test_support::sweep_problems(document, "sweep.json");
}

// A scratch folder with shorthands for the files a sweep file points at.
class TempDir : public test_support::ScratchDir {
 public:
  std::string touch(const std::string& name) const { return write(name, "x"); }
  std::string write(const std::string& name, const std::string& text) const {
    test_support::write_text(file(name), text);
    return file(name);
  }
};

TEST(SweepSpec, ValidFileReadsWithDefaults) {
  const SweepSpec spec = read(valid_sweep());
  EXPECT_EQ(spec.name, "mu-sweep");
  ASSERT_EQ(spec.budgets.size(), 1u);
  EXPECT_EQ(spec.budgets[0].id, "2e11");
  ASSERT_EQ(spec.axes.models.size(), 1u);
  EXPECT_EQ(spec.axes.models[0].label, "parcae-micro");
  EXPECT_EQ(spec.axes.models[0].config.context_length, 64);
  EXPECT_EQ(spec.axes.mean_recurrence.size(), 2u);
  EXPECT_THAT(spec.axes.seeds, ElementsAre(0u));
  EXPECT_EQ(spec.plan.min_steps, 200);
  EXPECT_EQ(spec.resources.jobs_per_gpu, 1);
  EXPECT_TRUE(spec.validate().empty());
}

TEST(SweepSpec, UnknownFieldsSuggestTheClosestName) {
  nlohmann::json document = valid_sweep();
  document["budget"] = document["budgets"];
  document["axes"]["mean_recurence"] = {2};
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_THAT(problems[0], HasSubstr("sweep.json: budget = "));
  EXPECT_THAT(problems[0], HasSubstr("unknown field; did you mean 'budgets'?"));
  EXPECT_THAT(problems[1], HasSubstr("sweep.json: axes.mean_recurence = [2]: unknown field"));
  EXPECT_THAT(problems[1], HasSubstr("did you mean 'mean_recurrence'?"));
}

TEST(SweepSpec, EveryProblemIsReportedInOnePass) {
  nlohmann::json document = valid_sweep();
  document["budgets"] = {{{"id", "2e11"}, {"flops", -2e11}}};
  document["axes"]["mean_recurrence"] = {0, 4};
  document["device"] = "gpu";
  document["resources"] = {{"gpus_per_job", 0}};
  document["colour"] = "blue";
  try {
    read(document);
    FAIL() << "a bad sweep file was accepted";
  } catch (const SweepFileError& e) {
    const std::string all = e.what();
    EXPECT_EQ(e.problems().size(), 5u) << all;
    EXPECT_THAT(all, HasSubstr("sweep.json: colour = \"blue\": unknown field"));
    EXPECT_THAT(
        all, HasSubstr("sweep.json: budgets[0].flops = -200000000000: expected a positive number"));
    EXPECT_THAT(
        all,
        HasSubstr(
            "sweep.json: axes.mean_recurrence[0] = 0: expected an integer >= 1, \"1-fixed\" or "
            "\"1-poisson\""));
    EXPECT_THAT(all,
                HasSubstr("sweep.json: device = \"gpu\": expected \"auto\", \"cpu\" or \"cuda\""));
    EXPECT_THAT(all, HasSubstr("sweep.json: resources.gpus_per_job = 0: expected >= 1"));
    EXPECT_EQ(e.file(), "sweep.json");
  }
}

TEST(SweepSpec, WrongTypesNameTheFieldAndTheValue) {
  nlohmann::json document = valid_sweep();
  document["budgets"] = "lots";
  document["training"]["batch_tokens"] = "4k";
  document["axes"]["seed"] = {0, "one"};
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_THAT(
      problems,
      ::testing::Contains(HasSubstr("sweep.json: axes.seed[1] = \"one\": expected an integer")));
  EXPECT_THAT(
      problems,
      ::testing::Contains(HasSubstr("sweep.json: budgets = \"lots\": expected a list of budgets")));
  EXPECT_THAT(problems,
              ::testing::Contains(
                  HasSubstr("sweep.json: training.batch_tokens = \"4k\": expected an integer")));
}

TEST(SweepSpec, MissingRequiredFieldsAreEachReportedOnce) {
  const auto problems = problems_of(nlohmann::json::object());
  EXPECT_THAT(problems, ::testing::Contains(HasSubstr("sweep.json: name = (missing)")));
  EXPECT_THAT(problems, ::testing::Contains(HasSubstr("sweep.json: data = (missing)")));
  EXPECT_THAT(problems, ::testing::Contains(HasSubstr("sweep.json: model = (missing)")));
  EXPECT_THAT(problems, ::testing::Contains(HasSubstr("sweep.json: budgets = (missing)")));
  EXPECT_EQ(problems.size(), 4u);
}

TEST(SweepSpec, BudgetsAndTrainTokensAreExclusive) {
  nlohmann::json document = valid_sweep();
  document["axes"]["train_tokens"] = {1000000};
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("expected exactly one of budgets"));
}

TEST(SweepSpec, DuplicateValuesAndBudgetIdsAreRefused) {
  nlohmann::json document = valid_sweep();
  document["budgets"] = {{{"id", "a"}, {"flops", 1e11}}, {{"id", "a"}, {"flops", 2e11}}};
  document["axes"]["mean_recurrence"] = {{"logspace", {2, 3, 3}}};  // 2, 2.45, 3 -> 2, 2, 3
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_THAT(problems[0], HasSubstr("budgets[1] = \"a\": appears twice"));
  EXPECT_THAT(problems[1], HasSubstr("axes.mean_recurrence[1] = 2: appears twice"));
}

TEST(SweepSpec, RecurrenceAxisOnATransformerIsRefused) {
  nlohmann::json document = valid_sweep();
  document["model"] = "transformer-micro";
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0],
              HasSubstr("axes.mean_recurrence = model: applies to looped models only"));
}

TEST(SweepSpec, FixedControlAndUnknownRecurrenceSpellings) {
  nlohmann::json document = valid_sweep();
  document["axes"]["mean_recurrence"] = {"1-fixed", 2};
  const SweepSpec spec = read(document);
  EXPECT_TRUE(spec.axes.mean_recurrence[0].fixed);
  EXPECT_EQ(spec.axes.mean_recurrence[0].label(), "1-fixed");
  document["axes"]["mean_recurrence"] = {"1-fxed"};
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("axes.mean_recurrence[0] = \"1-fxed\""));
  EXPECT_THAT(problems[0], HasSubstr("did you mean '1-fixed'?"));
}

TEST(SweepSpec, GeneratorsExpandAsDocumented) {
  EXPECT_THAT(expand_generator({{"range", {2, 12, 2}}}, "f", "x"), ElementsAre(2, 4, 6, 8, 10, 12));
  EXPECT_THAT(expand_generator({{"linspace", {0, 1, 5}}}, "f", "x"),
              ElementsAre(0, 0.25, 0.5, 0.75, 1));
  const auto logs = expand_generator({{"logspace", {1e18, 6.4e19, 7}}}, "f", "x");
  ASSERT_EQ(logs.size(), 7u);
  for (size_t i = 0; i < logs.size(); ++i)
    EXPECT_NEAR(logs[i], 1e18 * std::pow(2.0, i), 1e4);
  EXPECT_EQ(logs.back(), 6.4e19);
  EXPECT_THAT(expand_generator({{"range", {0.1, 0.3, 0.1}}}, "f", "x").size(), 3u);
  try {
    expand_generator({{"logspace", {0, 10, 3}}}, "f.json", "budgets");
    FAIL() << "a logspace from 0 was accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("f.json: budgets.logspace = [0,10,3]: expected positive ends"));
  }
  EXPECT_THROW(expand_generator({{"powers", {1, 2, 3}}}, "f", "x"), InputError);
  EXPECT_EQ(budget_id_for(1e18), "1e18");
  EXPECT_EQ(budget_id_for(2.5e18), "2.5e18");
  EXPECT_EQ(budget_id_for(4096), "4096");
}

TEST(SweepSpec, DataPatternsAreResolvedAgainstTheSweepFilesFolder) {
  const TempDir dir;
  dir.touch("data/train_001.bin");
  dir.touch("data/train_000.bin");
  dir.touch("data/val_000.bin");
  nlohmann::json document = valid_sweep();
  document["data"] = {{"train", "data/train_*.bin"}, {"val", {"data/val_000.bin"}}};
  const std::string file = dir.write("sweeps/../sweep.json", document.dump());
  const SweepSpec spec = read_sweep_file(dir.path() + "/sweep.json");
  EXPECT_THAT(spec.data.train_shards,
              ElementsAre(dir.path() + "/data/train_000.bin", dir.path() + "/data/train_001.bin"));
  EXPECT_THAT(spec.data.val_shards, ElementsAre(dir.path() + "/data/val_000.bin"));
  EXPECT_THAT(spec.data.train_patterns, ElementsAre("data/train_*.bin"));
}

TEST(SweepSpec, DataDirReplacesTheSweepFilesFolder) {
  const TempDir dir;
  dir.touch("elsewhere/data/train_000.bin");
  dir.touch("elsewhere/data/val_000.bin");
  nlohmann::json document = valid_sweep();
  document["data"] = {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}};
  const std::string file = dir.write("sweep.json", document.dump());
  SweepReadOptions options;
  options.data_dir = dir.path() + "/elsewhere";
  const SweepSpec spec = read_sweep_file(file, options);
  EXPECT_THAT(spec.data.train_shards, ElementsAre(dir.path() + "/elsewhere/data/train_000.bin"));
}

TEST(SweepSpec, MissingShardsNameThePatternAndTheFolderSearched) {
  const TempDir dir;
  dir.touch("data/train_000.bin");
  nlohmann::json document = valid_sweep();
  document["data"] = {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}};
  const std::string file = dir.write("sweep.json", document.dump());
  try {
    read_sweep_file(file);
    FAIL() << "a sweep without validation shards was accepted";
  } catch (const SweepFileError& e) {
    ASSERT_EQ(e.problems().size(), 1u);
    EXPECT_THAT(e.problems()[0],
                HasSubstr(file + ": data.val[0] = \"data/val_*.bin\": matches no file"));
    EXPECT_THAT(e.problems()[0], HasSubstr("resolved against " + dir.path()));
  }
}

TEST(SweepSpec, UnreadableAndInvalidJsonFilesAreInputErrors) {
  const TempDir dir;
  EXPECT_THROW(read_sweep_file(dir.path() + "/absent.json"), InputError);
  const std::string file = dir.write("broken.json", "{\"name\": ");
  try {
    read_sweep_file(file);
    FAIL() << "broken JSON was accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(file + ": (file): is not valid JSON"));
  }
}

TEST(SweepSpec, ModelAxisObjectsOverrideTheBaseModel) {
  nlohmann::json document = valid_sweep();
  document["axes"] = {{"model",
                       {{{"name", "micro-ctx64"}},
                        {{"name", "micro-ctx128"}, {"context_length", 128}},
                        "parcae-tiny"}}};
  const SweepSpec spec = read(document);
  ASSERT_EQ(spec.axes.models.size(), 3u);
  EXPECT_EQ(spec.axes.models[0].config.context_length, 64);
  EXPECT_EQ(spec.axes.models[1].label, "micro-ctx128");
  EXPECT_EQ(spec.axes.models[1].config.context_length, 128);
  EXPECT_EQ(spec.axes.models[1].config.d_model, 32);
  EXPECT_EQ(spec.axes.models[2].config.d_model, 64);
}

TEST(SweepSpec, SweepNamesThatCannotNameAFolderAreRefused) {
  nlohmann::json document = valid_sweep();
  document["name"] = "my sweep/$(reboot)";
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0],
              HasSubstr("sweep.json: name = \"my sweep/$(reboot)\": expected 1-128 letters"));
}

TEST(SweepSpec, DataPreparationIsReadWithItsFolder) {
  nlohmann::json document = valid_sweep();
  document["data"]["prepare"] = {
      {"command", {"bible", "-f", "Gen1:1-Rev22:21"}}, {"out", "corpus"}, {"val_fraction", 0.05}};
  const SweepSpec spec = read(document);
  EXPECT_THAT(spec.data.prepare.command, ElementsAre("bible", "-f", "Gen1:1-Rev22:21"));
  EXPECT_EQ(spec.data.prepare.out, "corpus");
  EXPECT_DOUBLE_EQ(spec.data.prepare.val_fraction, 0.05);
  EXPECT_EQ(spec.data.prepare.held_out, HeldOut::kTail);
  EXPECT_TRUE(spec.data.prepare.text_files.empty());
  EXPECT_EQ(spec.data.folder, std::filesystem::current_path().string());

  document["data"]["prepare"]["held_out"] = "sample";
  EXPECT_EQ(read(document).data.prepare.held_out, HeldOut::kSample);
}

TEST(SweepSpec, DataPreparationProblemsNameTheirFields) {
  nlohmann::json both = valid_sweep();
  both["data"]["prepare"] = {{"command", {"cat"}}, {"text", {"a.txt"}}, {"out", "d"}};
  EXPECT_THAT(problems_of(both), ElementsAre(HasSubstr("data.prepare = {\"command\"")));

  nlohmann::json bad = valid_sweep();
  bad["data"]["prepare"] = {
      {"text", {"a.txt"}}, {"val_fraction", 1.5}, {"outt", "d"}, {"held_out", "random"}};
  const auto problems = problems_of(bad);
  ASSERT_EQ(problems.size(), 4u) << ::testing::PrintToString(problems);
  EXPECT_THAT(problems[0], HasSubstr("data.prepare.outt"));
  EXPECT_THAT(problems[0], HasSubstr("did you mean 'out'"));
  EXPECT_THAT(problems[1], HasSubstr("data.prepare.held_out = \"random\": expected \"tail\""));
  EXPECT_THAT(problems[2], HasSubstr("data.prepare.out = (missing)"));
  EXPECT_THAT(problems[3], HasSubstr("data.prepare.val_fraction = 1.5: expected a fraction"));
}

TEST(SweepSpec, TheBosTokenAndTheTokenizerAreReadAndReachEveryJob) {
  nlohmann::json document = valid_sweep();
  document["data"]["bos_token"] = 2;
  document["data"]["prepare"] = {{"text", {"a.txt"}},
                                 {"out", "corpus"},
                                 {"documents", "paragraph"},
                                 {"tokenizer", "sentencepiece"},
                                 {"vocab_size", 32768},
                                 {"tokenizer_model", "bpe.model"}};
  const SweepSpec spec = read(document);
  EXPECT_EQ(spec.data.bos_token, 2);
  EXPECT_EQ(spec.data.prepare.documents, DocumentSplit::kParagraph);
  EXPECT_EQ(spec.data.prepare.tokenizer.kind, "sentencepiece");
  EXPECT_EQ(spec.data.prepare.tokenizer.vocab_size, 32768);
  EXPECT_EQ(spec.data.prepare.tokenizer.model, "bpe.model");
  const Plan plan = plan_sweep(spec);
  ASSERT_FALSE(plan.cells.empty());
  for (const PlannedCell& cell : plan.cells)
    EXPECT_EQ(cell.job.data.bos_token, 2);

  // Without one, jobs read random windows, as sweep files written before documents did.
  const Plan windows = plan_sweep(read(valid_sweep()));
  ASSERT_FALSE(windows.cells.empty());
  EXPECT_FALSE(windows.cells.front().job.data.documents());
}

TEST(SweepSpec, BadDataSettingsNameTheirFields) {
  nlohmann::json document = valid_sweep();
  document["data"]["bos_token"] = -3;
  document["data"]["prepare"] = {
      {"text", {"a.txt"}}, {"out", "corpus"}, {"documents", "chapter"}, {"tokenizer", "wordpiece"}};
  const auto problems = problems_of(document);
  ASSERT_EQ(problems.size(), 3u) << ::testing::PrintToString(problems);
  EXPECT_THAT(problems, Contains(HasSubstr("data.bos_token = -3: expected a token id >= 0")));
  EXPECT_THAT(problems, Contains(HasSubstr("data.prepare.documents = \"chapter\"")));
  EXPECT_THAT(problems, Contains(HasSubstr("data.prepare.tokenizer = \"wordpiece\"")));
}

}  // namespace
}  // namespace parcae::sweeps
