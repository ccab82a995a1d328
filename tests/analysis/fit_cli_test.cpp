// `parcae-scale fit`, `plot` and `export` on sweeps whose runs have known losses.
//
// Two isoFLOP sweeps of parcae-micro (mu_rec in {2, ..., 12} at four budgets) are planned, and
// each planned run folder gets an events file as a finished trainer would leave it; `sweep sync`
// ingests them. The losses come from known laws, so the fits have known answers:
//   "iso":     L(T) = 3.0 - 0.05 ln(C/C0) + 0.02 (ln mu - ln mu*(C))^2 + 0.2 (e^(-2T/mu) - e^(-2)),
//              mu*(C) = 3 (C/C0)^0.40 (scaling-laws.md §8 S3 with a test-time term): at T = mu
//              the isoFLOP parabolas are exact, so a = 0.40, and each run's L(T) is a saturating
//              exponential with z = 2/mu.
//   "unified": the unified law of §4.2 with N(mu) and the realised D of each run.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "results/results.h"
#include "sweeps/flop_model.h"
#include "sweeps/job_config.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::analysis {
namespace {

using test_support::run_cli;
using test_support::ScratchDir;
using ::testing::HasSubstr;

constexpr double kBaseBudget = 4e11;
const std::vector<int> kMus = {2, 4, 6, 8, 10, 12};
const std::vector<int> kDepths = {1, 2, 4, 6, 8, 10, 12, 16};

// The unified law's truth (§4.2, gamma = 1).
constexpr double kE = 1.2, kX = 20.0, kXExp = 0.4, kY = 300.0, kYExp = 0.4, kZ = 0.5, kZRate = 2.0;

struct RunFacts {
  std::string model;
  double params = 0.0;
  int mu = 1;
  double budget_flops = 0.0;
  double tokens = 0.0;
  double params_noncore = 0.0;
  double params_core = 0.0;
};

double iso_loss(const RunFacts& run, double depth) {
  const double c = run.budget_flops / kBaseBudget;
  const double mu_star = 3.0 * std::pow(c, 0.40);
  const double d = std::log(run.mu) - std::log(mu_star);
  return 3.0 - 0.05 * std::log(c) + 0.02 * d * d +
         0.2 * (std::exp(-2.0 * depth / run.mu) - std::exp(-2.0));
}

// "size": N*(C) = 6e4 (C/C0)^0.5 over a width axis at mu_rec = 2, exact parabolas in ln N.
double size_loss(const RunFacts& run, double depth) {
  const double c = run.budget_flops / kBaseBudget;
  const double d = std::log(run.params) - std::log(6e4 * std::sqrt(c));
  return 3.0 - 0.05 * std::log(c) + 0.02 * d * d +
         0.2 * (std::exp(-2.0 * depth / run.mu) - std::exp(-2.0));
}

// "joint": two widths crossed with mu_rec; mu*(C) = 3 c^0.40 at width 32 and 4 c^0.25 at 64.
double joint_loss(const RunFacts& run, double depth) {
  const double c = run.budget_flops / kBaseBudget;
  const double mu_star = run.model == "m32" ? 3.0 * std::pow(c, 0.40) : 4.0 * std::pow(c, 0.25);
  const double d = std::log(run.mu) - std::log(mu_star);
  return 3.0 - 0.05 * std::log(c) + 0.02 * d * d +
         0.2 * (std::exp(-2.0 * depth / run.mu) - std::exp(-2.0));
}

double unified_loss(const RunFacts& run, double depth) {
  const double params = run.params_noncore + run.mu * run.params_core;
  return kE + kX * std::pow(params, -kXExp) + kY * std::pow(run.tokens, -kYExp) +
         kZ * std::exp(-kZRate * depth / run.mu);
}

std::string write_sweep_file(const std::string& dir,
                             const std::string& name,
                             const nlohmann::json& axes = {{"mean_recurrence", kMus}}) {
  std::filesystem::create_directories(dir + "/data");
  std::ofstream(dir + "/data/train_000.bin") << "fake shard";
  std::ofstream(dir + "/data/val_000.bin") << "fake shard";
  nlohmann::json budgets = nlohmann::json::array();
  for (int i = 0; i < 4; ++i) {
    const double flops = kBaseBudget * std::pow(2.0, i);
    budgets.push_back({{"id", std::to_string(1 << i) + "x"}, {"flops", flops}});
  }
  const nlohmann::json sweep = {
      {"name", name},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", budgets},
      {"axes", axes},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"eval", {{"depths", kDepths}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 10}, {"max_flop_gap", 0.05}}}};
  const std::string path = dir + "/" + name + ".json";
  std::ofstream(path) << sweep.dump(2);
  return path;
}

