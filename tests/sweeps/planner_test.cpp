// The isoFLOP planner against parcae.md §11's known answers (the 140M sweep check values and the
// worked example), and its promises: every kept cell meets its budget within 1%, budgets keep
// their ids, cells that cannot be trained sensibly are flagged, and planning is repeatable.
#include "sweeps/planner.h"

#include <cmath>
#include <filesystem>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Plan plan_document(const nlohmann::json& document) {
  SweepReadOptions options;
  options.require_data = false;
  return plan_sweep(sweep_spec_from_json(document, "test.json", options));
}

nlohmann::json sweep_140m() {
  return {{"name", "mu-140m"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", "parcae-140m"},
          {"budgets", {{{"id", "1e18"}, {"flops", 1e18}}}},
          {"axes", {{"mean_recurrence", {"1-fixed", 2, 4, 6, 8, 10, 12}}}},
          {"training", {{"batch_tokens", 524288}, {"micro_batch_size", 32}}}};
}

std::string example(const std::string& name) {
  return std::string(PARCAE_SOURCE_DIR) + "/sweeps/examples/" + name;
}

TEST(Planner, TokensAtOneE18MatchTheSpecsSweepCheckValues) {
  // parcae.md §11, "140M sweep check values": F and D = floor(1e18 / F) for mu = 1..12; the
  // "1-fixed" control is F(1, 1), the same line as mu = 1.
  const Plan plan = plan_document(sweep_140m());
  ASSERT_EQ(plan.cells.size(), 7u);
  const int64_t flops[] = {
      828190080, 869091072, 1032695040, 1196299008, 1359902976, 1523506944, 1687110912};
  const int64_t tokens[] = {
      1207452279, 1150627399, 968340082, 835911417, 735346578, 656380336, 592729258};
  const int mu_bwd[] = {1, 1, 2, 3, 4, 5, 6};
  for (size_t i = 0; i < 7; ++i) {
    SCOPED_TRACE(plan.cells[i].name);
    EXPECT_EQ(plan.cells[i].flops_per_token, flops[i]);
    EXPECT_EQ(plan.cells[i].train_tokens, tokens[i]);
    EXPECT_EQ(plan.cells[i].job.train_tokens, tokens[i]);
    EXPECT_EQ(plan.cells[i].mean_backward, mu_bwd[i]);
  }
  EXPECT_TRUE(plan.cells[0].fixed_depth);
  EXPECT_EQ(plan.cells[0].job.model.depth_sampler, DepthSampler::kFixed);
  EXPECT_FALSE(plan.cells[1].fixed_depth);
}

TEST(Planner, WorkedExampleGivesItsStepsTokensAndRealisedBudget) {
  // parcae.md §11 worked example, step 7: mu = 8 at 1e18 trains 1,402 steps of 524,288 tokens,
  // 735,051,776 tokens, realised C = 9.9960e17.
  const Plan plan = plan_document(sweep_140m());
  const PlannedCell& cell = plan.cells[4];
  EXPECT_EQ(cell.name, "C1e18-mu8-seed0");
  EXPECT_EQ(cell.parameters.core, 14159040);
  EXPECT_EQ(cell.parameters.noncore, 104998272);
  EXPECT_EQ(cell.parameters.total, 144323136);
  EXPECT_EQ(cell.steps, 1402);
  EXPECT_EQ(cell.trained_tokens, 735051776);
  EXPECT_DOUBLE_EQ(cell.achieved_flops, 735051776.0 * 1359902976.0);
  EXPECT_NEAR(cell.achieved_flops, 9.9960e17, 0.00005e17);
  EXPECT_NEAR(cell.flop_gap, 1.0 - 9.9960e17 / 1e18, 1e-5);
  EXPECT_EQ(cell.job.max_steps(), 1402);
}

TEST(Planner, EveryCellOfThePaperSweepMeetsItsBudgetWithinOnePercent) {
  SweepReadOptions options;
  options.require_data = false;
  const Plan plan = plan_sweep(read_sweep_file(example("isoflop-mu-140m.json"), options));
  ASSERT_EQ(plan.cells.size(), 48u);
  EXPECT_EQ(plan.totals.flagged, 0);
  for (const PlannedCell& cell : plan.cells) {
    SCOPED_TRACE(cell.name);
    EXPECT_GE(cell.flop_gap, 0.0);
    EXPECT_LT(cell.flop_gap, 0.01);
    EXPECT_LE(cell.achieved_flops, cell.budget_flops);
    // Less than one optimizer step short of the budget.
    EXPECT_LT(cell.budget_flops - cell.achieved_flops,
              524288.0 * static_cast<double>(cell.flops_per_token) +
                  static_cast<double>(cell.flops_per_token));
  }
}

TEST(Planner, EveryCellsJobIdIsItsJobsId) {
  nlohmann::json document = sweep_140m();
  document["axes"]["seed"] = {0, 1};
  document["budgets"].push_back({{"id", "2e18"}, {"flops", 2e18}});
  const Plan plan = plan_document(document);
  ASSERT_GT(plan.cells.size(), 10u);
  for (const auto& cell : plan.cells)
    EXPECT_EQ(cell.job_id, cell.job.id()) << cell.name;
}

TEST(Planner, BudgetsKeepTheirIdsAsWritten) {
  nlohmann::json document = sweep_140m();
  document["budgets"] = {{{"id", "16e18"}, {"flops", 1.6e19}},
                         {{"id", "64e18"}, {"flops", 6.4e19}}};
  document["axes"]["mean_recurrence"] = {8};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 2u);
  EXPECT_EQ(plan.cells[0].budget_id, "16e18");
  EXPECT_EQ(plan.cells[0].name, "C16e18-mu8-seed0");
  EXPECT_EQ(plan.cells[1].budget_id, "64e18");
  EXPECT_EQ(plan.cells[1].job.budget_id, "64e18");
  EXPECT_DOUBLE_EQ(plan.cells[1].budget_flops, 6.4e19);
}

