// Which runs enter a fit: conditions, aliases, the controls' default, groups, and isoFLOP fits over
// any swept variable from a table whose answers are known.
#include <cmath>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/analysis.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

using ::testing::HasSubstr;

RunTable table_of(std::vector<std::string> header, std::vector<std::vector<std::string>> rows) {
  RunTable t;
  t.file = "runs.csv";
  t.header = std::move(header);
  t.rows = std::move(rows);
  return t;
}

TEST(Condition, EveryOperatorIsReadWithItsColumnAndValue) {
  const Condition a = parse_condition("mu_rec>=2");
  EXPECT_EQ(a.column, "mu_rec");
  EXPECT_EQ(a.op, ">=");
  EXPECT_EQ(a.value, "2");
  const Condition b = parse_condition("model = parcae-140m");
  EXPECT_EQ(b.column, "model");
  EXPECT_EQ(b.op, "=");
  EXPECT_EQ(b.value, "parcae-140m");
  EXPECT_EQ(parse_condition("fixed_depth!=true").op, "!=");
  EXPECT_EQ(parse_condition("C<1e18").op, "<");
}

TEST(Condition, TextWithoutAnOperatorIsBadInputNamingWhere) {
  try {
    parse_condition("model parcae");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "--where");
    EXPECT_THAT(e.what(), HasSubstr("COLUMN OP VALUE"));
  }
  EXPECT_THROW(parse_condition(">=2"), InputError);
  EXPECT_THROW(parse_condition("mu_rec>="), InputError);
}

TEST(Selection, ConditionsCompareNumbersAsNumbersAndTextAsText) {
  const RunTable t =
      table_of({"model", "mean_recurrence", "fixed_depth"},
               {{"a", "2", "0"}, {"a", "10", "0"}, {"b", "4", "0"}, {"b", "1", "1"}});
  const SelectedRows numeric = select_rows(t, {{"mu_rec>=4"}, {}}, "params");
  ASSERT_EQ(numeric.groups.size(), 1u);
  EXPECT_EQ(numeric.groups[0].rows, (std::vector<size_t>{1, 2}));  // 10 >= 4 as numbers
  const SelectedRows text = select_rows(t, {{"model=b", "fixed_depth=false"}, {}}, "params");
  EXPECT_EQ(text.groups[0].rows, (std::vector<size_t>{2}));
  EXPECT_THROW(select_rows(t, {{"model<b"}, {}}, "params"), InputError);  // no order on text
}

TEST(Selection, TheControlsAreLeftOutOfAFitOverMuRecUnlessAConditionNamesThem) {
  const RunTable t = table_of({"mean_recurrence", "fixed_depth", "loss"},
                              {{"1", "1", "3.0"}, {"2", "0", "3.1"}, {"4", "0", "3.2"}});
  const SelectedRows by_default = select_rows(t, {}, "mean_recurrence");
  EXPECT_EQ(by_default.groups[0].rows, (std::vector<size_t>{1, 2}));
  ASSERT_EQ(by_default.notes.size(), 1u);
  EXPECT_THAT(by_default.notes[0], HasSubstr("left out 1 mu_rec = 1 control"));
  // A fit over another x keeps fixed-depth rows: in a CSV they may be transformers.
  EXPECT_EQ(select_rows(t, {}, "params").groups[0].rows.size(), 3u);
  EXPECT_EQ(select_rows(t, {{"fixed_depth=1"}, {}}, "mean_recurrence").groups[0].rows,
            (std::vector<size_t>{0}));
}