// Writes, into each planned run folder, the events of a finished run whose losses follow `law`,
// and returns the facts of each run by cell.
std::map<std::string, RunFacts> finish_runs(const std::string& db,
                                            const std::string& sweep,
                                            double (*law)(const RunFacts&, double)) {
  std::map<std::string, RunFacts> facts;
  for (const auto& job : results::Store::open(db).jobs(sweep)) {
    const sweeps::JobConfig config = sweeps::job_config_from_json(job.config, "job.json");
    const sweeps::ParameterCounts counts = sweeps::count_parameters(config.model);
    RunFacts run;
    run.model = job.model;
    run.params = static_cast<double>(counts.total);
    run.mu = job.mean_recurrence;
    run.budget_flops = job.budget_flops.value_or(0.0);
    run.tokens = static_cast<double>(config.max_steps() * config.training.batch_tokens);
    run.params_noncore = static_cast<double>(counts.noncore);
    run.params_core = static_cast<double>(counts.per_loop);
    facts[job.cell] = run;
    const int64_t steps = config.max_steps();
    const auto tokens = static_cast<int64_t>(run.tokens);
    std::ostringstream events;
    events << nlohmann::json{{"event", "start"},
                             {"time", 1},
                             {"step", 0},
                             {"job_id", job.id},
                             {"resumed", false},
                             {"versions", {{"parcae", "test"}}},
                             {"device", "cpu"},
                             {"world_size", 1},
                             {"parameters", {{"total", counts.total}}},
                             {"flops_per_token", 1000},
                             {"max_steps", steps},
                             {"train_tokens", tokens},
                             {"seed", 0},
                             {"budget_flops", run.budget_flops}}
                  .dump()
           << "\n";
    for (int64_t s : {int64_t{1}, steps / 2, steps}) {
      events << nlohmann::json{{"event", "step"},
                               {"time", 2},
                               {"step", s},
                               {"tokens", s * 4096},
                               {"flops", 1000 * s * 4096},
                               {"loss", law(run, run.mu) + 2.0 / static_cast<double>(s)},
                               {"lr_adamw", 0.008},
                               {"lr_muon", 0.008},
                               {"grad_norm", 1.0},
                               {"tokens_per_s", 1000},
                               {"skipped", false},
                               {"mean_depth", run.mu}}
                    .dump()
             << "\n";
    }
    for (int depth : kDepths) {
      events << nlohmann::json{{"event", "eval"},
                               {"time", 3},
                               {"step", steps},
                               {"tokens", tokens},
                               {"depth", depth},
                               {"loss", law(run, depth)}}
                    .dump()
             << "\n";
    }
    events << nlohmann::json{{"event", "done"},
                             {"time", 4},
                             {"step", steps},
                             {"status", "done"},
                             {"tokens", tokens},
                             {"flops", 1000 * tokens},
                             {"loss_train", law(run, run.mu)},
                             {"loss_val", law(run, run.mu)},
                             {"wall_time_s", 1.0}}
                  .dump()
           << "\n";
    std::filesystem::create_directories(job.out_dir);
    std::ofstream(job.out_dir + "/events.jsonl") << events.str();
  }
  return facts;
}

std::vector<std::string> with_db(std::vector<std::string> args, const std::string& db) {
  args.insert(args.begin(), {"--db", db});
  return args;
}

class FitCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<ScratchDir>();
    db_ = dir_->file("study.sqlite");
    const nlohmann::json mu_axis = {{"mean_recurrence", kMus}};
    // Six widths at mu_rec = 2 (the d_model axis keeps head_dim 16 and d_ff = 4d), and two
    // widths given as model objects crossed with the mu_rec axis.
    const nlohmann::json width_axis = {{"d_model", {16, 32, 48, 64, 96, 128}},
                                       {"mean_recurrence", {2}}};
    const nlohmann::json joint_axes = {
        {"model",
         {{{"name", "m32"}}, {{"name", "m64"}, {"d_model", 64}, {"n_heads", 4}, {"d_ff", 256}}}},
        {"mean_recurrence", kMus}};
    const std::vector<
        std::tuple<std::string, double (*)(const RunFacts&, double), nlohmann::json, size_t>>
        sweeps = {{"iso", &iso_loss, mu_axis, 24},
                  {"unified", &unified_loss, mu_axis, 24},
                  {"size", &size_loss, width_axis, 24},
                  {"joint", &joint_loss, joint_axes, 48}};
    for (const auto& [name, law, axes, cells] : sweeps) {
      const auto plan =
          run_cli(with_db({"sweep", "plan", write_sweep_file(dir_->path(), name, axes)}, db_));
      ASSERT_EQ(plan.exit_code, 0) << plan.err;
      auto facts = finish_runs(db_, name, law);
      ASSERT_EQ(facts.size(), cells) << name << ": every cell must be planned, none flagged";
      if (name == "iso")
        iso_facts_ = facts;
      if (name == "unified")
        unified_facts_ = facts;
      const auto sync = run_cli(with_db({"sweep", "sync", name}, db_));
      ASSERT_EQ(sync.exit_code, 0) << sync.err;
    }
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static nlohmann::json fit_json(const std::vector<std::string>& args) {
    const auto result = run_cli(with_db(args, db_));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out);
  }

  static std::unique_ptr<ScratchDir> dir_;
  static std::string db_;
  static std::map<std::string, RunFacts> iso_facts_, unified_facts_;
};