TEST(Planner, GeneratedBudgetsGetTheirShortestSpellingAsId) {
  nlohmann::json document = sweep_140m();
  document["budgets"] = {{"logspace", {1e18, 6.4e19, 7}}};
  document["axes"]["mean_recurrence"] = {4};
  const Plan plan = plan_document(document);
  std::vector<std::string> ids;
  for (const auto& cell : plan.cells)
    ids.push_back(cell.budget_id);
  EXPECT_THAT(ids, ElementsAre("1e18", "2e18", "4e18", "8e18", "1.6e19", "3.2e19", "6.4e19"));
  EXPECT_DOUBLE_EQ(plan.cells.back().budget_flops, 6.4e19);
}

// A logspace between powers of ten: ids of three significant digits, not "2.15443e11".
TEST(Planner, GeneratedBudgetsBetweenRoundNumbersGetShortDistinctIds) {
  nlohmann::json document = sweep_140m();
  document["budgets"] = {{"logspace", {1e18, 1e19, 4}}};
  document["axes"]["mean_recurrence"] = {4};
  const Plan plan = plan_document(document);
  std::vector<std::string> ids;
  for (const auto& cell : plan.cells)
    ids.push_back(cell.budget_id);
  EXPECT_THAT(ids, ElementsAre("1e18", "2.15e18", "4.64e18", "1e19"));
  EXPECT_DOUBLE_EQ(plan.cells[1].budget_flops, 1e18 * std::pow(10.0, 1.0 / 3.0));
  // Values that three digits cannot tell apart get as many digits as they need.
  EXPECT_THAT(budget_ids_for({1.0001e18, 1.0002e18}), ElementsAre("1.0001e18", "1.0002e18"));
}

// The width axis keeps head_dim, so n_heads = d / head_dim, and d_ff stays 4d.
TEST(Planner, WidthAxisSetsHeadsAndFeedForwardFromTheWidth) {
  nlohmann::json document = sweep_140m();
  document["axes"] = {{"d_model", {512, 768, 1024}}, {"mean_recurrence", {4}}};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 3u);
  EXPECT_EQ(plan.cells[0].name, "C1e18-d512-mu4-seed0");
  const int widths[] = {512, 768, 1024};
  for (size_t i = 0; i < 3; ++i) {
    const ModelConfig& m = plan.cells[i].job.model;
    EXPECT_EQ(m.d_model, widths[i]);
    EXPECT_EQ(m.head_dim, 128);
    EXPECT_EQ(m.n_heads, widths[i] / 128);
    EXPECT_EQ(m.d_ff, 4 * widths[i]);
  }
  EXPECT_LT(plan.cells[0].parameters.total, plan.cells[2].parameters.total);
}

TEST(Planner, AWidthThatIsNotAMultipleOfHeadDimIsAnErrorNamingTheField) {
  nlohmann::json document = sweep_140m();
  document["axes"] = {{"d_model", {512, 700}}};
  try {
    plan_document(document);
    FAIL() << "expected SweepFileError";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("axes.d_model[1] = 700"));
    EXPECT_THAT(e.what(), HasSubstr("multiple of head_dim = 128"));
  }
}