// scaling-laws.md §2 step 1 leaves out the declared controls only: a Poisson mu_rec = 1 on the
// axis (a bare 1 in the sweep file, or a refinement round's) is a parabola point.
TEST(Selection, OnlyTheDeclaredControlsAreLeftOutAndAPoissonMuRecOneOnTheAxisIsKept) {
  // A sweep's runs table says control.
  const RunTable sweep = table_of({"mean_recurrence", "fixed_depth", "control", "recurrence"},
                                  {{"1", "1", "1", "1-fixed"},
                                   {"1", "0", "1", "1-poisson"},
                                   {"1", "0", "0", "1"},
                                   {"2", "0", "0", "2"}});
  const SelectedRows from_sweep = select_rows(sweep, {}, "mean_recurrence");
  EXPECT_EQ(from_sweep.groups[0].rows, (std::vector<size_t>{2, 3}));
  ASSERT_EQ(from_sweep.notes.size(), 1u);
  EXPECT_THAT(from_sweep.notes[0], HasSubstr("left out 2 mu_rec = 1 controls"));
  EXPECT_EQ(select_rows(sweep, {{"recurrence=1-poisson"}, {}}, "mean_recurrence").groups[0].rows,
            (std::vector<size_t>{1}));
  // The jobs export says recurrence, not control.
  const RunTable exported =
      table_of({"mean_recurrence", "fixed_depth", "recurrence"},
               {{"1", "1", "1-fixed"}, {"1", "0", "1-poisson"}, {"1", "0", "1"}, {"4", "0", "4"}});
  EXPECT_EQ(select_rows(exported, {}, "mean_recurrence").groups[0].rows,
            (std::vector<size_t>{2, 3}));
  // A CSV that only says fixed_depth cannot tell a Poisson control from the axis's mu_rec = 1:
  // only the fixed-depth rows are controls.
  const RunTable plain =
      table_of({"mean_recurrence", "fixed_depth"}, {{"1", "1"}, {"1", "0"}, {"2", "0"}});
  const SelectedRows from_plain = select_rows(plain, {}, "mean_recurrence");
  EXPECT_EQ(from_plain.groups[0].rows, (std::vector<size_t>{1, 2}));
  EXPECT_THAT(from_plain.notes[0], HasSubstr("left out 1 mu_rec = 1 control "));
}

TEST(Selection, GroupsFollowTheOrderOfFirstAppearanceAndNameTheirValues) {
  const RunTable t =
      table_of({"model", "mean_recurrence"}, {{"b", "2"}, {"a", "2"}, {"b", "4"}, {"a", "4"}});
  const SelectedRows s = select_rows(t, {{}, {"model"}}, "mean_recurrence");
  ASSERT_EQ(s.groups.size(), 2u);
  EXPECT_EQ(s.groups[0].label(), "model=b");
  EXPECT_EQ(s.groups[0].rows, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(s.groups[1].rows, (std::vector<size_t>{1, 3}));
}

TEST(Selection, AnUnknownColumnOrAnEmptySelectionIsBadInput) {
  const RunTable t = table_of({"model", "mean_recurrence"}, {{"a", "2"}});
  try {
    select_rows(t, {{"modle=a"}, {}}, "");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("did you mean 'model'"));
  }
  EXPECT_THROW(select_rows(t, {{"model=z"}, {}}, ""), InputError);
  EXPECT_THROW(select_rows(t, {{}, {"size"}}, ""), InputError);
}

TEST(Selection, AliasesNameTheColumnsOfAnExport) {
  const RunTable t = table_of({"parameters_total", "train_tokens", "loss_val", "budget_flops"}, {});
  EXPECT_EQ(resolve_column(t, "params", "--x"), "parameters_total");
  EXPECT_EQ(resolve_column(t, "tokens", "--x"), "train_tokens");
  EXPECT_EQ(resolve_column(t, "loss", "--loss-col"), "loss_val");
  EXPECT_EQ(resolve_column(t, "budget", "--budget-col"), "budget_flops");
  EXPECT_THROW(resolve_column(t, "mu_rec", "--x"), InputError);
}

// A size sweep as a CSV: at each of four budgets, six sizes N with F = 6N per token, and losses
// on exact parabolas L = 3 - 0.05 ln c + 0.02 (ln N - ln N*(C))^2 with N*(C) = 5e5 c^0.5, c = C/C0
// (scaling-laws.md §8 S3 with N for mu). The vertices, and so the exponent, are exact; and with
// F = 6N exactly, ln F is linear in ln N, so the interpolated D* = C / (6 N*) and a_D = 1 - a.
TEST(IsoflopAnalysis, NStarFromASizeSweepHasItsExactExponentAndTokens) {
  RunTable t = table_of({"id", "budget_flops", "params", "flops_per_token", "loss"}, {});
  const double c0 = 1e18;
  for (int b = 0; b < 4; ++b) {
    const double c = std::pow(2.0, b);
    for (double n : {1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6}) {
      const double d = std::log(n) - std::log(5e5 * std::sqrt(c));
      const double loss = 3.0 - 0.05 * std::log(c) + 0.02 * d * d;
      t.rows.push_back({"job" + std::to_string(t.rows.size()),
                        nlohmann::json(c0 * c).dump(),
                        nlohmann::json(n).dump(),
                        nlohmann::json(6 * n).dump(),
                        nlohmann::json(loss).dump()});
    }
  }
  Source source;
  source.table = t;
  IsoflopRequest request;
  request.x = "params";
  request.options.bootstrap_resamples = 0;
  const IsoflopAnalysis analysis = analyse_isoflop(source, request);
  ASSERT_EQ(analysis.groups.size(), 1u);
  const auto& g = analysis.groups[0];
  EXPECT_EQ(g.tokens_rule, TokensRule::kInterpolated);
  EXPECT_EQ(g.job_ids.size(), 24u);
  EXPECT_EQ(g.fit.status, fitting::FitStatus::kOk) << g.fit.message;
  EXPECT_NEAR(g.fit.value("a"), 0.5, 1e-9);
  EXPECT_NEAR(g.fit.value("a_D"), 0.5, 1e-9);
  for (const auto& m : g.fit.budgets) {
    EXPECT_NEAR(m.x_star / (5e5 * std::sqrt(m.budget_flops / c0)), 1.0, 1e-8);
    EXPECT_NEAR(m.tokens_star * 6 * m.x_star / m.budget_flops, 1.0, 1e-9);
  }
}