std::unique_ptr<ScratchDir> FitCli::dir_;
std::string FitCli::db_;
std::map<std::string, RunFacts> FitCli::iso_facts_, FitCli::unified_facts_;

double coefficient(const nlohmann::json& fit, const std::string& name) {
  return fit.at("coefficients").at(name).at("value").get<double>();
}

TEST_F(FitCli, IsoflopFromASweepGivesTheExponentOfItsExactParabolas) {
  const auto fit = fit_json({"fit", "isoflop", "--sweep", "iso", "--bootstrap", "200", "--json"});
  EXPECT_EQ(fit.at("law"), "isoflop");
  EXPECT_EQ(fit.at("n"), 4);
  EXPECT_EQ(fit.at("converged"), true);
  // The parabolas in ln mu are exact, so the vertices and the power law are exact to rounding.
  EXPECT_NEAR(coefficient(fit, "a"), 0.40, 1e-9);
  const auto& a = fit.at("coefficients").at("a");
  ASSERT_TRUE(a.at("ci").is_array());
  EXPECT_LE(a.at("ci")[0].get<double>(), 0.40 + 1e-9);
  EXPECT_GE(a.at("ci")[1].get<double>(), 0.40 - 1e-9);
  ASSERT_EQ(fit.at("minima").size(), 4u);
  for (const auto& m : fit.at("minima")) {
    const double c = m.at("budget").get<double>() / kBaseBudget;
    EXPECT_NEAR(m.at("x_star").get<double>(), 3.0 * std::pow(c, 0.40), 1e-8) << m.dump();
    EXPECT_NEAR(m.at("loss_star").get<double>(), 3.0 - 0.05 * std::log(c), 1e-9);
    EXPECT_EQ(m.at("edge"), false);
  }
  EXPECT_LT(fit.at("residual_std").get<double>(), 1e-9);
}

// scaling-laws.md §2 step 1: the mu_rec = 1 controls ("1-fixed", "1-poisson") are their own
// series, while a bare mu_rec = 1 is a point of the axis like any other. The controls' losses are
// written far above the parabola, so that a control wrongly kept would move every minimum.
TEST(IsoflopControls, TheDeclaredControlsAreLeftOutAndTheAxissOwnMuRecOneIsAPoint) {
  ScratchDir dir;
  const std::string db = dir.file("controls.sqlite");
  const nlohmann::json axes = {
      {"mean_recurrence", {"1-fixed", "1-poisson", 1, 2, 4, 6, 8, 10, 12}}};
  const auto plan =
      run_cli(with_db({"sweep", "plan", write_sweep_file(dir.path(), "controls", axes)}, db));
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_THAT(plan.out, HasSubstr("-mu1poisson-"));
  EXPECT_THAT(plan.out, HasSubstr("-mu1fixed-"));
  EXPECT_THAT(plan.out, HasSubstr("-mu1-"));
  const auto facts = finish_runs(db, "controls", &iso_loss);
  ASSERT_EQ(facts.size(), 36u);
  std::set<std::string> controls, axis_ones;
  for (const auto& job : results::Store::open(db).jobs("controls")) {
    const bool control = job.cell.find("-mu1fixed-") != std::string::npos ||
                         job.cell.find("-mu1poisson-") != std::string::npos;
    if (control) {
      controls.insert(job.id);
      // Rewrite the control's final losses well above every parabola.
      const std::string path = job.out_dir + "/events.jsonl";
      std::ifstream in(path);
      std::ostringstream kept;
      for (std::string line; std::getline(in, line);) {
        nlohmann::json event = nlohmann::json::parse(line);
        if (event.at("event") == "done")
          event["loss_val"] = event["loss_train"] = 9.0;
        kept << event.dump() << "\n";
      }
      in.close();
      std::ofstream(path) << kept.str();
    } else if (job.mean_recurrence == 1) {
      axis_ones.insert(job.id);
    }
  }
  ASSERT_EQ(controls.size(), 8u);
  ASSERT_EQ(axis_ones.size(), 4u);
  const auto sync = run_cli(with_db({"sweep", "sync", "controls"}, db));
  ASSERT_EQ(sync.exit_code, 0) << sync.err;

  const auto result =
      run_cli(with_db({"fit", "isoflop", "--sweep", "controls", "--bootstrap", "0", "--json"}, db));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.err, HasSubstr("left out 8 mu_rec = 1 controls"));
  const nlohmann::json fit = nlohmann::json::parse(result.out);
  const std::set<std::string> used = fit.at("job_ids").get<std::set<std::string>>();
  EXPECT_EQ(used.size(), 28u);  // seven points (1, 2, 4, ..., 12) in each of four budgets
  for (const auto& id : controls)
    EXPECT_EQ(used.count(id), 0u) << id << " is a control";
  for (const auto& id : axis_ones)
    EXPECT_EQ(used.count(id), 1u) << id << " is the axis's own mu_rec = 1";
  // mu_rec = 1 lies on the same exact parabola, so the law is still exact.
  EXPECT_NEAR(coefficient(fit, "a"), 0.40, 1e-9);
  EXPECT_LT(fit.at("residual_std").get<double>(), 1e-9);

  // The runs table names the three kinds of mu_rec = 1 apart, and a condition selects each; a
  // condition on mean_recurrence alone still leaves the controls out.
  for (const auto& [where, n] :
       std::vector<std::pair<std::string, int>>{{"recurrence=1-poisson", 4},
                                                {"recurrence=1-fixed", 4},
                                                {"recurrence=1", 4},
                                                {"control=1", 8},
                                                {"mean_recurrence=1", 4}}) {
    const auto selected = run_cli(with_db({"fit",
                                           "power",
                                           "--sweep",
                                           "controls",
                                           "--where",
                                           where,
                                           "--x-col",
                                           "budget_flops",
                                           "--y-col",
                                           "loss",
                                           "--json"},
                                          db));
    ASSERT_EQ(selected.exit_code, 0) << where << ": " << selected.err;
    EXPECT_EQ(nlohmann::json::parse(selected.out).at("n"), n) << where;
  }
}

