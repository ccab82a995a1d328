// The settings that make a plan follow the paper: per-size learning rates carried by the
// presets, the two mu_rec = 1 controls, the two FLOP conventions, and the epochs each cell's D
// implies against the corpus it trains on (parcae.md §6, §7, §11; docs/flops.md).
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "sweeps/planner.h"
#include "sweeps/sweep_spec.h"
#include "sweeps/token_shards.h"
#include "tests/support/scratch_dir.h"

namespace parcae::sweeps {
namespace {

using test_support::ScratchDir;
using ::testing::HasSubstr;

SweepSpec read_document(const nlohmann::json& document) {
  SweepReadOptions options;
  options.require_data = false;
  return sweep_spec_from_json(document, "test.json", options);
}

Plan plan_document(const nlohmann::json& document) {
  return plan_sweep(read_document(document));
}

std::string example(const std::string& name) {
  return std::string(PARCAE_SOURCE_DIR) + "/sweeps/examples/" + name;
}

nlohmann::json size_sweep() {
  return {{"name", "sizes"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"budgets", {{{"id", "64e18"}, {"flops", 6.4e19}}}},
          {"axes",
           {{"model",
             {"parcae-770m", {{"preset", "parcae-1.3b"}, {"training", {{"adamw_lr", 5e-3}}}}}}}},
          {"training", {{"batch_tokens", 524288}, {"micro_batch_size", 16}}}};
}

// ---- per-size hyperparameters (parcae.md §7)

TEST(PaperSettings, PresetsCarryThePapersAdamwRatePerSize) {
  for (const char* variant : {"parcae", "transformer", "rdm"}) {
    SCOPED_TRACE(variant);
    const std::string v = variant;
    EXPECT_EQ(preset_training(v + "-140m"), (nlohmann::json{{"adamw_lr", 8e-3}}));
    EXPECT_EQ(preset_training(v + "-370m"), (nlohmann::json{{"adamw_lr", 8e-3}}));
    EXPECT_EQ(preset_training(v + "-770m"), (nlohmann::json{{"adamw_lr", 6e-3}}));
    EXPECT_EQ(preset_training(v + "-1.3b"), (nlohmann::json{{"adamw_lr", 6e-3}}));
  }
  // Shapes the paper never trained keep TrainingConfig's defaults.
  EXPECT_EQ(preset_training("parcae-tiny"), nlohmann::json::object());
  EXPECT_EQ(preset_training("custom"), nlohmann::json::object());
  EXPECT_EQ(preset_training("parcae-2b"), nlohmann::json::object());
}

TEST(PaperSettings, TheTransformerSizeExamplePlansEachSizeWithItsOwnRate) {
  SweepReadOptions options;
  options.require_data = false;
  const Plan plan = plan_sweep(read_sweep_file(example("isoflop-size-transformer.json"), options));
  ASSERT_GT(plan.totals.jobs, 0);
  int seen_large = 0;
  for (const PlannedCell& cell : plan.cells) {
    SCOPED_TRACE(cell.name);
    const bool large =
        cell.model_label == "transformer-770m" || cell.model_label == "transformer-1.3b";
    seen_large += large ? 1 : 0;
    EXPECT_DOUBLE_EQ(cell.job.training.adamw_lr, large ? 6e-3 : 8e-3);
    EXPECT_DOUBLE_EQ(cell.job.training.muon_lr, 8e-3);
  }
  EXPECT_GT(seen_large, 0);
}

TEST(PaperSettings, TheSweepsRateReplacesThePresetsAndTheModelsReplacesBoth) {
  const Plan presets = plan_document(size_sweep());
  ASSERT_EQ(presets.cells.size(), 2u);
  EXPECT_DOUBLE_EQ(presets.cells[0].job.training.adamw_lr, 6e-3);  // parcae-770m's own
  EXPECT_DOUBLE_EQ(presets.cells[1].job.training.adamw_lr, 5e-3);  // the model's override

  nlohmann::json document = size_sweep();
  document["training"]["adamw_lr"] = 7e-3;
  const Plan swept = plan_document(document);
  EXPECT_DOUBLE_EQ(swept.cells[0].job.training.adamw_lr, 7e-3);
  EXPECT_DOUBLE_EQ(swept.cells[1].job.training.adamw_lr, 5e-3);
  EXPECT_NE(swept.cells[0].job_id, presets.cells[0].job_id);
  EXPECT_EQ(swept.cells[1].job_id, presets.cells[1].job_id);
}

TEST(PaperSettings, AModelsOwnBatchChangesItsSteps) {
  nlohmann::json document = size_sweep();
  document["axes"]["model"][1]["training"]["batch_tokens"] = 1048576;
  const Plan plan = plan_document(document);
  EXPECT_EQ(plan.cells[1].job.training.batch_tokens, 1048576);
  EXPECT_EQ(plan.cells[1].steps, plan.cells[1].train_tokens / 1048576);
  EXPECT_EQ(plan.cells[0].steps, plan.cells[0].train_tokens / 524288);
}

TEST(PaperSettings, ABadKeyInAModelsTrainingIsNamedWithItsModel) {
  nlohmann::json document = size_sweep();
  document["axes"]["model"][1]["training"] = {{"adamw_rl", 5e-3}};
  try {
    read_document(document);
    FAIL() << "an unknown training key was accepted";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("test.json: axes.model[1].training.adamw_rl"));
    EXPECT_THAT(e.what(), HasSubstr("adamw_lr"));
  }
}

// ---- the two mu_rec = 1 controls (parcae.md §6)

nlohmann::json controls_sweep() {
  return {{"name", "controls"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", "parcae-140m"},
          {"budgets", {{{"id", "1e18"}, {"flops", 1e18}}}},
          {"axes", {{"mean_recurrence", {"1-fixed", "1-poisson", 2}}}},
          {"training", {{"batch_tokens", 524288}, {"micro_batch_size", 32}}}};
}

TEST(PaperSettings, BothMuRecOneControlsCostOneLoopAndPlanAsDifferentJobs) {
  const Plan plan = plan_document(controls_sweep());
  ASSERT_EQ(plan.cells.size(), 3u);
  const PlannedCell& fixed = plan.cells[0];
  const PlannedCell& poisson = plan.cells[1];
  EXPECT_EQ(fixed.name, "C1e18-mu1fixed-seed0");
  EXPECT_EQ(poisson.name, "C1e18-mu1poisson-seed0");
  EXPECT_EQ(fixed.recurrence_label, "1-fixed");
  EXPECT_EQ(poisson.recurrence_label, "1-poisson");
  EXPECT_EQ(plan.cells[2].recurrence_label, "2");
  EXPECT_EQ(fixed.job.model.depth_sampler, DepthSampler::kFixed);
  EXPECT_EQ(poisson.job.model.depth_sampler, DepthSampler::kPoisson);
  EXPECT_EQ(poisson.job.model.mean_recurrence, 1);
  EXPECT_EQ(poisson.job.model.mean_backward, 1);
  EXPECT_TRUE(fixed.fixed_depth);
  EXPECT_FALSE(poisson.fixed_depth);
  // The job says it is the Poisson control, which its sampler alone cannot (scaling-laws.md §2).
  EXPECT_TRUE(poisson.job.poisson_control);
  EXPECT_FALSE(fixed.job.poisson_control);
  EXPECT_FALSE(plan.cells[2].job.poisson_control);
  // parcae.md §11: F(1, 1) = 828,190,080 for both, as [R] charges its Poisson control.
  EXPECT_EQ(fixed.flops_per_token, 828190080);
  EXPECT_EQ(poisson.flops_per_token, 828190080);
  EXPECT_EQ(fixed.train_tokens, poisson.train_tokens);
  EXPECT_NE(fixed.job_id, poisson.job_id);
  const std::string table = to_table(plan);
  EXPECT_THAT(table, HasSubstr("1 fixed"));
  EXPECT_THAT(table, HasSubstr("1 poisson"));
  EXPECT_THAT(to_csv(plan), HasSubstr(",1-poisson,"));
  EXPECT_EQ(to_json(plan).at("cells")[0].at("recurrence"), "1-fixed");
}

TEST(PaperSettings, ABareOneIsAPointOfTheAxisThatSamplesAsThePoissonControlDoes) {
  nlohmann::json document = controls_sweep();
  document["axes"]["mean_recurrence"] = {1, "1-poisson", 2};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 3u);
  const PlannedCell& point = plan.cells[0];
  const PlannedCell& control = plan.cells[1];
  EXPECT_EQ(point.name, "C1e18-mu1-seed0");
  EXPECT_EQ(point.recurrence_label, "1");
  EXPECT_EQ(control.recurrence_label, "1-poisson");
  // The same training; only the control is marked, so the fits keep the point and not it.
  EXPECT_EQ(to_json(point.job.model), to_json(control.job.model));
  EXPECT_EQ(point.train_tokens, control.train_tokens);
  EXPECT_FALSE(point.job.poisson_control);
  EXPECT_TRUE(control.job.poisson_control);
  EXPECT_NE(point.job_id, control.job_id);
  EXPECT_THAT(to_table(plan), HasSubstr(" 1/1 "));
  EXPECT_THAT(to_csv(plan), HasSubstr(",1,1,0,1,"));  // mu_rec, mu_bwd, fixed_depth, recurrence
  EXPECT_EQ(to_json(plan).at("cells")[0].at("recurrence"), "1");

  document["axes"]["mean_recurrence"] = {"1-poisson", 2, "1-poisson"};
  try {
    read_document(document);
    FAIL() << "the same control was accepted twice";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("axes.mean_recurrence[2] = 1-poisson: appears twice"));
  }
  document["axes"]["mean_recurrence"] = {"1-poison"};
  try {
    read_document(document);
    FAIL() << "a misspelt control was accepted";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("1-poisson"));
  }
}