// Two model sizes crossed with mu_rec in one table: at one budget and one mu_rec the two rows
// differ in model, so fitting them as one series is refused, naming the column to group by.
TEST(IsoflopAnalysis, RunsThatDifferInMoreThanXAreRefusedWithTheColumnToGroupBy) {
  RunTable t = table_of({"budget_flops", "model", "mean_recurrence", "loss"}, {});
  for (const char* model : {"small", "large"}) {
    for (int b = 0; b < 3; ++b) {
      for (int mu : {2, 4, 6, 8}) {
        t.rows.push_back({std::to_string(b + 1) + "e18",
                          model,
                          std::to_string(mu),
                          nlohmann::json(3.0 + 0.01 * std::pow(std::log(mu / 3.0), 2)).dump()});
      }
    }
  }
  Source source;
  source.table = t;
  IsoflopRequest request;
  request.options.bootstrap_resamples = 0;
  try {
    analyse_isoflop(source, request);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "model");
    EXPECT_THAT(e.what(), HasSubstr("--group-by model"));
  }
  request.selection.group_by = {"model"};
  const IsoflopAnalysis grouped = analyse_isoflop(source, request);
  ASSERT_EQ(grouped.groups.size(), 2u);
  EXPECT_EQ(grouped.groups[1].group.label(), "model=large");
  for (const auto& g : grouped.groups) {
    for (const auto& m : g.fit.budgets)
      EXPECT_NEAR(m.x_star, 3.0, 1e-9);
  }
}

// docs/study/jobs.csv is the export of the GPU study, controls included. Fitted over
// mean_recurrence as its own fit was, it must give the study's minima (fit-isoflop.json): the
// `mu_rec=1 fixed` controls are left out by default, as the sweep's fit leaves them out.
TEST(IsoflopAnalysis, TheStudysExportGivesTheStudysOwnMinima) {
  const std::string dir = std::string(PARCAE_SOURCE_DIR) + "/docs/study/";
  Source source;
  source.table = read_csv(dir + "jobs.csv");
  IsoflopRequest request;
  request.x = "mean_recurrence";
  request.loss = "loss_val";
  request.budget = "budget_flops";
  request.options.bootstrap_resamples = 0;
  const IsoflopAnalysis analysis = analyse_isoflop(source, request);
  ASSERT_EQ(analysis.groups.size(), 1u);
  ASSERT_EQ(analysis.notes.size(), 1u);
  EXPECT_THAT(analysis.notes[0], HasSubstr("left out 4 mu_rec = 1 controls"));
  std::ifstream in(dir + "fit-isoflop.json");
  const nlohmann::json study = nlohmann::json::parse(in);
  const auto& minima = analysis.groups[0].fit.budgets;
  ASSERT_EQ(minima.size(), study.at("budgets").size());
  int compared = 0;
  for (size_t i = 0; i < minima.size(); ++i) {
    const auto& expected = study.at("budgets")[i];
    EXPECT_EQ(fitting::to_string(minima[i].status), expected.at("status").get<std::string>());
    if (expected.at("x_star").is_number()) {
      EXPECT_NEAR(minima[i].x_star, expected.at("x_star").get<double>(), 1e-9);
      ++compared;
    }
  }
  EXPECT_GE(compared, 3);
  EXPECT_NEAR(minima[2].x_star, 2.60, 0.005);  // 4e14, the study's one interior minimum
}

}  // namespace
}  // namespace parcae::analysis