TEST_F(FitCli, IsoflopUnderThePaperConventionRecostsEachBudgetAtItsOptimum) {
  const auto planned = fit_json({"fit", "isoflop", "--sweep", "iso", "--bootstrap", "0", "--json"});
  EXPECT_EQ(planned.at("flop_convention"), "reference");
  EXPECT_EQ(planned.at("recosted"), false);
  const auto paper = fit_json({"fit",
                               "isoflop",
                               "--sweep",
                               "iso",
                               "--bootstrap",
                               "0",
                               "--flop-convention",
                               "paper",
                               "--json"});
  EXPECT_EQ(paper.at("flop_convention"), "paper");
  EXPECT_EQ(paper.at("recosted"), true);
  sweeps::ModelConfig model = sweeps::preset("parcae-micro");
  model.context_length = 64;
  auto flops = [&](double mu, sweeps::FlopConvention convention) {
    return sweeps::train_flops_per_token_at(model, mu, mu / 2.0, convention);
  };
  ASSERT_EQ(paper.at("minima").size(), 4u);
  // The budgets' C, re-costed at their optima; ln mu* against ln C' by least squares.
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < 4; ++i) {
    const auto& before = planned.at("minima")[i];
    const auto& after = paper.at("minima")[i];
    const double c = before.at("budget").get<double>();
    const double mu_star = before.at("x_star").get<double>();
    const double recosted = c * flops(mu_star, sweeps::FlopConvention::kPaper) /
                            flops(mu_star, sweeps::FlopConvention::kReference);
    EXPECT_EQ(after.at("budget_id"), before.at("budget_id"));
    EXPECT_NEAR(after.at("x_star").get<double>(), mu_star, 1e-9 * mu_star);
    EXPECT_NEAR(after.at("budget").get<double>(), recosted, 1e-9 * recosted);
    // The optimal run's tokens are a fact of the grid and do not move with the accounting.
    EXPECT_NEAR(after.at("tokens_star").get<double>(),
                before.at("tokens_star").get<double>(),
                1e-9 * before.at("tokens_star").get<double>());
    const double x = std::log(recosted), y = std::log(mu_star);
    sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  const double expected_a = (4 * sxy - sx * sy) / (4 * sxx - sx * sx);
  EXPECT_NEAR(coefficient(paper, "a"), expected_a, 1e-9);
  // parcae-micro's VE tables (2 of 256 x 32) outweigh its W_E, so the paper's convention charges
  // less per token, and relatively less at small mu*: the exponent against C' moves.
  EXPECT_GT(std::abs(expected_a - 0.40), 1e-3);
}

TEST_F(FitCli, RecostingNeedsASweepsModelsNotACsv) {
  const auto result = run_cli(with_db({"fit",
                                       "isoflop",
                                       "--csv",
                                       std::string(PARCAE_SOURCE_DIR) + "/docs/study/jobs.csv",
                                       "--x",
                                       "mu_rec",
                                       "--loss-col",
                                       "loss_val",
                                       "--bootstrap",
                                       "0",
                                       "--flop-convention",
                                       "paper"},
                                      db_));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--flop-convention"));
  EXPECT_THAT(result.err, HasSubstr("needs a sweep"));
}

