// Refinement rounds end to end, with parcae-sim-train (sim_train.cpp) standing in for the
// trainer: its final losses follow L(C, mu) = E(C) + A (ln mu - ln mu*(C))^2 + noise with
// mu*(C) = 2 (C / 1e12)^0.5, so the truth is known. The grid, mu_rec in {1, 2} at 1e12, 4e12
// and 1.6e13 FLOPs, lies entirely below the optimum of the two larger budgets (mu* = 4 and 8);
// `sweep run` must extend it, bracket every minimum, recover the exponent 0.5 inside its interval
// and stop, spending less than a dense grid over the same range. A SIGKILLed run resumes to the
// same cells and decisions, and `sweep refine --dry-run` shows the next round without writing.
#include "sweeps/refine.h"

#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "orchestrator/orchestrator.h"
#include "results/results.h"
#include "sweeps/token_shards.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

using test_support::CliProcess;
using test_support::run_cli;
using test_support::ScratchDir;
using ::testing::HasSubstr;

constexpr double kTrueExponent = 0.5;
const std::map<std::string, std::string> kLaw = {
    {"PARCAE_SIM_LAW", R"({"a": 0.5, "mu_ref": 2, "c_ref": 1e12, "curvature": 0.05,
                         "noise": 0.003})"}};

// A sweep of parcae-micro over mu_rec at three budgets, refined along mu_rec.
std::string write_refining_sweep(const std::string& dir,
                                 const std::string& name,
                                 const std::vector<int>& mus,
                                 int max_rounds = 6,
                                 double max_flops = 0.0) {
  test_support::write_text(dir + "/data/train_000.bin", "sim shard");
  test_support::write_text(dir + "/data/val_000.bin", "sim shard");
  nlohmann::json refine = {{"axis", "mean_recurrence"},
                           {"until", {{"exponent_ci_width", 0.05}}},
                           {"max_rounds", max_rounds}};
  if (max_flops > 0)
    refine["max_flops"] = max_flops;
  const nlohmann::json sweep = {
      {"name", name},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", {1e12, 4e12, 1.6e13}},
      {"axes", {{"mean_recurrence", mus}}},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 10}}},
      {"refine", refine}};
  const std::string path = dir + "/" + name + ".json";
  test_support::write_text(path, sweep.dump(2));
  return path;
}

std::vector<std::string> run_args(const std::string& db, const std::string& sweep) {
  return {"--db",
          db,
          "sweep",
          "run",
          sweep,
          "--trainer",
          PARCAE_SIM_TRAINER_PATH,
          "--poll-interval",
          "0.01"};
}

