// The Slurm backend against a real Slurm: the one-node cluster that `tests/slurm/cluster start`
// runs on localhost (SLURM_CONF, else $PARCAE_SLURM_DIR/slurm.conf, else
// /tmp/parcae-slurm/slurm.conf). A tiny sweep with the real parcae-train is requeued in the middle
// of a job and must end as the local backend ends it; with the fake trainer of the orchestrator
// tests, a sweep is split into arrays by the cluster's MaxArraySize (4), a sweep is cancelled, and
// hostile names and paths go through sbatch without reaching a shell; with the simulated trainer,
// refinement rounds run through Slurm as they run locally. Every test fails, saying how
// to start the cluster, when no cluster answers.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "orchestrator/detail/slurm.h"
#include "results/results.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

namespace fs = std::filesystem;
using orchestrator::detail::CommandResult;
using orchestrator::detail::run_command;
using results::JobState;
using results::Store;
using test_support::run_cli;
using test_support::ScratchDir;

// Long enough for a 2-core machine that trains two tiny models at once; never reached when the
// backend works.
constexpr double kWaitLimitS = 300.0;

std::string slurm_conf() {
  if (const char* conf = std::getenv("SLURM_CONF"); conf != nullptr && *conf != '\0')
    return conf;
  const char* dir = std::getenv("PARCAE_SLURM_DIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp/parcae-slurm") + "/slurm.conf";
}

class SlurmCluster : public testing::Test {
 protected:
  void SetUp() override {
    ::setenv("SLURM_CONF", slurm_conf().c_str(), 1);
    const CommandResult sinfo = run_command({"sinfo", "--noheader", "--format=%t"});
    ASSERT_EQ(sinfo.exit_code, 0)
        << "no Slurm cluster answers (SLURM_CONF=" << slurm_conf()
        << "); start one with `tests/slurm/cluster start` (scripts/test does when CI=true or "
           "PARCAE_SLURM_TESTS=1): "
        << sinfo.err;
    ASSERT_THAT(
        sinfo.out,
        testing::AnyOf(
            testing::HasSubstr("idle"), testing::HasSubstr("mix"), testing::HasSubstr("alloc")))
        << "the test cluster's node is not up: " << sinfo.out;
  }

  // Waits for `condition`, failing the test with `what` after kWaitLimitS.
  static void wait_until(const std::function<bool()>& condition, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(kWaitLimitS * 1000));
    while (!condition()) {
      if (std::chrono::steady_clock::now() > deadline)
        FAIL() << "timed out waiting for " << what;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  // Slurm's state of one job ("" when squeue does not show it).
  static std::string slurm_state(const std::string& id) {
    const auto states = orchestrator::detail::parse_job_states(
        run_command({"squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r"}).out);
    const auto it = states.find(id);
    return it == states.end() ? "" : it->second.state;
  }

  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty())
        out.push_back(line);
    }
    return out;
  }
};

// Byte-level shards made by `parcae-scale data prepare` from a generated text.
void prepare_data(const ScratchDir& dir) {
  std::string text;
  for (int i = 0; text.size() < 300000; ++i) {
    text += "In the beginning " + std::to_string(i % 97) + " was the word, and the word was " +
            std::to_string((i * 7) % 13) + ".\n";
  }
  test_support::write_text(dir.file("corpus.txt"), text);
  const auto prepared = run_cli({"data",
                                 "prepare",
                                 "--text",
                                 dir.file("corpus.txt"),
                                 "--out",
                                 dir.file("data"),
                                 "--documents",
                                 "line",
                                 "--val-fraction",
                                 "0.1"});
  ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
}