TEST_F(FitCli, SatexpFromASweepRecoversEachRunsRate) {
  const auto fits = fit_json({"fit", "satexp", "--sweep", "iso", "--json"});
  ASSERT_EQ(fits.at("fits").size(), 24u);
  for (const auto& fit : fits.at("fits")) {
    const double mu = fit.at("mean_recurrence").get<double>();
    EXPECT_EQ(fit.at("status"), "ok") << fit.at("cell");
    EXPECT_NEAR(coefficient(fit, "z"), 2.0 / mu, 1e-5 * 2.0 / mu) << fit.at("cell");
    EXPECT_NEAR(coefficient(fit, "Z"), 0.2, 1e-5) << fit.at("cell");
  }
}

TEST_F(FitCli, UnifiedFromASweepRecoversTheTestTimeTerm) {
  const auto fit = fit_json({"fit", "unified", "--sweep", "unified", "--json"});
  EXPECT_EQ(fit.at("law"), "unified");
  EXPECT_EQ(fit.at("n"), 24 * static_cast<int>(kDepths.size()));
  EXPECT_EQ(fit.at("status"), "ok");
  for (const char* name : {"E", "X", "x", "Y", "y", "Z", "z"})
    EXPECT_TRUE(fit.at("coefficients").contains(name)) << name;
  // Noise-free data from the law itself: the objective reaches zero and the test-time term, which
  // the T grid determines well, comes back; the floor's five coefficients trade off along a ridge
  // on 24 runs (§4.1 "Identifiability"), so they are judged by the objective only.
  EXPECT_LT(fit.at("objective").get<double>(), 1e-12);
  EXPECT_NEAR(coefficient(fit, "Z"), kZ, 1e-4 * kZ);
  EXPECT_NEAR(coefficient(fit, "z"), kZRate, 1e-4 * kZRate);
  EXPECT_EQ(fit.at("training_law").at("law"), "parcae");
}

TEST_F(FitCli, UnifiedFromACsvMatchesTheFitFromTheSweep) {
  std::string text = "mu,D,T,loss,run\n";
  int run_index = 0;
  double noncore = 0, core = 0;
  for (const auto& [cell, run] : unified_facts_) {
    noncore = run.params_noncore;
    core = run.params_core;
    for (int depth : kDepths) {
      text += nlohmann::json(run.mu).dump() + "," + nlohmann::json(run.tokens).dump() + "," +
              std::to_string(depth) + "," + nlohmann::json(unified_loss(run, depth)).dump() + "," +
              std::to_string(run_index) + "\n";
    }
    ++run_index;
  }
  const std::string csv = dir_->file("unified.csv");
  std::ofstream(csv) << text;
  const auto fit = fit_json({"fit",
                             "unified",
                             "--csv",
                             csv,
                             "--mu-col",
                             "mu",
                             "--tokens-col",
                             "D",
                             "--test-time-col",
                             "T",
                             "--loss-col",
                             "loss",
                             "--run-col",
                             "run",
                             "--params-noncore",
                             nlohmann::json(noncore).dump(),
                             "--params-core",
                             nlohmann::json(core).dump(),
                             "--json"});
  EXPECT_EQ(fit.at("n"), 24 * static_cast<int>(kDepths.size()));
  EXPECT_LT(fit.at("objective").get<double>(), 1e-12);
  EXPECT_NEAR(coefficient(fit, "z"), kZRate, 1e-4 * kZRate);
}

TEST_F(FitCli, ABadCsvValueNamesItsRowAndColumnOrIsSkippedWhenAsked) {
  const std::string csv = dir_->file("bad.csv");
  std::ofstream(csv) << "T,loss\n1,3.2\n2,3.1\n4,nan\n6,3.0\n8,2.99\n12,2.985\n";
  const std::vector<std::string> args = {
      "fit", "satexp", "--csv", csv, "--x-col", "T", "--y-col", "loss", "--json"};
  const auto refused = run_cli(args);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("row 3, column loss"));
  auto skipping = args;
  skipping.push_back("--skip-bad-rows");
  const auto skipped = run_cli(skipping);
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_THAT(skipped.err, HasSubstr("row 3, column loss"));
  EXPECT_EQ(nlohmann::json::parse(skipped.out).at("n"), 5);
}

TEST_F(FitCli, PowerAndChinchillaReadTheSweepsRunsByColumnName) {
  const auto power = fit_json(
      {"fit", "power", "--sweep", "iso", "--x-col", "budget_flops", "--y-col", "tokens", "--json"});
  EXPECT_EQ(power.at("n"), 24);
  EXPECT_GT(coefficient(power, "a"), 0.5);  // more compute, more tokens
  const auto missing = run_cli(
      with_db({"fit", "power", "--sweep", "iso", "--x-col", "budget_idd", "--y-col", "loss"}, db_));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("did you mean 'budget_id'"));

  // The unified sweep at T = mu_rec is a Chinchilla law in N(mu) and D plus Z e^(-z): the
  // constant joins E, so the fit is exact.
  const auto chinchilla = fit_json({"fit", "chinchilla", "--sweep", "unified", "--json"});
  EXPECT_EQ(chinchilla.at("n"), 24);
  EXPECT_NEAR(coefficient(chinchilla, "E"), kE + kZ * std::exp(-kZRate), 1e-3);
  EXPECT_LT(chinchilla.at("objective").get<double>(), 1e-10);
}

