// The refine block of a sweep file, and refinement rounds applied to a sweep's document: the cells
// of a round are the cells a file listing the added values by hand would have, with the same
// names, FLOPs and job ids, and each knows the round that added it.
#include "sweeps/refine.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "tests/support/sweep_reading.h"

namespace parcae::sweeps {
namespace {

using ::testing::HasSubstr;

nlohmann::json refining_sweep() {
  return {{"name", "refined"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
          {"budgets", {1e12, 4e12}},
          {"axes", {{"mean_recurrence", {"1-fixed", 1, 2, 3}}}},
          {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
          {"plan", {{"min_steps", 10}}},
          {"refine",
           {{"axis", "mean_recurrence"},
            {"until", {{"exponent_ci_width", 0.05}}},
            {"max_rounds", 4},
            {"max_flops", 5e13}}}};
}

SweepSpec read(const nlohmann::json& document) {
  return test_support::read_sweep_document(document, "refined.json");
}

std::vector<std::string> problems_of(const nlohmann::json& document) {
  return test_support::sweep_problems(document, "refined.json");
}

TEST(RefineBlock, IsReadWithTheStepDefaultingToTwo) {
  const SweepSpec spec = read(refining_sweep());
  ASSERT_TRUE(spec.has_refine);
  EXPECT_EQ(spec.refine.axis, "mean_recurrence");
  EXPECT_EQ(spec.refine.exponent_ci_width, 0.05);
  EXPECT_EQ(spec.refine.max_rounds, 4);
  EXPECT_EQ(spec.refine.max_flops, 5e13);
  EXPECT_EQ(spec.refine.step, 2.0);
  nlohmann::json without = refining_sweep();
  without.erase("refine");
  EXPECT_FALSE(read(without).has_refine);
}

TEST(RefineBlock, EveryBadFieldIsReportedAtOnceNamingFileFieldAndValue) {
  nlohmann::json doc = refining_sweep();
  doc["refine"]["axis"] = "d_model";
  doc["refine"]["max_rounds"] = 0;
  doc["refine"]["step"] = 1.0;
  doc["refine"]["until"]["exponent_ci_width"] = -1;
  doc["refine"]["rounds"] = 3;
  const auto problems = problems_of(doc);
  std::string all;
  for (const auto& p : problems)
    all += p + "\n";
  EXPECT_THAT(all, HasSubstr("refined.json: refine.axis = \"d_model\""));
  EXPECT_THAT(all, HasSubstr("refine.max_rounds = 0: expected >= 1"));
  EXPECT_THAT(all, HasSubstr("refine.step = 1: expected a ratio > 1"));
  EXPECT_THAT(all, HasSubstr("refine.until.exponent_ci_width = -1"));
  EXPECT_THAT(all, HasSubstr("refine.rounds = 3: unknown field"));
}

TEST(RefineBlock, MissingUntilIsAnError) {
  nlohmann::json doc = refining_sweep();
  doc["refine"].erase("until");
  const auto problems = problems_of(doc);
  ASSERT_FALSE(problems.empty());
  EXPECT_THAT(problems.front(), HasSubstr("refine.until = (missing)"));
}

std::vector<RefineRound> two_rounds() {
  RefineRound first;
  first.round = 1;
  first.action = "refine";
  first.additions = {{"4e12", 4e12, false, {6, 12}, "minimum at the high edge"}};
  RefineRound second;
  second.round = 2;
  second.action = "refine";
  second.additions = {{"1.6e13", 1.6e13, true, {4, 8, 16}, "a further budget"},
                      {"4e12", 4e12, false, {4}, "tighten"}};
  return {first, second};
}

TEST(RefinementRounds, PlanTheCellsOfAFileThatListsTheValuesByHand) {
  const nlohmann::json document = refining_sweep();
  const SweepSpec base = read(document);
  ASSERT_EQ(base.budgets[1].id, "4e12");
  const std::vector<RefineRound> rounds = two_rounds();
  Plan refined = plan_sweep(read(apply_refinement(document, base, rounds)));
  assign_rounds(refined, rounds);

  nlohmann::json by_hand = document;
  by_hand["budgets"] = {
      {{"id", "1e12"}, {"flops", 1e12}},
      {{"id", "4e12"},
       {"flops", 4e12},
       {"axes", {{"mean_recurrence", {"1-fixed", 1, 2, 3, 4, 6, 12}}}}},
      {{"id", "1.6e13"}, {"flops", 1.6e13}, {"axes", {{"mean_recurrence", {4, 8, 16}}}}}};
  const Plan expected = plan_sweep(read(by_hand));

  std::map<std::string, std::string> refined_ids, expected_ids;
  std::map<std::string, int> rounds_of;
  for (const auto& cell : refined.cells) {
    refined_ids[cell.name] = cell.job_id;
    rounds_of[cell.name] = cell.round;
  }
  for (const auto& cell : expected.cells)
    expected_ids[cell.name] = cell.job_id;
  EXPECT_EQ(refined_ids, expected_ids);
  EXPECT_EQ(refined.totals.achieved_flops, expected.totals.achieved_flops);
  EXPECT_EQ(rounds_of.at("C1e12-mu2-seed0"), 0);
  EXPECT_EQ(rounds_of.at("C4e12-mu1fixed-seed0"), 0);
  EXPECT_EQ(rounds_of.at("C4e12-mu12-seed0"), 1);
  EXPECT_EQ(rounds_of.at("C4e12-mu4-seed0"), 2);
  EXPECT_EQ(rounds_of.at("C1.6e13-mu16-seed0"), 2);
}

// A round that reaches mu_rec = 1 adds a point of the axis; the grid's Poisson control stays a
// control of round 0 beside it.
TEST(RefinementRounds, AddAPoissonMuRecOneBesideThePoissonControl) {
  nlohmann::json document = refining_sweep();
  document["axes"]["mean_recurrence"] = {"1-fixed", "1-poisson", 2, 3};
  const SweepSpec base = read(document);
  RefineRound round;
  round.round = 1;
  round.action = "refine";
  round.additions = {{"1e12", 1e12, false, {1}, "minimum at the low edge"}};
  const nlohmann::json applied = apply_refinement(document, base, {round});
  EXPECT_EQ(applied.at("budgets")[0].at("axes").at("mean_recurrence"),
            nlohmann::json({"1-fixed", "1-poisson", 1, 2, 3}));
  EXPECT_EQ(axis_values_of_budget(read(applied), "1e12"), (std::vector<int>{1, 2, 3}));
  Plan plan = plan_sweep(read(applied));
  assign_rounds(plan, {round});
  std::map<std::string, const PlannedCell*> by_name;
  for (const auto& cell : plan.cells)
    by_name[cell.name] = &cell;
  ASSERT_EQ(by_name.count("C1e12-mu1-seed0"), 1u);
  ASSERT_EQ(by_name.count("C1e12-mu1poisson-seed0"), 1u);
  EXPECT_EQ(by_name.at("C1e12-mu1-seed0")->round, 1);
  EXPECT_FALSE(by_name.at("C1e12-mu1-seed0")->job.poisson_control);
  EXPECT_EQ(by_name.at("C1e12-mu1poisson-seed0")->round, 0);
  EXPECT_TRUE(by_name.at("C1e12-mu1poisson-seed0")->job.poisson_control);
  EXPECT_EQ(by_name.at("C1e12-mu1fixed-seed0")->round, 0);
}

TEST(RefinementRounds, GridCellsKeepTheirJobIds) {
  const nlohmann::json document = refining_sweep();
  const SweepSpec base = read(document);
  const Plan grid = plan_sweep(base);
  const Plan refined = plan_sweep(read(apply_refinement(document, base, two_rounds())));
  std::map<std::string, std::string> refined_ids;
  for (const auto& cell : refined.cells)
    refined_ids[cell.name] = cell.job_id;
  for (const auto& cell : grid.cells) {
    ASSERT_TRUE(refined_ids.count(cell.name)) << cell.name;
    EXPECT_EQ(refined_ids.at(cell.name), cell.job_id) << cell.name;
  }
}

TEST(RefinementRounds, RoundTripThroughJson) {
  RefineRound round = two_rounds()[1];
  round.reason = "every minimum bracketed";
  round.exponent = 0.41;
  round.exponent_ci_low = 0.3;
  round.exponent_ci_high = std::numeric_limits<double>::quiet_NaN();
  round.cells = 4;
  round.flops = 1.5e13;
  const RefineRound back = refine_round_from_json(to_json(round), "test");
  EXPECT_EQ(to_json(back), to_json(round));
  EXPECT_TRUE(std::isnan(back.exponent_ci_high));
  EXPECT_THROW(refine_round_from_json({{"round", 1}}, "test"), InputError);
}

}  // namespace
}  // namespace parcae::sweeps
