// parcae-scale's sweep commands as a user runs them: bad sweep files exit 2 naming file, field
// and value; plan, status, list, retry and export print results on stdout; `sweep run` exits
// 128 + n on signal n after its trainers saved; a SIGKILLed `sweep run` followed by a plain rerun
// ends where an uninterrupted run ends, with an intact database; and two orchestrators on one
// database run every cell exactly once.
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "results/results.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

using results::JobState;
using results::Store;
using test_support::CliProcess;
using test_support::run_cli;
using test_support::ScratchDir;
using ::testing::HasSubstr;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    trainer_ = test_support::write_fake_trainer(dir_.path());
    std::filesystem::create_directories(plans_);
    env_ = {{"FAKE_PLAN_DIR", plans_}, {"FAKE_FIFO", fifo_.path()}};
  }

  std::vector<std::string> with_db(std::vector<std::string> args, const std::string& db) const {
    args.insert(args.begin(), {"--db", db});
    return args;
  }

  ScratchDir dir_;
  std::string db_ = dir_.file("db.sqlite");
  std::string trainer_;
  std::string plans_ = dir_.file("plans");
  test_support::BlockFifo fifo_{dir_.file("blocked.fifo")};
  std::map<std::string, std::string> env_;
};

// One bad sweep file per case: what is wrong, and what the message must name.
struct BadSweep {
  const char* what;
  const char* field;
  nlohmann::json value;
  const char* message;
};

TEST_F(Cli, BadSweepFilesExitTwoNamingFileFieldAndValueAndWriteNothing) {
  const std::string good = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  const nlohmann::json base = nlohmann::json::parse(test_support::read_text(good));
  const std::vector<BadSweep> cases = {
      {"wrong type",
       "training",
       {{"batch_tokens", "4k"}, {"micro_batch_size", 32}},
       "training.batch_tokens = \"4k\": expected an integer"},
      {"negative budget",
       "budgets",
       {{{"id", "2e11"}, {"flops", -2e11}}},
       "budgets[0].flops = -200000000000: expected a positive number"},
      {"unknown field", "budget", {{{"id", "2e11"}, {"flops", 2e11}}}, "budget = "},
      {"missing shards",
       "data",
       {{"train", "nowhere/train_*.bin"}, {"val", "data/val_*.bin"}},
       "data.train[0] = \"nowhere/train_*.bin\": matches no file"},
      {"mu_rec 0",
       "axes",
       {{"mean_recurrence", {0, 2}}},
       "axes.mean_recurrence[0] = 0: expected an integer >= 1"},
  };
  for (const BadSweep& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json document = base;
    document[c.field] = c.value;
    const std::string file =
        dir_.file(std::string("bad-") + std::to_string(&c - cases.data()) + ".json");
    test_support::write_text(file, document.dump(2));
    const auto result = run_cli(with_db({"sweep", "plan", file}, db_));
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_THAT(result.err, HasSubstr(file + ": "));
    EXPECT_THAT(result.err, HasSubstr(c.message));
    EXPECT_EQ(result.out, "");
    EXPECT_FALSE(std::filesystem::exists(db_));
  }
  const auto unknown = run_cli(with_db({"sweep", "plan", dir_.file("bad-2.json")}, db_));
  EXPECT_THAT(unknown.err, HasSubstr("unknown field; did you mean 'budgets'?"));
}