// At T = mu_rec the unified sweep follows the training law of §4.1 exactly (Z e^(-z) joins E),
// so the refit without the largest budget predicts that budget's runs almost exactly.
TEST_F(FitCli, ParcaeFromASweepReportsTheLargestBudgetHeldOut) {
  const auto fit = fit_json({"fit", "parcae", "--sweep", "unified", "--json"});
  EXPECT_EQ(fit.at("law"), "parcae");
  EXPECT_EQ(fit.at("n"), 24);
  EXPECT_LT(fit.at("objective").get<double>(), 1e-10);
  const auto& heldout = fit.at("heldout");
  EXPECT_EQ(heldout.at("budget").get<double>(), kBaseBudget * 8);
  EXPECT_EQ(heldout.at("runs"), 6);
  EXPECT_LT(heldout.at("error_percent").get<double>(), 0.01);
  EXPECT_EQ(fit.at("heldout_error_percent"), heldout.at("error_percent"));
}

TEST_F(FitCli, SavedFitsRecordTheJobsTheyUsed) {
  const auto saved = run_cli(
      with_db({"fit", "isoflop", "--sweep", "iso", "--bootstrap", "50", "--json", "--save"}, db_));
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  const auto fits = results::Store::open(db_).fits("iso");
  ASSERT_FALSE(fits.empty());
  EXPECT_EQ(fits.back().law, "isoflop");
  EXPECT_EQ(fits.back().job_ids.size(), 24u);
  EXPECT_NEAR(fits.back().coefficients.at("a").get<double>(), 0.40, 1e-9);
}

TEST_F(FitCli, EveryPlotKindWritesItsImageScriptAndData) {
  const std::string out = dir_->file("figures");
  for (const char* kind : {"isoflop", "frontier", "test-time", "curves"}) {
    const auto result = run_cli(with_db(
        {"plot", kind, "--sweep", "iso", "-o", out, "--format", "png", "--bootstrap", "100"}, db_));
    ASSERT_EQ(result.exit_code, 0) << kind << ": " << result.err;
    EXPECT_FALSE(result.out.empty()) << kind;
  }
  for (const char* stem :
       {"isoflop", "frontier_mu_star", "frontier_tokens_star", "test_time_1x", "curves_8x"}) {
    for (const char* ext : {".png", ".gp", ".dat"}) {
      EXPECT_TRUE(std::filesystem::exists(out + "/" + stem + ext)) << stem << ext;
    }
    EXPECT_FALSE(std::filesystem::exists(out + "/" + stem + ".svg")) << stem;
  }
  std::ifstream script(out + "/frontier_mu_star.gp");
  const std::string text((std::istreambuf_iterator<char>(script)),
                         std::istreambuf_iterator<char>());
  // gnuplot_quote writes "^" as "\\^" so that the legend shows it literally.
  EXPECT_THAT(text, HasSubstr(R"(C\\^0.40 (slope only))"));  // the paper's exponent, dashed
  EXPECT_THAT(text, HasSubstr("dt (8, 5)"));
  EXPECT_THAT(text, HasSubstr("filledcurves"));          // the bootstrap band
  EXPECT_THAT(text, HasSubstr(R"(C\\^0.400, 95% CI)"));  // the fitted exponent, exact here

  const auto pdf =
      run_cli(with_db({"plot", "frontier", "--sweep", "iso", "-o", out, "--format", "pdf"}, db_));
  ASSERT_EQ(pdf.exit_code, 0) << pdf.err;
  EXPECT_TRUE(std::filesystem::exists(out + "/frontier_tokens_star.pdf"));

  const auto older = run_cli(with_db({"plot", "iso", "--out", dir_->file("all")}, db_));
  ASSERT_EQ(older.exit_code, 0) << older.err;
  EXPECT_TRUE(std::filesystem::exists(dir_->file("all") + "/test_time_2x.svg"));

  const auto unknown = run_cli(with_db({"plot", "histogram", "--sweep", "iso", "-o", out}, db_));
  EXPECT_EQ(unknown.exit_code, 2);
}