// Each budget may carry its own widths: a size grid that shifts with C.
TEST(Planner, ABudgetsOwnAxesReplaceTheSweepsForItsCells) {
  nlohmann::json document = sweep_140m();
  document["budgets"] = {
      {{"id", "1e18"}, {"flops", 1e18}, {"axes", {{"d_model", {512, 768}}}}},
      {{"id", "4e18"}, {"flops", 4e18}, {"axes", {{"d_model", {768, 1024, 1280}}}}},
      {{"id", "8e18"}, {"flops", 8e18}}};
  document["axes"] = {{"d_model", {640}}, {"mean_recurrence", {4}}};
  const Plan plan = plan_document(document);
  std::vector<std::string> names;
  for (const auto& cell : plan.cells)
    names.push_back(cell.name);
  EXPECT_THAT(names,
              ElementsAre("C1e18-d512-mu4-seed0",
                          "C1e18-d768-mu4-seed0",
                          "C4e18-d768-mu4-seed0",
                          "C4e18-d1024-mu4-seed0",
                          "C4e18-d1280-mu4-seed0",
                          "C8e18-d640-mu4-seed0"));
  document["budgets"][0]["axes"] = {{"seed", {1}}};
  try {
    plan_document(document);
    FAIL() << "expected SweepFileError";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(), HasSubstr("budgets[0].axes.seed"));
    EXPECT_THAT(e.what(), HasSubstr("unknown field"));
  }
}

TEST(Planner, CellsWithTooFewStepsAreFlaggedAndLeftOut) {
  nlohmann::json document = sweep_140m();
  // At 1e17 the mu = 12 cell gets floor(59,272,925 / 524,288) = 113 steps, under 200.
  document["budgets"] = {{{"id", "1e17"}, {"flops", 1e17}}, {{"id", "1e18"}, {"flops", 1e18}}};
  document["axes"]["mean_recurrence"] = {2, 12};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 4u);
  EXPECT_EQ(plan.cells[1].name, "C1e17-mu12-seed0");
  EXPECT_EQ(plan.cells[1].steps, 113);
  ASSERT_TRUE(plan.cells[1].flagged());
  EXPECT_THAT(plan.cells[1].flags[0],
              HasSubstr("113 optimizer steps, fewer than plan.min_steps = 200"));
  EXPECT_FALSE(plan.cells[1].kept);
  EXPECT_EQ(plan.totals.cells, 4);
  EXPECT_EQ(plan.totals.flagged, 1);
  EXPECT_EQ(plan.totals.jobs, 3);
  EXPECT_EQ(plan.jobs().size(), 3u);
  EXPECT_THAT(to_table(plan), HasSubstr("flagged C1e17-mu12-seed0: only 113 optimizer steps"));

  document["plan"] = {{"keep_flagged", true}};
  const Plan kept = plan_document(document);
  EXPECT_TRUE(kept.cells[1].flagged());
  EXPECT_TRUE(kept.cells[1].kept);
  EXPECT_EQ(kept.totals.jobs, 4);
}

TEST(Planner, ModelTooLargeForTheBudgetIsFlaggedWithZeroSteps) {
  nlohmann::json document = sweep_140m();
  document["budgets"] = {{{"id", "1e14"}, {"flops", 1e14}}};
  document["axes"]["mean_recurrence"] = {8};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 1u);
  EXPECT_EQ(plan.cells[0].steps, 0);
  EXPECT_THAT(plan.cells[0].flags[0], HasSubstr("too large for the budget"));
  EXPECT_EQ(plan.totals.jobs, 0);
}

TEST(Planner, AchievedFlopsMoreThanTheAllowedGapShortAreFlagged) {
  nlohmann::json document = sweep_140m();
  // 1.5 steps' worth of FLOPs at mu = 2: one step is trained, a third of the budget is missed.
  const double step_flops = 524288.0 * 869091072.0;
  document["budgets"] = {{{"id", "tiny"}, {"flops", 1.5 * step_flops}}};
  document["axes"]["mean_recurrence"] = {2};
  document["plan"] = {{"min_steps", 0}};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 1u);
  EXPECT_EQ(plan.cells[0].steps, 1);
  EXPECT_NEAR(plan.cells[0].flop_gap, 1.0 / 3.0, 1e-6);
  ASSERT_EQ(plan.cells[0].flags.size(), 1u);
  EXPECT_THAT(plan.cells[0].flags[0], HasSubstr("more than plan.max_flop_gap = 1%"));
}

TEST(Planner, FixedDataCellsTrainTheGivenTokensWithoutABudget) {
  nlohmann::json document = sweep_140m();
  document.erase("budgets");
  document["axes"] = {{"mean_recurrence", {4}}, {"train_tokens", {{"logspace", {1e9, 4e9, 3}}}}};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 3u);
  EXPECT_EQ(plan.cells[0].name, "D1000000000-mu4-seed0");
  EXPECT_EQ(plan.cells[1].train_tokens, 2000000000);
  EXPECT_EQ(plan.cells[2].steps, 4000000000 / 524288);
  EXPECT_TRUE(plan.cells[2].budget_id.empty());
  EXPECT_EQ(plan.cells[2].flop_gap, 0.0);
  EXPECT_FALSE(plan.cells[2].flagged());
}