TEST_F(Cli, PlanPrintsTheResultOnStdoutAndIsIdempotent) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  const auto dry = run_cli(with_db({"sweep", "plan", file, "--dry-run", "--json"}, db_));
  EXPECT_EQ(dry.exit_code, 0);
  const nlohmann::json plan = nlohmann::json::parse(dry.out);
  EXPECT_EQ(plan.at("cells").size(), 2u);
  EXPECT_EQ(plan.at("totals").at("jobs"), 2);
  EXPECT_FALSE(std::filesystem::exists(db_));

  const auto csv = run_cli(with_db({"sweep", "plan", file, "--csv"}, db_));
  EXPECT_EQ(csv.exit_code, 0);
  EXPECT_EQ(csv.out.rfind("cell,job_id,", 0), 0u);
  EXPECT_THAT(csv.err, HasSubstr("2 new jobs"));
  const auto again = run_cli(with_db({"sweep", "plan", file}, db_));
  EXPECT_THAT(again.out, HasSubstr("C2e11-mu4-seed0"));
  EXPECT_THAT(again.err, HasSubstr("0 new jobs, 2 unchanged"));
  EXPECT_EQ(Store::open(db_).jobs("tiny").size(), 2u);
  EXPECT_EQ(Store::open(db_).jobs("tiny")[0].out_dir.rfind(dir_.path() + "/runs/tiny/", 0), 0u);
}

TEST_F(Cli, RunStatusListRetryAndExportWorkTogether) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  test_support::plan_actions(plans_, "C2e11-mu4-seed0", {"fail", "ok"});
  const auto run = run_cli(with_db({"sweep",
                                    "run",
                                    file,
                                    "--trainer",
                                    trainer_,
                                    "--retries",
                                    "0",
                                    "--poll-interval",
                                    "0.05"},
                                   db_),
                           env_);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, HasSubstr("C2e11-mu2-seed0  done"));
  EXPECT_THAT(run.err, HasSubstr("C2e11-mu4-seed0  failed  exit 1: simulated crash"));

  const auto status = run_cli(with_db({"sweep", "status", "tiny", "--json"}, db_));
  EXPECT_EQ(status.exit_code, 0);
  const nlohmann::json j = nlohmann::json::parse(status.out);
  EXPECT_EQ(j.at("counts").at("done"), 1);
  EXPECT_EQ(j.at("counts").at("failed"), 1);
  EXPECT_EQ(j.at("jobs")[0].at("steps_done"), 6);
  EXPECT_EQ(j.at("jobs")[0].at("loss_val"), 11.25);
  const auto table = run_cli(with_db({"sweep", "status"}, db_));
  EXPECT_THAT(table.out, HasSubstr("sweep tiny: 2 jobs, 1 done, 1 failed"));
  EXPECT_THAT(table.out, HasSubstr("failed C2e11-mu4-seed0: exit 1: simulated crash"));

  const auto list = run_cli(with_db({"sweep", "list"}, db_));
  EXPECT_THAT(list.out, HasSubstr("tiny  2 jobs, 1 done, 1 failed"));

  const auto retried = run_cli(with_db({"sweep", "retry", "tiny"}, db_));
  EXPECT_EQ(retried.exit_code, 0);
  EXPECT_EQ(std::count(retried.out.begin(), retried.out.end(), '\n'), 1);
  const auto rerun = run_cli(
      with_db({"sweep", "run", "tiny", "--trainer", trainer_, "--poll-interval", "0.05"}, db_),
      env_);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.err;

  const auto curve = run_cli(with_db({"export", "tiny", "--table", "curve"}, db_));
  EXPECT_EQ(curve.exit_code, 0);
  EXPECT_EQ(curve.out.rfind("job_id,cell,model,budget_id,budget_flops,mean_recurrence,", 0), 0u);
  EXPECT_EQ(std::count(curve.out.begin(), curve.out.end(), '\n'), 1 + 12);
  const auto evaluations =
      run_cli(with_db({"export", "tiny", "--table", "evaluations", "--json"}, db_));
  const nlohmann::json rows = nlohmann::json::parse(evaluations.out);
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].at("depth"), 1);
  EXPECT_EQ(rows[0].at("loss"), 11.25);
  EXPECT_EQ(rows[0].at("budget_id"), "2e11");
}