// The isoFLOP law of Chinchilla's Approach 2 over the width axis: N* ~ C^0.5 exactly.
TEST_F(FitCli, NStarFromASizeSweepInTheDatabaseHasItsExponent) {
  const auto fit = fit_json(
      {"fit", "isoflop", "--sweep", "size", "--x", "params", "--bootstrap", "200", "--json"});
  EXPECT_EQ(fit.at("x"), "params");
  EXPECT_EQ(fit.at("status"), "ok");
  EXPECT_EQ(fit.at("n"), 4);
  EXPECT_NEAR(coefficient(fit, "a"), 0.5, 1e-9);
  EXPECT_TRUE(fit.at("coefficients").at("a").at("ci").is_array());
  EXPECT_THAT(fit.at("tokens_rule").get<std::string>(), HasSubstr("interpolated"));
  EXPECT_TRUE(fit.at("coefficients").contains("a_D"));
  for (const auto& m : fit.at("minima")) {
    const double c = m.at("budget").get<double>() / kBaseBudget;
    EXPECT_NEAR(m.at("x_star").get<double>() / (6e4 * std::sqrt(c)), 1.0, 1e-8) << m.dump();
    EXPECT_TRUE(m.at("x_star_low").is_number());
  }
  EXPECT_EQ(fit.at("job_ids").size(), 24u);
}

// A joint grid of two widths crossed with mu_rec: one series per width, mu* per size.
TEST_F(FitCli, MuStarPerSizeFromAJointGridNeedsAGroupAndRecordsEachGroupsJobs) {
  const auto mixed = run_cli(with_db({"fit", "isoflop", "--sweep", "joint"}, db_));
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_THAT(mixed.err, HasSubstr("--group-by model"));

  const auto grouped = run_cli(with_db({"fit",
                                        "isoflop",
                                        "--sweep",
                                        "joint",
                                        "--group-by",
                                        "model",
                                        "--bootstrap",
                                        "100",
                                        "--json",
                                        "--save"},
                                       db_));
  ASSERT_EQ(grouped.exit_code, 0) << grouped.err;
  const auto fit = nlohmann::json::parse(grouped.out);
  ASSERT_EQ(fit.at("groups").size(), 2u);
  std::map<std::string, double> exponent;
  for (const auto& g : fit.at("groups")) {
    exponent[g.at("group").at("model")] = coefficient(g, "a");
    EXPECT_EQ(g.at("job_ids").size(), 24u);
  }
  EXPECT_NEAR(exponent.at("m32"), 0.40, 1e-9);
  EXPECT_NEAR(exponent.at("m64"), 0.25, 1e-9);
  // One saved fit per group, with exactly that group's jobs.
  const auto saved = results::Store::open(db_).fits("joint");
  ASSERT_EQ(saved.size(), 2u);
  std::set<std::string> all;
  for (const auto& record : saved) {
    EXPECT_EQ(record.job_ids.size(), 24u);
    all.insert(record.job_ids.begin(), record.job_ids.end());
  }
  EXPECT_EQ(all.size(), 48u);

  const auto one = fit_json(
      {"fit", "isoflop", "--sweep", "joint", "--where", "model=m64", "--bootstrap", "0", "--json"});
  EXPECT_NEAR(coefficient(one, "a"), 0.25, 1e-9);
  const auto none =
      run_cli(with_db({"fit", "isoflop", "--sweep", "joint", "--where", "model=m128"}, db_));
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("selects no rows"));
}

TEST_F(FitCli, FiguresFollowTheFittedVariableAndTheirReferenceSlopesAreAFlag) {
  const std::string out = dir_->file("size-figures");
  const auto result = run_cli(with_db(
      {"plot", "all", "--sweep", "size", "--x", "params", "-o", out, "--format", "svg"}, db_));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* stem : {"isoflop", "frontier_params_star", "frontier_tokens_star"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + stem + ".svg")) << stem;
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string iso = read(out + "/isoflop.gp");
  EXPECT_THAT(iso, HasSubstr("parameters N"));
  EXPECT_THAT(iso, HasSubstr("xerrorbars"));  // the minima carry their 1-sigma bars
  const std::string frontier = read(out + "/frontier_params_star.gp");
  EXPECT_THAT(frontier, HasSubstr("yerrorbars"));
  EXPECT_THAT(frontier, ::testing::Not(HasSubstr("slope only")));  // no default reference for N

  const auto with_reference = run_cli(with_db({"plot",
                                               "frontier",
                                               "--sweep",
                                               "size",
                                               "--x",
                                               "params",
                                               "--reference-slopes",
                                               "0.5,0.5",
                                               "-o",
                                               out,
                                               "--format",
                                               "svg"},
                                              db_));
  ASSERT_EQ(with_reference.exit_code, 0) << with_reference.err;
  EXPECT_THAT(read(out + "/frontier_params_star.gp"), HasSubstr(R"(C\\^0.50 (slope only))"));
}