// ---- the two FLOP conventions (docs/flops.md)

TEST(PaperSettings, ThePaperConventionGivesMoreTokensAndEveryJobRecordsIt) {
  nlohmann::json document = controls_sweep();
  document["axes"]["mean_recurrence"] = {8};
  const Plan reference = plan_document(document);
  document["flop_convention"] = "paper";
  const Plan paper = plan_document(document);
  ASSERT_EQ(paper.cells.size(), 1u);
  EXPECT_EQ(reference.cells[0].job.flop_convention, FlopConvention::kReference);
  EXPECT_EQ(reference.cells[0].train_tokens, 735346578);  // parcae.md §11 step 7
  EXPECT_EQ(paper.flop_convention, FlopConvention::kPaper);
  EXPECT_EQ(paper.cells[0].job.flop_convention, FlopConvention::kPaper);
  EXPECT_EQ(paper.cells[0].flops_per_token, 1057913088);
  EXPECT_EQ(paper.cells[0].train_tokens, 945257234);  // floor(1e18 / 1,057,913,088)
  EXPECT_EQ(to_json(paper.cells[0].job).at("flop_convention"), "paper");
  EXPECT_NE(paper.cells[0].job_id, reference.cells[0].job_id);
  EXPECT_THAT(to_table(paper), HasSubstr("FLOPs: the paper convention"));
  EXPECT_EQ(to_json(paper).at("flop_convention"), "paper");
}