TEST(Planner, ModelAxisNamesCellsByModelAndVariesTheirSize) {
  nlohmann::json document = sweep_140m();
  document.erase("model");
  document["axes"] = {{"model", {"transformer-140m", "transformer-370m"}}, {"seed", {0, 1}}};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 4u);
  EXPECT_EQ(plan.cells[0].name, "C1e18-transformer-140m-seed0");
  EXPECT_EQ(plan.cells[3].name, "C1e18-transformer-370m-seed1");
  // parcae.md §7 and §11: F_transformer at 140M; the Transformer-140M gets 1e18 / F tokens.
  EXPECT_EQ(plan.cells[0].flops_per_token, 821098368);
  EXPECT_EQ(plan.cells[0].train_tokens, static_cast<int64_t>(1e18 / 821098368.0));
  EXPECT_EQ(plan.cells[2].parameters.total, 385903104);
  EXPECT_NE(plan.cells[0].job_id, plan.cells[1].job_id);
}

TEST(Planner, LayerAxisChangesTheModelsDepth) {
  nlohmann::json document = sweep_140m();
  document["model"] = "transformer-140m";
  document["axes"] = {{"n_layers", {{"range", {4, 8, 2}}}}};
  const Plan plan = plan_document(document);
  ASSERT_EQ(plan.cells.size(), 3u);
  EXPECT_EQ(plan.cells[0].name, "C1e18-L4-seed0");
  EXPECT_EQ(plan.cells[2].job.model.n_layers, 8);
  EXPECT_LT(plan.cells[0].flops_per_token, plan.cells[2].flops_per_token);
}

TEST(Planner, PlanningTwiceGivesTheSameJobIds) {
  const Plan first = plan_document(sweep_140m());
  const Plan second = plan_document(sweep_140m());
  std::set<std::string> ids;
  for (size_t i = 0; i < first.cells.size(); ++i) {
    EXPECT_EQ(first.cells[i].job_id, second.cells[i].job_id);
    EXPECT_EQ(first.cells[i].job_id, first.cells[i].job.id());
    ids.insert(first.cells[i].job_id);
  }
  EXPECT_EQ(ids.size(), first.cells.size());
}

TEST(Planner, JsonAndCsvCarryEveryCellAndTheTotals) {
  const Plan plan = plan_document(sweep_140m());
  const nlohmann::json j = to_json(plan);
  ASSERT_EQ(j.at("cells").size(), 7u);
  EXPECT_EQ(j.at("cells")[4].at("train_tokens"), 735346578);
  EXPECT_EQ(j.at("cells")[4].at("parameters_core"), 14159040);
  EXPECT_EQ(j.at("totals").at("jobs"), 7);
  const std::string csv = to_csv(plan);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 8);
  EXPECT_THAT(csv, HasSubstr("C1e18-mu8-seed0,"));
  EXPECT_THAT(csv, HasSubstr(",735346578,1402,735051776,"));
}

TEST(Planner, JobsThatFailValidationAreErrorsNamingTheCell) {
  nlohmann::json document = sweep_140m();
  document["training"]["batch_tokens"] = 1000000;  // not a multiple of the context length 2048
  try {
    plan_document(document);
    FAIL() << "an invalid job was planned";
  } catch (const SweepFileError& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("test.json: cell C1e18-mu1fixed-seed0: training.batch_tokens = 1000000"));
  }
}

TEST(Planner, TinyCpuExampleHasBetweenFiftyAndThreeHundredStepsPerCell) {
  SweepReadOptions options;
  options.require_data = false;
  const SweepSpec spec = read_sweep_file(example("tiny-cpu.json"), options);
  const Plan plan = plan_sweep(spec);
  EXPECT_GE(spec.budgets.size(), 3u);
  EXPECT_GE(spec.axes.mean_recurrence.size(), 4u);
  EXPECT_EQ(plan.totals.flagged, 0);
  for (const PlannedCell& cell : plan.cells) {
    SCOPED_TRACE(cell.name);
    EXPECT_GE(cell.steps, 50);
    EXPECT_LE(cell.steps, 300);
    EXPECT_EQ(cell.job.device, "cpu");
  }
}

TEST(Planner, EveryExampleSweepPlansWithoutErrors) {
  SweepReadOptions options;
  options.require_data = false;
  int files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(PARCAE_SOURCE_DIR) + "/sweeps/examples")) {
    if (entry.path().extension() != ".json")
      continue;
    SCOPED_TRACE(entry.path().string());
    ++files;
    const Plan plan = plan_sweep(read_sweep_file(entry.path().string(), options));
    EXPECT_GT(plan.totals.jobs, 0);
    EXPECT_EQ(plan.totals.flagged, 0);
    EXPECT_LT(plan.totals.max_flop_gap, 0.01);
  }
  EXPECT_GE(files, 6);
}

}  // namespace
}  // namespace parcae::sweeps