TEST_F(Cli, JobsTrainedElsewhereFromTheirPlannedFoldersAreIngestedBySync) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  ASSERT_EQ(run_cli(with_db({"sweep", "plan", file}, db_)).exit_code, 0);
  const auto jobs = Store::open(db_).jobs("tiny");
  ASSERT_EQ(jobs.size(), 2u);
  for (const auto& job : jobs)
    EXPECT_TRUE(std::filesystem::exists(job.out_dir + "/job.json"));
  // What scripts/run-jobs does on a host without parcae-scale, for the first job only.
  const std::string command =
      trainer_ + " --job " + jobs[0].out_dir + "/job.json --out " + jobs[0].out_dir;
  ASSERT_EQ(std::system(command.c_str()), 0);

  const auto synced = run_cli(with_db({"sweep", "sync", "tiny"}, db_));
  EXPECT_EQ(synced.exit_code, 0) << synced.err;
  EXPECT_EQ(synced.out, jobs[0].id + "\n");
  {
    const Store store = Store::open(db_);
    EXPECT_EQ(store.find_job(jobs[0].id)->state, JobState::kDone);
    EXPECT_EQ(store.curve(jobs[0].id).size(), 6u);
    const auto attempt = store.last_attempt(jobs[0].id);
    EXPECT_EQ(attempt->backend, "external");
    EXPECT_EQ(attempt->outcome, results::Outcome::kDone);
    EXPECT_EQ(store.find_job(jobs[1].id)->state, JobState::kPlanned);
  }
  const auto run = run_cli(
      with_db({"sweep", "run", "tiny", "--trainer", trainer_, "--poll-interval", "0.05"}, db_),
      env_);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(test_support::read_text(jobs[0].out_dir + "/fake_attempts"), "1\n");
  EXPECT_EQ(Store::open(db_).find_job(jobs[1].id)->state, JobState::kDone);
}

TEST_F(Cli, ForeignOrMissingDatabasesAndUnknownSweepsExitTwo) {
  test_support::write_text(dir_.file("notes.sqlite"), "not a database at all");
  const auto foreign = run_cli({"--db", dir_.file("notes.sqlite"), "sweep", "status"});
  EXPECT_EQ(foreign.exit_code, 2);
  EXPECT_THAT(foreign.err, HasSubstr("is not a parcae-scale database"));
  const auto missing = run_cli(with_db({"sweep", "status"}, db_));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(db_));
  run_cli(with_db({"sweep", "plan", test_support::write_sweep(dir_.path(), "tiny", {2})}, db_));
  const auto unknown = run_cli(with_db({"sweep", "status", "tiyn"}, db_));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("did you mean 'tiny'?"));
  const auto no_trainer =
      run_cli(with_db({"sweep", "run", "tiny", "--trainer", dir_.file("nope")}, db_));
  EXPECT_EQ(no_trainer.exit_code, 2);
  EXPECT_THAT(no_trainer.err,
              HasSubstr("--trainer = " + dir_.file("nope") + ": is not an executable file"));
}

// SIGTERM, SIGINT (Ctrl-C) and SIGHUP (the terminal or ssh session closed) all stop a run the
// same way: trainers save, the run exits 128 + n, and the same command finishes the sweep.
class StopSignal : public Cli, public ::testing::WithParamInterface<int> {};

TEST_P(StopSignal, StopsTheRunAfterTrainersSaveAndTheSameCommandFinishes) {
  const int signal_number = GetParam();
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4, 6});
  test_support::plan_actions(plans_, "C2e11-mu2-seed0", {"block", "ok"});
  test_support::plan_actions(plans_, "C2e11-mu4-seed0", {"block", "ok"});
  const std::vector<std::string> command = with_db({"sweep",
                                                    "run",
                                                    file,
                                                    "--trainer",
                                                    trainer_,
                                                    "--max-parallel",
                                                    "2",
                                                    "--poll-interval",
                                                    "0.05"},
                                                   db_);
  CliProcess run(command, env_);
  fifo_.wait_for(2);
  run.kill(signal_number);
  const auto stopped = run.wait();
  EXPECT_EQ(stopped.exit_code, 128 + signal_number) << stopped.err;
  EXPECT_THAT(stopped.err, HasSubstr("stopping on signal " + std::to_string(signal_number)));
  EXPECT_THAT(stopped.err, HasSubstr("run the same command to resume"));
  {
    const Store store = Store::open(db_);
    const auto counts = store.counts("tiny").by_state;
    EXPECT_EQ(counts.at(JobState::kPreempted), 2);
    EXPECT_EQ(counts.at(JobState::kPlanned), 1);
    EXPECT_EQ(store.integrity_check(), "ok");
  }
  const auto finished = run_cli(command, env_);
  EXPECT_EQ(finished.exit_code, 0) << finished.err;
  const Store store = Store::open(db_);
  EXPECT_EQ(store.counts("tiny").by_state.at(JobState::kDone), 3);
}
INSTANTIATE_TEST_SUITE_P(Signals,
                         StopSignal,
                         ::testing::Values(SIGTERM, SIGINT, SIGHUP),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return std::string(param_info.param == SIGTERM  ? "SIGTERM"
                                              : param_info.param == SIGINT ? "SIGINT"
                                                                           : "SIGHUP");
                         });