TEST(PaperSettings, AnUnknownConventionIsNamedWithTheTwoThatExist) {
  nlohmann::json document = controls_sweep();
  document["flop_convention"] = "nanochat";
  try {
    read_document(document);
    FAIL() << "an unknown convention was accepted";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("test.json: flop_convention = \"nanochat\": unknown value"));
  }
}

// ---- epochs against the corpus

// A sweep over fixed token counts of parcae-micro (context 32) on shards written into `dir`.
nlohmann::json epochs_sweep() {
  return {{"name", "epochs"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", {{"preset", "parcae-micro"}}},
          {"axes", {{"mean_recurrence", {2}}, {"train_tokens", {5120, 20480, 40960}}}},
          {"training", {{"batch_tokens", 1024}, {"micro_batch_size", 32}}},
          {"plan", {{"min_steps", 1}}}};
}

TEST(PaperSettings, EachCellReportsItsEpochsAndCellsOverOneAreWarnedWithTheShareRepeated) {
  const ScratchDir dir;
  write_token_shard(dir.file("train_000.bin"), std::vector<uint16_t>(6000, 7));
  write_token_shard(dir.file("train_001.bin"), std::vector<uint16_t>(4000, 9));
  write_token_shard(dir.file("val_000.bin"), std::vector<uint16_t>(500, 1));
  SweepReadOptions options;
  options.data_dir = dir.path();
  const SweepSpec spec = sweep_spec_from_json(epochs_sweep(), "test.json", options);
  const CorpusSize corpus = measure_corpus(spec);
  EXPECT_EQ(corpus.train_tokens, 10000);
  EXPECT_FALSE(corpus.estimated);
  EXPECT_EQ(corpus.note, "counted in 2 shards");

  const Plan plan = plan_sweep(spec, corpus);
  ASSERT_EQ(plan.cells.size(), 3u);
  EXPECT_DOUBLE_EQ(plan.cells[0].epochs, 0.512);
  EXPECT_DOUBLE_EQ(plan.cells[1].epochs, 2.048);
  EXPECT_DOUBLE_EQ(plan.cells[2].epochs, 4.096);
  EXPECT_TRUE(plan.cells[0].warnings.empty());
  ASSERT_EQ(plan.cells[1].warnings.size(), 1u);
  // 1 - 1/2.048 = 0.5117...: half the tokens of that cell are seen a second time.
  EXPECT_EQ(plan.cells[1].warnings[0],
            "D = 20480 tokens is 2.05 epochs of the 10000-token training set: 51.2% of the "
            "tokens it trains on repeat earlier ones");
  EXPECT_THAT(plan.cells[2].warnings[0], HasSubstr("75.6%"));
  // A warning, not a flag: the cells are still jobs.
  EXPECT_EQ(plan.totals.jobs, 3);
  EXPECT_EQ(plan.totals.flagged, 0);
  EXPECT_EQ(plan.totals.repeating, 2);
  EXPECT_DOUBLE_EQ(plan.totals.max_epochs, 4.096);
  const std::string table = to_table(plan);
  EXPECT_THAT(table, HasSubstr("corpus: 10000 training tokens (counted in 2 shards)"));
  EXPECT_THAT(table, HasSubstr("over one epoch D40960-mu2-seed0: D = 40960 tokens is 4.1 epochs"));
  EXPECT_EQ(to_json(plan).at("cells")[1].at("epochs"), 2.048);
  EXPECT_EQ(to_json(plan).at("corpus").at("train_tokens"), 10000);
}

TEST(PaperSettings, WithoutShardsTheCorpusIsEstimatedFromTextOrSaidToBeUnknown) {
  const ScratchDir dir;
  std::ofstream(dir.file("corpus.txt")) << std::string(1000, 'a');
  nlohmann::json document = epochs_sweep();
  document["data"]["prepare"] = {{"text", {"corpus.txt"}}, {"out", "shards"}};
  SweepReadOptions options;
  options.data_dir = dir.path();
  options.require_data = false;
  const CorpusSize estimate = measure_corpus(sweep_spec_from_json(document, "test.json", options));
  EXPECT_EQ(estimate.train_tokens, 900);  // one token per byte, less the 10% held out
  EXPECT_TRUE(estimate.estimated);
  EXPECT_THAT(to_table(plan_sweep(sweep_spec_from_json(document, "test.json", options), estimate)),
              HasSubstr("corpus: about 900 training tokens"));

  document["data"]["prepare"] = {{"command", {"bible", "-f", "Gen1:1"}}, {"out", "shards"}};
  const SweepSpec spec = sweep_spec_from_json(document, "test.json", options);
  const CorpusSize unknown = measure_corpus(spec);
  EXPECT_FALSE(unknown.known());
  EXPECT_THAT(unknown.note, HasSubstr("the shards do not exist yet"));
  const Plan plan = plan_sweep(spec, unknown);
  EXPECT_EQ(plan.cells[2].epochs, 0.0);
  EXPECT_TRUE(plan.cells[2].warnings.empty());
  EXPECT_THAT(to_table(plan), HasSubstr("corpus: size unknown (the shards do not exist yet"));
  EXPECT_TRUE(to_json(plan).at("cells")[2].at("epochs").is_null());
}

TEST(PaperSettings, AFileThatIsNotAShardIsNamedInPlaceOfTheCorpusSize) {
  const ScratchDir dir;
  std::ofstream(dir.file("train_000.bin")) << std::string(2048, 'x');
  write_token_shard(dir.file("val_000.bin"), std::vector<uint16_t>(10, 1));
  SweepReadOptions options;
  options.data_dir = dir.path();
  const SweepSpec spec = sweep_spec_from_json(epochs_sweep(), "test.json", options);
  const CorpusSize corpus = measure_corpus(spec);
  EXPECT_FALSE(corpus.known());
  EXPECT_THAT(corpus.note, HasSubstr("train_000.bin: header.magic = 2021161080"));
  EXPECT_THAT(corpus.note, HasSubstr("expected 20240520"));
  EXPECT_THAT(to_table(plan_sweep(spec, corpus)), HasSubstr("corpus: size unknown ("));
}

}  // namespace
}  // namespace parcae::sweeps