nlohmann::json status_json(const std::string& db, const std::string& name) {
  const auto result = run_cli({"--db", db, "sweep", "status", name, "--json"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return nlohmann::json::parse(result.out);
}

// cell -> (job id, round), the rows that define what a sweep ran.
std::map<std::string, std::pair<std::string, int>> cells_of(const nlohmann::json& status) {
  std::map<std::string, std::pair<std::string, int>> out;
  for (const auto& job : status["jobs"])
    out[job["cell"]] = {job["job_id"], job["round"]};
  return out;
}

TEST(Refine, RecoversTheExponentBracketsEveryMinimumAndSpendsLessThanADenseGrid) {
  const ScratchDir dir;
  const std::string db = dir.file("refine.sqlite");
  const std::string file = write_refining_sweep(dir.path(), "sim", {1, 2});
  const auto run = run_cli(run_args(db, file), kLaw);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("round 1: "));

  const nlohmann::json status = status_json(db, "sim");
  ASSERT_FALSE(status["rounds"].empty());
  const nlohmann::json& last = status["rounds"].back();
  EXPECT_EQ(last["action"], "stop");
  EXPECT_THAT(last["reason"].get<std::string>(), HasSubstr("converged")) << last.dump();

  // The law's exponent lies inside the live fit's 95% interval, which is at most 0.05 wide.
  const nlohmann::json& fit = status["fit"];
  ASSERT_EQ(fit["status"], "ok") << fit.dump();
  ASSERT_TRUE(fit["problems"].is_array()) << fit.dump();
  EXPECT_TRUE(fit["problems"].empty()) << fit.dump();
  const double low = fit["exponent_ci"][0], high = fit["exponent_ci"][1];
  EXPECT_LE(low, kTrueExponent);
  EXPECT_GE(high, kTrueExponent);
  EXPECT_LE(high - low, 0.05);

  // Every budget's lowest loss lies strictly inside its mu_rec values.
  std::map<std::string, std::map<int, double>> losses;
  std::set<int> all_mus;
  int refined_cells = 0;
  for (const auto& job : status["jobs"]) {
    ASSERT_EQ(job["state"], "done");
    losses[job["budget_id"]][job["mean_recurrence"]] = job["loss_val"];
    all_mus.insert(job["mean_recurrence"].get<int>());
    refined_cells += job["round"].get<int>() > 0 ? 1 : 0;
  }
  EXPECT_GT(refined_cells, 0);
  EXPECT_GE(losses.size(), 3u);
  for (const auto& [budget, by_mu] : losses) {
    SCOPED_TRACE("budget " + budget);
    ASSERT_GE(by_mu.size(), 3u);
    int best = by_mu.begin()->first;
    for (const auto& [mu, loss] : by_mu)
      best = loss < by_mu.at(best) ? mu : best;
    EXPECT_NE(best, by_mu.begin()->first);
    EXPECT_NE(best, by_mu.rbegin()->first);
  }

  // A dense grid: every budget the refined sweep reached, at every mu_rec it used anywhere.
  nlohmann::json dense = nlohmann::json::parse(test_support::read_text(file));
  dense["name"] = "dense";
  dense.erase("refine");
  dense["budgets"] = nlohmann::json::array();
  for (const auto& job : status["jobs"]) {
    const nlohmann::json budget = {{"id", job["budget_id"]}, {"flops", job["budget_flops"]}};
    if (std::find(dense["budgets"].begin(), dense["budgets"].end(), budget) ==
        dense["budgets"].end())
      dense["budgets"].push_back(budget);
  }
  dense["axes"]["mean_recurrence"] = all_mus;
  const std::string dense_file = dir.file("dense.json");
  test_support::write_text(dense_file, dense.dump(2));
  const auto plan = run_cli(
      {"--db", dir.file("dense.sqlite"), "sweep", "plan", dense_file, "--dry-run", "--json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const double dense_flops = nlohmann::json::parse(plan.out)["totals"]["achieved_flops"];
  EXPECT_LT(status["flops_total"].get<double>(), dense_flops);
}

// SIGKILL `sweep run` after N trainers finished (inside the grid or a later round), then run it
// again: the sweep must end with exactly the cells, job ids, rounds and decisions of a run that
// was never interrupted.
class KillAndResumeRefinement : public ::testing::TestWithParam<int> {};

TEST_P(KillAndResumeRefinement, ResumedRunEndsWithTheCellsOfAnUninterruptedOne) {
  const ScratchDir dir;
  // Each database in its own folder, so that each has its own run folders (runs/ beside it).
  std::filesystem::create_directories(dir.file("clean"));
  std::filesystem::create_directories(dir.file("killed"));
  const std::string clean_db = dir.file("clean/db.sqlite"),
                    killed_db = dir.file("killed/db.sqlite");
  const std::string file = write_refining_sweep(dir.path(), "sim", {1, 2});
  ASSERT_EQ(run_cli(run_args(clean_db, file), kLaw).exit_code, 0);

  {
    CliProcess victim(run_args(killed_db, file), kLaw);
    std::string line;
    int finished = 0;
    while (finished < GetParam() && victim.read_err_line(line))
      finished += line.find("  done  trainer finished") != std::string::npos ? 1 : 0;
    ASSERT_EQ(finished, GetParam()) << "the run ended before the kill point";
    victim.kill(SIGKILL);
    victim.wait();
  }
  const auto resumed = run_cli(run_args(killed_db, file), kLaw);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  EXPECT_EQ(results::Store::open(killed_db).integrity_check(), "ok");
  const nlohmann::json clean = status_json(clean_db, "sim");
  const nlohmann::json killed = status_json(killed_db, "sim");
  EXPECT_EQ(cells_of(killed), cells_of(clean));
  ASSERT_EQ(killed["rounds"].size(), clean["rounds"].size());
  for (size_t i = 0; i < clean["rounds"].size(); ++i) {
    EXPECT_EQ(killed["rounds"][i]["additions"], clean["rounds"][i]["additions"]);
    EXPECT_EQ(killed["rounds"][i]["reason"], clean["rounds"][i]["reason"]);
  }
}

// The uninterrupted run trains the grid's six cells, six in round 1 and two in round 2: 3 kills
// inside the grid, 6 at its end (before or after round 1 is recorded), 9 and 13 inside rounds.
INSTANTIATE_TEST_SUITE_P(FinishedTrainers, KillAndResumeRefinement, ::testing::Values(3, 6, 9, 13));

TEST(Refine, DryRunShowsTheNextRoundWithItsCostAndWritesNothing) {
  const ScratchDir dir;
  const std::string db = dir.file("refine.sqlite");
  const std::string file = write_refining_sweep(dir.path(), "sim", {1, 2}, /*max_rounds=*/1);
  ASSERT_EQ(run_cli(run_args(db, file), kLaw).exit_code, 0);
  nlohmann::json before = status_json(db, "sim");
  ASSERT_EQ(before["rounds"].back()["action"], "stop");
  EXPECT_THAT(before["rounds"].back()["reason"].get<std::string>(), HasSubstr("max_rounds"));

  // Raising the cap changes the sweep's document but no cell's configuration.
  ASSERT_EQ(run_cli({"--db", db, "sweep", "plan", file, "refine.max_rounds=6"}).exit_code, 0);
  const auto dry = run_cli({"--db", db, "sweep", "refine", "sim", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("round 2: "));
  EXPECT_THAT(dry.out, HasSubstr("FLOPs"));
  EXPECT_THAT(dry.out, HasSubstr("GPU-hours"));
  EXPECT_THAT(dry.err, HasSubstr("nothing was written"));
  nlohmann::json after = status_json(db, "sim");
  EXPECT_EQ(cells_of(after), cells_of(before));
  EXPECT_EQ(after["rounds"], before["rounds"]);

  // Without --dry-run the round is recorded, and its cells are planned with their round.
  const auto real = run_cli({"--db", db, "sweep", "refine", "sim", "--json"});
  ASSERT_EQ(real.exit_code, 0) << real.err;
  const nlohmann::json decision = nlohmann::json::parse(real.out);
  ASSERT_EQ(decision["action"], "refine");
  const nlohmann::json planned = status_json(db, "sim");
  int new_cells = 0;
  for (const auto& job : planned["jobs"]) {
    if (job["round"] == 2) {
      EXPECT_EQ(job["state"], "planned");
      ++new_cells;
    }
  }
  EXPECT_EQ(new_cells, decision["cells"].get<int>());
  EXPECT_GT(new_cells, 0);
}

// A round's cells are planned as the grid's are: the same documents (data.bos_token) and, in
// `sweep plan`, the epochs of the training corpus with the warning of a repeating job.
TEST(Refine, ARoundsCellsReadTheGridsDocumentsAndShowTheirEpochs) {
  const ScratchDir dir;
  const std::string db = dir.file("refine.sqlite");
  const std::string file = write_refining_sweep(dir.path(), "sim", {1, 2});
  nlohmann::json document = nlohmann::json::parse(test_support::read_text(file));
  document["data"]["bos_token"] = 2;
  test_support::write_text(file, document.dump(2));
  constexpr int64_t kCorpusTokens = 50000;
  sweeps::write_token_shard(dir.file("data/train_000.bin"),
                            std::vector<uint16_t>(kCorpusTokens, 2));
  sweeps::write_token_shard(dir.file("data/val_000.bin"), std::vector<uint16_t>(1000, 2));
  const auto plan = run_cli({"--db", db, "sweep", "plan", file});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;

  sweeps::RefineRound round;
  round.round = 1;
  round.action = "refine";
  round.additions = {{"4e12", 4e12, false, {4, 8}, "minimum at the high edge"}};
  {
    results::Store store = results::Store::open(db);
    orchestrator::record_refinement(store, "sim", round);
  }
  int round_cells = 0;
  for (const auto& job : results::Store::open(db).jobs("sim")) {
    EXPECT_EQ(job.config.at("data").value("bos_token", -1), 2) << job.cell;
    round_cells += job.cell == "C4e12-mu4-seed0" || job.cell == "C4e12-mu8-seed0" ? 1 : 0;
  }
  EXPECT_EQ(round_cells, 2);

  const auto replanned = run_cli({"--db", db, "sweep", "plan", file, "--dry-run", "--json"});
  ASSERT_EQ(replanned.exit_code, 0) << replanned.err;
  const nlohmann::json cells = nlohmann::json::parse(replanned.out).at("cells");
  int shown = 0;
  for (const auto& cell : cells) {
    SCOPED_TRACE(cell.at("cell").get<std::string>());
    ASSERT_TRUE(cell.at("epochs").is_number());
    const double epochs =
        cell.at("train_tokens").get<double>() / static_cast<double>(kCorpusTokens);
    EXPECT_DOUBLE_EQ(cell.at("epochs").get<double>(), epochs);
    if (cell.at("round") == 1) {
      ++shown;
      ASSERT_GT(epochs, 1.0);
      ASSERT_EQ(cell.at("warnings").size(), 1u);
      EXPECT_THAT(cell.at("warnings")[0].get<std::string>(), HasSubstr("epochs of the"));
    }
  }
  EXPECT_EQ(shown, 2);
}

TEST(Refine, StopsBeforeARoundThatWouldTakeTheSweepPastMaxFlops) {
  const ScratchDir dir;
  const std::string db = dir.file("capped.sqlite");
  // The grid plans 4.2e13 FLOPs; its first round would add about as much again.
  const std::string file =
      write_refining_sweep(dir.path(), "capped", {1, 2}, /*max_rounds=*/6, /*max_flops=*/5e13);
  const auto run = run_cli(run_args(db, file), kLaw);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("refinement stops before round 1: max_flops"));
  const nlohmann::json status = status_json(db, "capped");
  EXPECT_LE(status["flops_total"].get<double>(), 5e13);
  for (const auto& job : status["jobs"])
    EXPECT_EQ(job["round"], 0) << job["cell"];
  ASSERT_EQ(status["rounds"].size(), 1u);
  EXPECT_EQ(status["rounds"][0]["action"], "stop");
}

// mu* = 0.25 (C / 1e12)^0.5 is at most 1 over the grid (0.25, 0.5, 1): every minimum sits at
// mu_rec = 1. The optimum grows with C, so refinement goes up in budget, from the bound, until it
// finds one whose minimum is inside the axis (mu* = 2 at 6.4e13), and goes on from there.
TEST(Refine, MinimaAtTheAxisBoundEverywhereAddABudgetAboveTheLargest) {
  const ScratchDir dir;
  const std::string db = dir.file("bound.sqlite");
  const std::string file = write_refining_sweep(dir.path(), "bound", {1, 2, 4}, /*max_rounds=*/2);
  const auto run = run_cli(
      run_args(db, file),
      {{"PARCAE_SIM_LAW",
        R"({"a": 0.5, "mu_ref": 0.25, "c_ref": 1e12, "curvature": 0.05, "noise": 0.001})"}});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json status = status_json(db, "bound");
  ASSERT_EQ(status["rounds"].size(), 3u) << status["rounds"].dump();
  const nlohmann::json& first = status["rounds"][0];
  EXPECT_EQ(first["action"], "refine");
  EXPECT_THAT(first["reason"].get<std::string>(),
              HasSubstr("minimum at the axis bound at every budget"));
  EXPECT_THAT(first["reason"].get<std::string>(),
              HasSubstr("1.6e13 (low edge mu_rec = 1) cannot be extended"));
  ASSERT_EQ(first["additions"].size(), 1u) << first.dump();
  EXPECT_EQ(first["additions"][0]["budget_id"], "6.4e13");
  EXPECT_EQ(first["additions"][0]["new_budget"], true);
  EXPECT_EQ(first["additions"][0]["values"], nlohmann::json({1, 2, 3, 4}));
  EXPECT_THAT(first["additions"][0]["reason"].get<std::string>(),
              HasSubstr("a further budget, 4x above the largest, from the axis bound up, "
                        "mu_rec = 1 to 4"));
  // The new budget's minimum is inside the axis, near mu* = 2; the next round builds on it.
  double x_star_new = 0.0;
  for (const auto& minimum : status["fit"]["minima"]) {
    const std::string text = minimum.get<std::string>();
    const std::string prefix = "6.4e13 ok x*=";
    if (text.rfind(prefix, 0) == 0)
      x_star_new = std::stod(text.substr(prefix.size()));
  }
  EXPECT_GT(x_star_new, 1.5) << status["fit"].dump();
  EXPECT_LT(x_star_new, 2.7) << status["fit"].dump();
  EXPECT_EQ(status["rounds"][1]["action"], "refine") << status["rounds"][1].dump();
  EXPECT_EQ(status["rounds"][2]["action"], "stop");
  EXPECT_THAT(status["rounds"][2]["reason"].get<std::string>(), HasSubstr("max_rounds = 2"));

  // A law that never leaves the bound within the caps: refinement stops at them, saying so.
  const std::string db_low = dir.file("low.sqlite");
  const std::string low =
      write_refining_sweep(dir.path(), "low", {1, 2, 4}, /*max_rounds=*/6, /*max_flops=*/2e14);
  const auto capped = run_cli(
      run_args(db_low, low),
      {{"PARCAE_SIM_LAW", R"({"a": 0.1, "mu_ref": 0.3, "curvature": 0.05, "noise": 0.001})"}});
  ASSERT_EQ(capped.exit_code, 0) << capped.err;
  const nlohmann::json low_status = status_json(db_low, "low");
  const nlohmann::json& last = low_status["rounds"].back();
  EXPECT_EQ(last["action"], "stop");
  EXPECT_THAT(last["reason"].get<std::string>(), HasSubstr("max_flops"));
  EXPECT_LE(low_status["flops_total"].get<double>(), 2e14);
}

TEST(Refine, SweepWithoutARefineBlockIsRefusedBySweepRefine) {
  const ScratchDir dir;
  const std::string db = dir.file("plain.sqlite");
  nlohmann::json sweep =
      nlohmann::json::parse(test_support::read_text(write_refining_sweep(dir.path(), "p", {1, 2})));
  sweep.erase("refine");
  test_support::write_text(dir.file("p.json"), sweep.dump());
  ASSERT_EQ(run_cli({"--db", db, "sweep", "plan", dir.file("p.json")}).exit_code, 0);
  const auto refused = run_cli({"--db", db, "sweep", "refine", "p", "--dry-run"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("refine = (missing)"));
}

// A noisy, shallow law: after round 1 every minimum is bracketed and a's interval is well inside
// a loose `until`, but 15% of the bootstrap replicates find no minimum, so `fit isoflop` calls the
// fit unusable. Refinement adds cells instead of stopping as converged, and status says why.
TEST(Refine, AFitThatIsNotUsableDoesNotConverge) {
  const ScratchDir dir;
  const std::string db = dir.file("noisy.sqlite");
  nlohmann::json sweep = nlohmann::json::parse(
      test_support::read_text(write_refining_sweep(dir.path(), "noisy", {1, 2, 3, 4, 6, 8}, 2)));
  sweep["refine"]["until"]["exponent_ci_width"] = 100;
  test_support::write_text(dir.file("noisy.json"), sweep.dump());
  const std::map<std::string, std::string> noisy = {
      {"PARCAE_SIM_LAW",
       R"({"a": 0.5, "mu_ref": 2, "c_ref": 1e12, "curvature": 0.01, "noise": 0.004})"}};
  const auto run = run_cli(run_args(db, dir.file("noisy.json")), noisy);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json status = status_json(db, "noisy");
  ASSERT_GE(status["rounds"].size(), 2u) << status["rounds"].dump();
  const nlohmann::json& second = status["rounds"][1];
  EXPECT_EQ(second["action"], "refine") << second.dump();
  EXPECT_THAT(second["reason"].get<std::string>(), HasSubstr("but the fit is not usable yet"))
      << second.dump();
  EXPECT_THAT(second["reason"].get<std::string>(), HasSubstr("bootstrap replicates failed"));
  EXPECT_GT(second["cells"].get<int>(), 0) << second.dump();
}

TEST(Refine, StatusShowsTheLiveFitOfASweepWithoutRefinement) {
  const ScratchDir dir;
  const std::string db = dir.file("plain.sqlite");
  nlohmann::json sweep = nlohmann::json::parse(
      test_support::read_text(write_refining_sweep(dir.path(), "plain", {1, 2, 4, 8, 16})));
  sweep.erase("refine");
  test_support::write_text(dir.file("plain.json"), sweep.dump());
  ASSERT_EQ(run_cli(run_args(db, dir.file("plain.json")), kLaw).exit_code, 0);
  const nlohmann::json status = status_json(db, "plain");
  ASSERT_EQ(status["fit"]["status"], "ok") << status["fit"].dump();
  EXPECT_EQ(status["fit"]["runs"], 15);
  EXPECT_EQ(status["fit"]["job_ids"].size(), 15u);
  EXPECT_TRUE(status["rounds"].empty());
  const auto text = run_cli({"--db", db, "sweep", "status", "plain"});
  EXPECT_THAT(text.out, HasSubstr("fit: mu* ~ C^a, a = "));
}

}  // namespace
}  // namespace parcae::cli