TEST_F(SlurmCluster, TinySweepSurvivesARequeueAndEndsAsTheLocalBackendEndsIt) {
  const ScratchDir dir;
  prepare_data(dir);
  const nlohmann::json sweep = {
      {"name", "slurm-e2e"},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 32}}},
      {"budgets", {{{"id", "1e10"}, {"flops", 1e10}}, {{"id", "4e10"}, {"flops", 4e10}}}},
      {"axes", {{"mean_recurrence", {"1-fixed", 2}}}},
      {"training", {{"batch_tokens", 1024}, {"micro_batch_size", 32}, {"precision", "fp32"}}},
      {"eval", {{"depths", {1, 2, 4}}, {"val_sequences", 32}}},
      {"device", "cpu"},
      {"checkpoint_interval_steps", 4},
      {"plan", {{"min_steps", 10}, {"max_flop_gap", 0.1}}}};
  const std::string file = dir.file("slurm-e2e.json");
  test_support::write_text(file, sweep.dump(2));
  const std::string slurm_db = dir.file("slurm.sqlite");
  const std::string local_db = dir.file("local.sqlite");
  const std::vector<std::string> slurm_run = {"--db",
                                              slurm_db,
                                              "sweep",
                                              "run",
                                              file,
                                              "--backend",
                                              "slurm",
                                              "--trainer",
                                              PARCAE_TRAINER_PATH,
                                              "--jobs-dir",
                                              dir.file("slurm-runs"),
                                              "--poll-interval",
                                              "0.5"};

  // Submit and return; then requeue the longest job once it has saved a checkpoint.
  std::vector<std::string> detached = slurm_run;
  detached.push_back("--detach");
  const auto submitted = run_cli(detached);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  ASSERT_EQ(lines(submitted.out).size(), 1u) << submitted.out;  // 4 cells: one array

  std::string victim_id;
  std::string victim_dir;
  std::string slurm_id;
  {
    const Store store = Store::open(slurm_db, Store::Mode::kExisting);
    const auto jobs = store.jobs("slurm-e2e");
    ASSERT_EQ(jobs.size(), 4u);
    const auto longest = std::max_element(
        jobs.begin(), jobs.end(), [](const auto& a, const auto& b) { return a.steps < b.steps; });
    ASSERT_GE(longest->steps, 30);
    victim_id = longest->id;
    victim_dir = longest->out_dir;
    for (const auto& job : jobs) {
      EXPECT_EQ(job.state, JobState::kRunning);
      const auto attempt = store.last_attempt(job.id);
      ASSERT_TRUE(attempt && attempt->backend_id);
      EXPECT_EQ(attempt->backend, "slurm");
    }
    slurm_id = *store.last_attempt(victim_id)->backend_id;
  }
  wait_until(
      [&] {
        return test_support::read_text(victim_dir + "/events.jsonl").find("\"checkpoint\"") !=
               std::string::npos;
      },
      "a checkpoint of " + victim_id);
  const auto requeue = run_command({"scontrol", "requeue", slurm_id});
  ASSERT_EQ(requeue.exit_code, 0) << requeue.err;
  // A requeued job waits two minutes before it is eligible again; the test does not.
  wait_until([&] { return slurm_state(slurm_id) == "PENDING"; }, slurm_id + " pending again");
  const auto now = run_command({"scontrol", "update", "JobId=" + slurm_id, "StartTime=now"});
  ASSERT_EQ(now.exit_code, 0) << now.err;

  // Follow the sweep to its end.
  const auto followed = run_cli(slurm_run);
  ASSERT_EQ(followed.exit_code, 0) << followed.err;

  // The same sweep on the local backend.
  const auto local = run_cli({"--db",
                              local_db,
                              "sweep",
                              "run",
                              file,
                              "--trainer",
                              PARCAE_TRAINER_PATH,
                              "--jobs-dir",
                              dir.file("local-runs"),
                              "--max-parallel",
                              "2",
                              "--poll-interval",
                              "0.2"});
  ASSERT_EQ(local.exit_code, 0) << local.err;

  const Store on_slurm = Store::open(slurm_db, Store::Mode::kExisting);
  const Store on_local = Store::open(local_db, Store::Mode::kExisting);
  EXPECT_EQ(on_slurm.integrity_check(), "ok");
  const auto slurm_jobs = on_slurm.jobs("slurm-e2e");
  const auto local_jobs = on_local.jobs("slurm-e2e");
  ASSERT_EQ(slurm_jobs.size(), local_jobs.size());
  for (size_t i = 0; i < slurm_jobs.size(); ++i) {
    const auto& s = slurm_jobs[i];
    const auto& l = local_jobs[i];
    SCOPED_TRACE(s.cell);
    EXPECT_EQ(s.id, l.id);
    EXPECT_EQ(s.cell, l.cell);
    EXPECT_EQ(s.state, JobState::kDone);
    EXPECT_EQ(s.state, l.state);
    EXPECT_EQ(s.final_status, l.final_status);
    EXPECT_EQ(s.steps_done, l.steps_done);
    ASSERT_TRUE(s.loss_val && l.loss_val);
    EXPECT_LT(*s.loss_val, 5.6);  // below ln(256): the byte model learned something
    const auto curve = on_slurm.curve(s.id);
    ASSERT_EQ(static_cast<int64_t>(curve.size()), s.steps);
    EXPECT_EQ(curve.size(), on_local.curve(l.id).size());
    for (size_t k = 0; k < curve.size(); ++k)
      EXPECT_EQ(curve[k].step, static_cast<int64_t>(k) + 1);
    std::set<int> slurm_depths, local_depths;
    for (const auto& e : on_slurm.evaluations(s.id))
      slurm_depths.insert(e.depth);
    for (const auto& e : on_local.evaluations(l.id))
      local_depths.insert(e.depth);
    EXPECT_EQ(slurm_depths, (std::set<int>{1, 2, 4}));
    EXPECT_EQ(slurm_depths, local_depths);

    const auto attempts = on_slurm.attempts(s.id);
    ASSERT_FALSE(attempts.empty());
    EXPECT_EQ(attempts.back().outcome, results::Outcome::kDone);
    for (const auto& a : attempts) {
      EXPECT_EQ(a.backend, "slurm");
      EXPECT_EQ(a.backend_id, attempts.front().backend_id);  // Slurm ran the same job again
    }
    if (s.id != victim_id) {
      EXPECT_EQ(attempts.size(), 1u);
      EXPECT_EQ(s.preemptions, 0);
      continue;
    }
    // The requeued job: one preempted attempt that saved (143), then a resumed run to the end.
    ASSERT_EQ(attempts.size(), 2u);
    EXPECT_EQ(attempts[0].outcome, results::Outcome::kPreempted);
    EXPECT_EQ(attempts[0].exit_code, 143);
    EXPECT_THAT(attempts[0].reason.value_or(""), testing::HasSubstr("slurm " + slurm_id));
    EXPECT_EQ(s.preemptions, 1);
    EXPECT_EQ(s.failures, 0);
    const auto provenance = on_slurm.provenance(s.id);
    ASSERT_EQ(provenance.size(), 2u);
    EXPECT_FALSE(provenance[0].resumed);
    EXPECT_TRUE(provenance[1].resumed);
  }
}