// Rows that must be the same however the sweep was interrupted: per cell its state, final
// numbers, curve and evaluations (times excluded).
std::string results_dump(const std::string& db) {
  const Store store = Store::open(db);
  std::ostringstream out;
  for (const auto& job : store.jobs("tiny")) {
    out << job.cell << " " << job.id << " " << results::to_string(job.state) << " "
        << job.final_status.value_or("-") << " " << job.loss_val.value_or(-1) << "\n";
    for (const auto& p : store.curve(job.id))
      out << "  step " << p.step << " " << p.tokens << " " << p.flops << " " << p.loss.value_or(-1)
          << "\n";
    for (const auto& e : store.evaluations(job.id))
      out << "  eval " << e.step << " " << e.depth << " " << e.loss.value_or(-1) << "\n";
  }
  return out.str();
}

// SIGKILL `sweep run` after N lines of progress, then a plain rerun: the database must be intact
// and hold exactly the rows of an uninterrupted run, every cell done by exactly one successful
// attempt, no two attempts of a cell overlapping.
class KillAndResume : public Cli, public ::testing::WithParamInterface<int> {};

TEST_P(KillAndResume, ResumedSweepEqualsUninterruptedSweep) {
  // mu_rec 5 and 7 miss the budget by more than 1% at this scale and would be flagged.
  const std::vector<int> mus = {1, 2, 3, 4, 6, 8};
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", mus);
  for (int mu : mus)
    test_support::plan_actions(plans_, "C2e11-mu" + std::to_string(mu) + "-seed0", {"slow"});
  const std::string clean_db = dir_.file("clean.sqlite");
  const auto clean = run_cli({"--db",
                              clean_db,
                              "sweep",
                              "run",
                              file,
                              "--trainer",
                              trainer_,
                              "--max-parallel",
                              "2",
                              "--poll-interval",
                              "0.05",
                              "--jobs-dir",
                              dir_.file("clean-runs")},
                             env_);
  ASSERT_EQ(clean.exit_code, 0) << clean.err;

  const std::vector<std::string> command = {"--db",
                                            db_,
                                            "sweep",
                                            "run",
                                            file,
                                            "--trainer",
                                            trainer_,
                                            "--max-parallel",
                                            "2",
                                            "--poll-interval",
                                            "0.05"};
  {
    CliProcess victim(command, env_);
    std::string line;
    for (int i = 0; i < GetParam() && victim.read_err_line(line); ++i) {
    }
    victim.kill(SIGKILL);
    victim.wait();
  }
  const auto resumed = run_cli(command, env_);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  const Store store = Store::open(db_);
  EXPECT_EQ(store.integrity_check(), "ok");
  ASSERT_EQ(store.jobs("tiny").size(), mus.size());
  EXPECT_EQ(results_dump(db_), results_dump(clean_db));
  for (const auto& job : store.jobs("tiny")) {
    SCOPED_TRACE(job.cell);
    int done = 0;
    for (const auto& attempt : store.attempts(job.id)) {
      done += attempt.outcome == results::Outcome::kDone ? 1 : 0;
      EXPECT_TRUE(attempt.ended_at);
    }
    EXPECT_EQ(done, 1);
    EXPECT_FALSE(std::filesystem::exists(job.out_dir + "/overlaps"));
  }
}