// tests/testdata/accuracy_vs_loss.py made the data and ran scipy.optimize.curve_fit on them.
TEST(FitCommand, SatexpWithLinearResidualsGivesCurveFitsAnswer) {
  const std::string dir = std::string(PARCAE_SOURCE_DIR) + "/tests/testdata/";
  std::ifstream in(dir + "accuracy_vs_loss_curve_fit.json");
  const nlohmann::json scipy = nlohmann::json::parse(in);
  const std::vector<std::string> args = {"fit",
                                         "satexp",
                                         "--csv",
                                         dir + "accuracy_vs_loss.csv",
                                         "--x",
                                         "loss",
                                         "--y",
                                         "accuracy",
                                         "--json"};
  auto linear_args = args;
  linear_args.insert(linear_args.end(), {"--residuals", "linear"});
  const auto linear = run_cli(linear_args);
  ASSERT_EQ(linear.exit_code, 0) << linear.err;
  const auto fit = nlohmann::json::parse(linear.out);
  // curve_fit stops at its default tolerance (ftol 1.5e-8), ours at 1e-15: they agree to about
  // 1e-5 relative, and our sum of squares is never above SciPy's.
  const char* names[] = {"y_inf", "Z", "z"};
  for (int k = 0; k < 3; ++k) {
    const double expected = scipy.at(names[k]).get<double>();
    EXPECT_NEAR(coefficient(fit, names[k]), expected, 1e-4 * expected) << names[k];
    const double se = scipy.at("se")[k].get<double>();
    EXPECT_NEAR(fit.at("coefficients").at(names[k]).at("se").get<double>(), se, 1e-3 * se);
  }
  EXPECT_LE(fit.at("objective").get<double>(), scipy.at("rss").get<double>() * (1 + 1e-12));
  EXPECT_EQ(fit.at("objective_choice").at("residuals"), "linear");
  // The default, log residuals, is another objective with another optimum.
  const auto log = run_cli(args);
  ASSERT_EQ(log.exit_code, 0) << log.err;
  EXPECT_GT(
      std::abs(coefficient(nlohmann::json::parse(log.out), "Z") - scipy.at("Z").get<double>()),
      0.1);
  auto bad = args;
  bad.insert(bad.end(), {"--loss", "huber:-1"});
  EXPECT_EQ(run_cli(bad).exit_code, 2);
}

// A law whose loss rises with N: the best Chinchilla fit has alpha < 0, which is not ok.
TEST(FitCommand, AFitOutsideItsPhysicalRangeSaysUsableNoAndExitsOne) {
  const ScratchDir dir;
  std::string text = "N,D,loss\n";
  for (double n : {1e6, 3e6, 1e7, 3e7, 1e8}) {
    for (double d : {1e8, 1e9, 1e10}) {
      const double loss = 1.0 + 0.5 * std::pow(n / 1e6, 0.2) + 100.0 * std::pow(d, -0.3);
      text += nlohmann::json(n).dump() + "," + nlohmann::json(d).dump() + "," +
              nlohmann::json(loss).dump() + "\n";
    }
  }
  const std::string csv = dir.file("rising.csv");
  std::ofstream(csv) << text;
  const auto result = run_cli({"fit",
                               "chinchilla",
                               "--csv",
                               csv,
                               "--params-col",
                               "N",
                               "--tokens-col",
                               "D",
                               "--loss-col",
                               "loss"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.out, HasSubstr("chinchilla: unphysical"));
  EXPECT_THAT(result.out, HasSubstr("usable: no"));
  EXPECT_THAT(result.out, HasSubstr("alpha = -"));
}

TEST_F(FitCli, ExportWritesEachTableInEachFormat) {
  const auto evals =
      run_cli(with_db({"export", "--sweep", "iso", "--table", "evals", "--format", "jsonl"}, db_));
  ASSERT_EQ(evals.exit_code, 0) << evals.err;
  std::istringstream lines(evals.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const auto row = nlohmann::json::parse(line);
    EXPECT_TRUE(row.contains("depth"));
    ++count;
  }
  EXPECT_EQ(count, 24 * static_cast<int>(kDepths.size()));

  const auto curves =
      run_cli(with_db({"export", "--sweep", "iso", "--table", "curves", "--format", "csv"}, db_));
  ASSERT_EQ(curves.exit_code, 0) << curves.err;
  EXPECT_EQ(curves.out.rfind("job_id,cell,model,budget_id,", 0), 0u);

  const auto jobs =
      run_cli(with_db({"export", "--sweep", "iso", "--table", "jobs", "--format", "json"}, db_));
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  EXPECT_EQ(nlohmann::json::parse(jobs.out).size(), 24u);

  // The older spellings.
  const auto older = run_cli(with_db({"export", "iso", "--table", "evaluations", "--json"}, db_));
  ASSERT_EQ(older.exit_code, 0) << older.err;
  EXPECT_EQ(nlohmann::json::parse(older.out).size(), 24 * kDepths.size());
}

}  // namespace
}  // namespace parcae::analysis