TEST_F(SlurmCluster, ASweepLargerThanMaxArraySizeIsSubmittedAsSeveralArrays) {
  const ScratchDir dir;
  const std::string trainer = test_support::write_fake_trainer(dir.path());
  // Three values of mu_rec and two seeds: six jobs.
  const std::string file = test_support::write_sweep(dir.path(), "split", {1, 2, 3});
  {
    auto sweep = nlohmann::json::parse(test_support::read_text(file));
    sweep["axes"]["seed"] = {0, 1};
    test_support::write_text(file, sweep.dump(2));
  }
  const std::string db = dir.file("split.sqlite");
  const auto submitted = run_cli({"--db",
                                  db,
                                  "sweep",
                                  "run",
                                  file,
                                  "--backend",
                                  "slurm",
                                  "--trainer",
                                  trainer,
                                  "--array-throttle",
                                  "2",
                                  "--fit-after",
                                  "isoflop",
                                  "--detach"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  const auto ids = lines(submitted.out);
  ASSERT_EQ(ids.size(), 2u) << submitted.out;  // 6 jobs, MaxArraySize 4: 4 + 2
  const size_t fit_at = submitted.err.find("fit job ");
  ASSERT_NE(fit_at, std::string::npos) << submitted.err;
  const std::string fit_job =
      submitted.err.substr(fit_at + 8, submitted.err.find(';', fit_at) - fit_at - 8);

  // `sweep status` reconciles on its own, without `sweep run`.
  wait_until(
      [&] {
        const auto status = run_cli({"--db", db, "sweep", "status", "split", "--json"});
        return status.exit_code == 0 &&
               nlohmann::json::parse(status.out)["counts"].value("done", 0) == 6;
      },
      "six jobs done");
  const Store store = Store::open(db, Store::Mode::kExisting);
  std::multiset<std::string> arrays;
  std::set<std::string> tasks;
  for (const auto& job : store.jobs("split")) {
    SCOPED_TRACE(job.cell);
    const auto attempts = store.attempts(job.id);
    ASSERT_EQ(attempts.size(), 1u);
    const std::string id = attempts[0].backend_id.value_or("");
    const size_t underscore = id.find('_');
    ASSERT_NE(underscore, std::string::npos) << id;
    arrays.insert(id.substr(0, underscore));
    tasks.insert(id);
    EXPECT_LT(std::stoi(id.substr(underscore + 1)), 4);
    EXPECT_EQ(static_cast<int64_t>(store.curve(job.id).size()), 6);
  }
  EXPECT_EQ(arrays.count(ids[0]), 4u);
  EXPECT_EQ(arrays.count(ids[1]), 2u);
  EXPECT_EQ(tasks.size(), 6u);

  // The fit chained with --fit-after ran once both arrays had succeeded. (The fake trainer's
  // losses are flat, so the fit finds no minimum; what matters here is that it ran, and after.)
  const std::string fit_log =
      (fs::path(store.find_sweep("split")->jobs_dir) / "slurm-logs" / ("fit-" + fit_job + ".out"))
          .string();
  wait_until([&] { return test_support::read_text(fit_log).find("isoflop") != std::string::npos; },
             "the fit job's output in " + fit_log);
}

TEST_F(SlurmCluster, AJobWarnedOfItsTimeLimitSavesAndIsSubmittedAgainToFinish) {
  const ScratchDir dir;
  const std::string trainer = test_support::write_fake_trainer(dir.path());
  const std::string file = test_support::write_sweep(dir.path(), "timed", {1});
  // The first run blocks after a checkpoint until told to stop; the second finishes. The second
  // is a new Slurm job with the same limit, so it is warned too when it runs past 10 s, which a
  // loaded machine can make it do: it ignores the warning, so that exactly one attempt is
  // preempted however fast the machine is.
  test_support::plan_actions(dir.file("plans"), "C2e11-mu1-seed0", {"block", "unstoppable"});
  const std::string db = dir.file("timed.sqlite");
  // A one-minute limit with the warning 50 s before it: USR2 comes 10-40 s in (slurmctld checks
  // time limits every 30 s).
  const auto ran = run_cli({"--db",
                            db,
                            "sweep",
                            "run",
                            file,
                            "--backend",
                            "slurm",
                            "--trainer",
                            trainer,
                            "--time",
                            "1",
                            "--signal-grace",
                            "50",
                            "--poll-interval",
                            "0.5"},
                           {{"FAKE_PLAN_DIR", dir.file("plans")}});
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  const Store store = Store::open(db, Store::Mode::kExisting);
  const auto jobs = store.jobs("timed");
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state, JobState::kDone);
  EXPECT_EQ(jobs[0].preemptions, 1);
  EXPECT_EQ(jobs[0].failures, 0);
  const auto attempts = store.attempts(jobs[0].id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, results::Outcome::kPreempted);
  EXPECT_EQ(attempts[0].exit_code, 143);
  // The batch script exited 143 before the limit: Slurm calls that FAILED, and the history says so.
  EXPECT_THAT(attempts[0].reason.value_or(""), testing::HasSubstr("[Slurm state "));
  EXPECT_EQ(attempts[1].outcome, results::Outcome::kDone);
  EXPECT_NE(attempts[1].backend_id, attempts[0].backend_id);  // a new Slurm job
  EXPECT_EQ(static_cast<int64_t>(store.curve(jobs[0].id).size()), 6);
}

TEST_F(SlurmCluster, ACancelledSweepIsScancelledAndEveryJobEndsCancelled) {
  const ScratchDir dir;
  const std::string trainer = test_support::write_fake_trainer(dir.path());
  const std::string file = test_support::write_sweep(dir.path(), "doomed", {1, 2, 3});
  for (const std::string cell : {"C2e11-mu1-seed0", "C2e11-mu2-seed0", "C2e11-mu3-seed0"})
    test_support::plan_actions(dir.file("plans"), cell, {"block"});
  const std::string db = dir.file("doomed.sqlite");
  const auto submitted = run_cli(
      {"--db", db, "sweep", "run", file, "--backend", "slurm", "--trainer", trainer, "--detach"},
      {{"FAKE_PLAN_DIR", dir.file("plans")}});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  const std::string array = lines(submitted.out).at(0);

  // The node has room for some of them: wait until one has saved and blocks.
  std::vector<results::JobRecord> jobs;
  {
    const Store store = Store::open(db, Store::Mode::kExisting);
    jobs = store.jobs("doomed");
  }
  ASSERT_EQ(jobs.size(), 3u);
  wait_until(
      [&] {
        return test_support::read_text(jobs[0].out_dir + "/events.jsonl").find("\"checkpoint\"") !=
               std::string::npos;
      },
      "the first job to block");

  const auto cancelled = run_cli({"--db", db, "sweep", "cancel", "doomed"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  EXPECT_EQ(lines(cancelled.out).size(), 3u);
  wait_until(
      [&] {
        for (int i = 0; i < 3; ++i) {
          const std::string state = slurm_state(array + "_" + std::to_string(i));
          if (!state.empty() && state != "CANCELLED")
            return false;
        }
        return true;
      },
      "Slurm to cancel the array");

  const auto status = run_cli({"--db", db, "sweep", "status", "doomed", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const auto counts = nlohmann::json::parse(status.out)["counts"];
  EXPECT_EQ(counts.value("cancelled", 0), 3);
  EXPECT_EQ(counts.value("running", 0), 0);
  const Store store = Store::open(db, Store::Mode::kExisting);
  for (const auto& job : store.jobs("doomed")) {
    SCOPED_TRACE(job.cell);
    EXPECT_EQ(job.state, JobState::kCancelled);
    const auto attempt = store.last_attempt(job.id);
    ASSERT_TRUE(attempt);
    EXPECT_EQ(attempt->outcome, results::Outcome::kCancelled);
    EXPECT_THAT(attempt->reason.value_or(""), testing::HasSubstr("scancel"));
  }
  // The blocked trainer was told to stop (SIGTERM from Slurm) and said so before exiting.
  wait_until(
      [&] {
        return test_support::read_text(jobs[0].out_dir + "/events.jsonl").find("\"preempted\"") !=
               std::string::npos;
      },
      "the blocked trainer to stop on SIGTERM");
}

TEST_F(SlurmCluster, QuotesAndCommandSubstitutionsInNamesNeverReachAShell) {
  const ScratchDir dir;
  const std::string hostile = "it's \"$(touch PWNED)\" `touch PWNED` $HOME %j";
  // A sweep name like this is refused before anything is submitted.
  const std::string bad_file = test_support::write_sweep(dir.path(), "bad", {1});
  {
    auto sweep = nlohmann::json::parse(test_support::read_text(bad_file));
    sweep["name"] = "sweep " + hostile;
    test_support::write_text(bad_file, sweep.dump(2));
  }
  const std::string trainer_dir = dir.file("bin " + hostile);
  fs::create_directories(trainer_dir);
  const std::string trainer = test_support::write_fake_trainer(trainer_dir);
  const auto before =
      lines(run_command({"squeue", "--noheader", "--states=all", "--format=%i"}).out);
  const auto refused = run_cli({"--db",
                                dir.file("bad.sqlite"),
                                "sweep",
                                "run",
                                bad_file,
                                "--backend",
                                "slurm",
                                "--trainer",
                                trainer,
                                "--detach"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, testing::HasSubstr("name"));
  EXPECT_EQ(lines(run_command({"squeue", "--noheader", "--states=all", "--format=%i"}).out).size(),
            before.size());

  // Paths are the user's to choose: a jobs folder and a trainer path full of shell syntax run.
  const std::string file = test_support::write_sweep(dir.path(), "quoted", {1, 2});
  const std::string jobs_root = dir.file("runs " + hostile);
  const std::string db = dir.file("quoted.sqlite");
  const auto ran = run_cli({"--db",
                            db,
                            "sweep",
                            "run",
                            file,
                            "--backend",
                            "slurm",
                            "--trainer",
                            trainer,
                            "--jobs-dir",
                            jobs_root,
                            "--poll-interval",
                            "0.3"});
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  const Store store = Store::open(db, Store::Mode::kExisting);
  for (const auto& job : store.jobs("quoted")) {
    SCOPED_TRACE(job.cell);
    EXPECT_EQ(job.state, JobState::kDone);
    EXPECT_EQ(job.out_dir.rfind(jobs_root, 0), 0u) << job.out_dir;
    EXPECT_TRUE(fs::exists(job.out_dir + "/slurm-runs.log"));
  }
  // Slurm's own output went where asked, % and all.
  EXPECT_FALSE(fs::is_empty(jobs_root + "/quoted/slurm-logs"));
  for (const auto& entry : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_NE(entry.path().filename(), "PWNED") << entry.path();
  }
  EXPECT_FALSE(fs::exists(jobs_root + "/quoted/PWNED"));
}

// Refinement rounds through Slurm: each round's cells go out as arrays like the grid's, and the
// sweep ends with the cells, job ids, rounds and decisions of the same sweep run by the local
// backend. parcae-sim-train writes losses from a known isoFLOP law
// (tests/orchestrator/sim_train.cpp), the same for a cell whichever backend ran it; the grid starts
// below the optimum at the larger budgets, so at least one round is needed.
TEST_F(SlurmCluster, RefinementRoundsEndAsTheLocalBackendEndsThem) {
  const ScratchDir dir;
  test_support::write_text(dir.file("data/train_000.bin"), "sim shard");
  test_support::write_text(dir.file("data/val_000.bin"), "sim shard");
  const nlohmann::json sweep = {
      {"name", "slurm-refine"},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", {1e12, 4e12, 1.6e13}},
      {"axes", {{"mean_recurrence", {1, 2}}}},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 10}}},
      {"refine",
       {{"axis", "mean_recurrence"}, {"until", {{"exponent_ci_width", 0.05}}}, {"max_rounds", 6}}}};
  const std::string file = dir.file("slurm-refine.json");
  test_support::write_text(file, sweep.dump(2));
  const std::map<std::string, std::string> law = {
      {"PARCAE_SIM_LAW",
       R"({"a": 0.5, "mu_ref": 2, "c_ref": 1e12, "curvature": 0.05, "noise": 0.003})"}};
  auto run = [&](const std::string& db, const std::vector<std::string>& backend) {
    std::vector<std::string> args = {"--db",
                                     db,
                                     "sweep",
                                     "run",
                                     file,
                                     "--trainer",
                                     PARCAE_SIM_TRAINER_PATH,
                                     "--poll-interval",
                                     "0.3"};
    args.insert(args.end(), backend.begin(), backend.end());
    return run_cli(args, law);
  };
  const auto slurm =
      run(dir.file("slurm.sqlite"), {"--backend", "slurm", "--jobs-dir", dir.file("slurm-runs")});
  ASSERT_EQ(slurm.exit_code, 0) << slurm.err;
  EXPECT_THAT(slurm.err, testing::HasSubstr("round 1: "));
  const auto local = run(dir.file("local.sqlite"), {"--jobs-dir", dir.file("local-runs")});
  ASSERT_EQ(local.exit_code, 0) << local.err;

  auto status_of = [&](const std::string& db) {
    const auto result = run_cli({"--db", db, "sweep", "status", "slurm-refine", "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out);
  };
  const nlohmann::json slurm_status = status_of(dir.file("slurm.sqlite"));
  const nlohmann::json local_status = status_of(dir.file("local.sqlite"));
  auto cells_of = [](const nlohmann::json& status) {
    std::map<std::string, std::tuple<std::string, int, std::string, double>> out;
    for (const auto& job : status["jobs"])
      out[job["cell"]] = {job["job_id"], job["round"], job["state"], job["loss_val"]};
    return out;
  };
  const auto slurm_cells = cells_of(slurm_status);
  EXPECT_EQ(slurm_cells, cells_of(local_status));
  int refined = 0;
  for (const auto& [cell, row] : slurm_cells) {
    EXPECT_EQ(std::get<2>(row), "done") << cell;
    refined += std::get<1>(row) > 0 ? 1 : 0;
  }
  EXPECT_GT(refined, 0);
  // The same decisions; the GPU-hour estimates follow each backend's measured wall times.
  auto decisions_of = [](nlohmann::json rounds) {
    for (auto& round : rounds)
      round.erase("gpu_hours");
    return rounds;
  };
  ASSERT_FALSE(slurm_status["rounds"].empty());
  EXPECT_EQ(decisions_of(slurm_status["rounds"]), decisions_of(local_status["rounds"]));
  EXPECT_EQ(slurm_status["rounds"].back()["action"], "stop");
  // Every round's cells ran as Slurm jobs: each has Slurm's log.
  const Store store = Store::open(dir.file("slurm.sqlite"), Store::Mode::kExisting);
  for (const auto& job : store.jobs("slurm-refine"))
    EXPECT_TRUE(fs::exists(job.out_dir + "/slurm-runs.log")) << job.cell;
}

}  // namespace
}  // namespace parcae::cli