INSTANTIATE_TEST_SUITE_P(KillPoints, KillAndResume, ::testing::Values(1, 2, 4, 7, 10));

TEST_F(Cli, TwoOrchestratorsOnOneDatabaseRunEveryCellExactlyOnce) {
  const std::vector<int> mus = {1, 2, 3, 4, 6, 8, 9, 10};
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", mus);
  for (int mu : mus)
    test_support::plan_actions(plans_, "C2e11-mu" + std::to_string(mu) + "-seed0", {"slow"});
  ASSERT_EQ(run_cli(with_db({"sweep", "plan", file}, db_)).exit_code, 0);
  const std::vector<std::string> command = with_db({"sweep",
                                                    "run",
                                                    "tiny",
                                                    "--trainer",
                                                    trainer_,
                                                    "--max-parallel",
                                                    "2",
                                                    "--poll-interval",
                                                    "0.05"},
                                                   db_);
  CliProcess first(command, env_), second(command, env_);
  const auto a = first.wait();
  const auto b = second.wait();
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(b.exit_code, 0) << b.err;
  const Store store = Store::open(db_);
  EXPECT_EQ(store.integrity_check(), "ok");
  std::set<std::string> owners;
  ASSERT_EQ(store.jobs("tiny").size(), mus.size());
  for (const auto& job : store.jobs("tiny")) {
    SCOPED_TRACE(job.cell);
    // A cell left running by the other orchestrator when one finished is still done in the end.
    EXPECT_EQ(job.state, JobState::kDone);
    const auto attempts = store.attempts(job.id);
    ASSERT_EQ(attempts.size(), 1u);
    owners.insert(attempts[0].owner);
    EXPECT_EQ(test_support::read_text(job.out_dir + "/fake_attempts"), "1\n");
    EXPECT_FALSE(std::filesystem::exists(job.out_dir + "/overlaps"));
  }
  EXPECT_LE(owners.size(), 2u);
}

TEST_F(Cli, DataPrepareWritesDocumentsAndSaysWhichIdStartsThem) {
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "line number " + std::to_string(i) + " of the text\n";
  test_support::write_text(dir_.file("text.txt"), text);
  const auto bytes = run_cli({"data",
                              "prepare",
                              "--text",
                              dir_.file("text.txt"),
                              "--out",
                              dir_.file("bytes"),
                              "--documents",
                              "line",
                              "--json"});
  ASSERT_EQ(bytes.exit_code, 0) << bytes.err;
  const nlohmann::json report = nlohmann::json::parse(bytes.out);
  EXPECT_EQ(report.at("tokenizer"), "bytes");
  EXPECT_EQ(report.at("bos_token"), 2);
  EXPECT_EQ(report.at("train_documents").get<int>() + report.at("val_documents").get<int>(), 50);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("bytes/tokenizer.json")));

  const auto piece = run_cli({"data",
                              "prepare",
                              "--text",
                              dir_.file("text.txt"),
                              "--out",
                              dir_.file("bpe"),
                              "--documents",
                              "line",
                              "--tokenizer",
                              "sentencepiece",
                              "--vocab-size",
                              "300"});
  ASSERT_EQ(piece.exit_code, 0) << piece.err;
  EXPECT_THAT(piece.out, HasSubstr("tokenizer sentencepiece"));
  EXPECT_THAT(piece.out, HasSubstr("BOS 1"));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("bpe/tokenizer.model")));

  // One document (the whole file) cannot be split into train and validation documents.
  const auto one =
      run_cli({"data", "prepare", "--text", dir_.file("text.txt"), "--out", dir_.file("one")});
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_THAT(one.err, HasSubstr("whole documents"));
  const auto bad = run_cli({"data",
                            "prepare",
                            "--text",
                            dir_.file("text.txt"),
                            "--out",
                            dir_.file("bad"),
                            "--documents",
                            "chapter"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--documents"));
}

}  // namespace
}  // namespace parcae::cli
