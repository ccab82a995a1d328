// A full disk is an ordinary error. Each test mounts a small tmpfs of its own inside a private
// user and mount namespace (`unshare --user --map-root-user --mount`, which needs no privileges
// and leaves no mount behind), puts the database, the run folders or a trainer's output on it,
// fills it, and checks that the error names the path, that nothing partial is left, that the
// database stays consistent, that no trainer is left running, and that work goes on once space
// is freed. The steps inside the namespace are a shell script; what must be checked afterwards is
// copied out of the tmpfs before the namespace ends.
#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "results/results.h"
#include "tests/orchestrator/test_support.h"
#include "tests/support/scratch_dir.h"

namespace parcae {
namespace {

namespace fs = std::filesystem;
using results::JobState;
using results::Store;
using test_support::CliResult;
using test_support::read_text;
using test_support::ScratchDir;
using test_support::write_text;
using ::testing::HasSubstr;

// PRAGMA integrity_check of the database at `path`: "ok" when it is consistent.
std::string integrity_check(const std::string& path) {
  sqlite3* db = nullptr;
  std::string out = "(cannot open " + path + ")";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* statement = nullptr;
    out.clear();
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &statement, nullptr) == SQLITE_OK) {
      while (sqlite3_step(statement) == SQLITE_ROW)
        out += reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return out;
}

// Runs `script` with bash inside a new user and mount namespace, where `mount -t tmpfs` works.
CliResult run_in_namespace(const std::string& script,
                           const std::map<std::string, std::string>& env = {}) {
  return test_support::run_program(
      "/usr/bin/unshare",
      {"--user", "--map-root-user", "--mount", "/bin/bash", "-c", "set -u\n" + script},
      env);
}

// Fills the file system that holds `folder` with a file named filler.
std::string fill(const std::string& folder) {
  return "dd if=/dev/zero of=" + folder + "/filler bs=4096 2>/dev/null\n";
}

class DiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    // The namespace must be available: a machine without it fails here, with the reason.
    const CliResult probe =
        run_in_namespace("mkdir -p " + dir_.file("probe") +
                         " && mount -t tmpfs -o size=64k tmpfs " + dir_.file("probe"));
    ASSERT_EQ(probe.exit_code, 0)
        << "these tests need unprivileged user namespaces (unshare -Urm): " << probe.err;
    trainer_ = test_support::write_fake_trainer(dir_.path());
    fs::create_directories(plans_);
    env_ = {{"FAKE_PLAN_DIR", plans_}, {"FAKE_FIFO", fifo_.path()}};
    sweep_ = test_support::write_sweep(dir_.path(), "tiny", {2});
  }

  std::string cli() const { return test_support::cli_path(); }

  ScratchDir dir_;
  std::string trainer_;
  std::string plans_ = dir_.file("plans");
  test_support::BlockFifo fifo_{dir_.file("blocked.fifo")};
  std::map<std::string, std::string> env_;
  std::string sweep_;
};

// The database's disk fills while a trainer runs: the orchestrator must name the database and
// stop, stopping its trainer first; the database must pass integrity_check; and once space is
// freed, the same command must finish the sweep.
TEST_F(DiskFull, DatabaseOnAFullDiskNamesItStopsTheTrainerAndTheSweepResumesOnceSpaceIsFreed) {
  test_support::plan_actions(plans_, "C2e11-mu2-seed0", {"block", "ok"});
  const std::string fs_dir = dir_.file("dbfs"), db = fs_dir + "/db.sqlite";
  const std::string copy = dir_.file("copy");
  fs::create_directories(fs_dir);
  fs::create_directories(copy);
  const std::string run = cli() + " --db " + db + " sweep run tiny --trainer " + trainer_ +
                          " --poll-interval 0.05 --stop-grace 30";
  const std::string script =
      "mount -t tmpfs -o size=8m tmpfs " + fs_dir + " || exit 90\n" + cli() + " --db " + db +
      " sweep plan " + sweep_ + " --jobs-dir " + dir_.file("runs") + " || exit 91\n" + run +
      " 2> " + dir_.file("run1.err") +
      " &\n"
      "pid=$!\n"
      // Bounded, as BlockFifo::wait_for is, so that a trainer that never blocks fails the test
      // instead of hanging it.
      "timeout 120 head -n 1 " +
      fifo_.path() + " > /dev/null\n" + fill(fs_dir) + "wait $pid; echo $? > " +
      dir_.file("run1.code") + "\ncp " + db + "* " + copy + "/\nrm " + fs_dir + "/filler\n" + run +
      " 2> " + dir_.file("run2.err") + "; echo $? > " + dir_.file("run2.code") + "\nmkdir -p " +
      copy + "/after && cp " + db + "* " + copy + "/after/\n";
  // The fixture's FIFO is read by `head` above, so it is not opened here.
  const CliResult result = run_in_namespace(script, env_);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;

  const std::string run1_err = read_text(dir_.file("run1.err"));
  EXPECT_EQ(read_text(dir_.file("run1.code")), "1\n") << run1_err;
  EXPECT_THAT(run1_err, HasSubstr(db));
  EXPECT_THAT(run1_err, HasSubstr("full"));
  // The database as the failed run left it: consistent, and the attempt's trainer ended.
  {
    Store store = Store::open(copy + "/db.sqlite", Store::Mode::kExisting);
    const auto jobs = store.jobs("tiny", {});
    ASSERT_EQ(jobs.size(), 1u);
    const auto attempt = store.last_attempt(jobs[0].id);
    ASSERT_TRUE(attempt.has_value());
    ASSERT_TRUE(attempt->pid.has_value());
    EXPECT_EQ(::kill(static_cast<pid_t>(*attempt->pid), 0), -1)
        << "the trainer (pid " << *attempt->pid << ") was left running";
    EXPECT_EQ(errno, ESRCH);
  }
  EXPECT_EQ(integrity_check(copy + "/db.sqlite"), "ok");
  const std::string run2_err = read_text(dir_.file("run2.err"));
  EXPECT_EQ(read_text(dir_.file("run2.code")), "0\n") << run2_err;
  Store after = Store::open(copy + "/after/db.sqlite", Store::Mode::kExisting);
  EXPECT_EQ(after.jobs("tiny", {}).at(0).state, JobState::kDone);
  EXPECT_EQ(integrity_check(copy + "/after/db.sqlite"), "ok");
}

// The run folders' disk is full when jobs are launched: the launch fails with the path, the job
// waits (not counted as a failure), no temporary file is left, and the job is launched and done
// once space is freed, within the same `sweep run`.
TEST_F(DiskFull, LaunchOnAFullDiskWaitsForSpaceAndThenRunsTheJob) {
  const std::string fs_dir = dir_.file("runfs"), db = dir_.file("db.sqlite");
  fs::create_directories(fs_dir);
  const std::string err_fifo = dir_.file("err.fifo");
  const std::string script = "mount -t tmpfs -o size=256k tmpfs " + fs_dir + " || exit 90\n" +
                             cli() + " --db " + db + " sweep plan " + sweep_ + " --jobs-dir " +
                             fs_dir + " || exit 91\n" + fill(fs_dir) + "mkfifo " + err_fifo + "\n" +
                             cli() + " --db " + db + " sweep run tiny --trainer " + trainer_ +
                             " --poll-interval 0.05 2> " + err_fifo +
                             " &\n"
                             "pid=$!\n"
                             "exec 3< " +
                             err_fifo +
                             "\n"
                             "while IFS= read -r line <&3; do\n"
                             "  printf '%s\\n' \"$line\" >> " +
                             dir_.file("run.err") +
                             "\n"
                             "  case \"$line\" in *'launches wait'*) break ;; esac\n"
                             "done\n"
                             "rm " +
                             fs_dir + "/filler\ncat <&3 >> " + dir_.file("run.err") +
                             "\nwait $pid; echo $? > " + dir_.file("run.code") + "\nfind " +
                             fs_dir + " -name '*.tmp.*' > " + dir_.file("temporaries") + "\n";
  const CliResult result = run_in_namespace(script, env_);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;

  const std::string err = read_text(dir_.file("run.err"));
  EXPECT_EQ(read_text(dir_.file("run.code")), "0\n") << err;
  EXPECT_THAT(err, HasSubstr("No space left on device"));
  EXPECT_THAT(err, HasSubstr(fs_dir));
  EXPECT_EQ(read_text(dir_.file("temporaries")), "");
  Store store = Store::open(db, Store::Mode::kExisting);
  const auto jobs = store.jobs("tiny", {});
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state, JobState::kDone);
  EXPECT_EQ(jobs[0].failures, 0);
  EXPECT_EQ(integrity_check(db), "ok");
}

// A database in a folder that cannot be written (a read-only mount, which holds for root too)
// is reported as such, naming the file, with exit code 2: not as a foreign file.
TEST_F(DiskFull, DatabaseInAReadOnlyFolderIsCalledUnwritableNotForeign) {
  const std::string folder = dir_.file("ro"), db = folder + "/db.sqlite";
  fs::create_directories(folder);
  ASSERT_EQ(test_support::run_cli({"--db", db, "sweep", "plan", sweep_}).exit_code, 0);
  const std::string before = read_text(db);
  const std::string script =
      "mount --bind " + folder + " " + folder + " && mount -o remount,ro,bind " + folder + " " +
      folder + " || exit 90\n" + cli() + " --db " + db + " sweep status > /dev/null 2> " +
      dir_.file("status.err") + "; echo $? > " + dir_.file("status.code") + "\n" + cli() +
      " --db " + db + " sweep plan " + sweep_ + " > /dev/null 2> " + dir_.file("plan.err") +
      "; echo $? > " + dir_.file("plan.code") + "\n";
  const CliResult result = run_in_namespace(script);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  for (const std::string& command : std::vector<std::string>{"status", "plan"}) {
    SCOPED_TRACE(command);
    const std::string err = read_text(dir_.file(command + ".err"));
    EXPECT_EQ(read_text(dir_.file(command + ".code")), "2\n") << err;
    EXPECT_THAT(err, HasSubstr(db));
    EXPECT_THAT(err, HasSubstr("cannot be"));
    EXPECT_THAT(err, ::testing::Not(HasSubstr("not a parcae-scale database")));
  }
  EXPECT_EQ(read_text(db), before);
}

#ifdef PARCAE_TRAINER_PATH
// A job file of the fixture's sweep that trains on real shards, checkpointing after every step.
std::string write_real_job(const ScratchDir& dir, const std::string& sweep) {
  std::string text;  // twenty documents, one a line
  for (int line = 0; line < 20; ++line)
    text += std::string(1000, 'a') + "\n";
  write_text(dir.file("text.txt"), text);
  const CliResult data = test_support::run_cli({"data",
                                                "prepare",
                                                "--text",
                                                dir.file("text.txt"),
                                                "--out",
                                                dir.file("shards"),
                                                "--documents",
                                                "line",
                                                "--val-fraction",
                                                "0.5"});
  if (data.exit_code != 0)
    throw std::runtime_error("data prepare: " + data.err);
  const std::string db = dir.file("real.sqlite");
  const CliResult plan = test_support::run_cli({"--db", db, "sweep", "plan", sweep});
  if (plan.exit_code != 0)
    throw std::runtime_error("sweep plan: " + plan.err);
  const auto jobs = Store::open(db, Store::Mode::kExisting).jobs("tiny", {});
  nlohmann::json job = nlohmann::json::parse(read_text(jobs.at(0).out_dir + "/job.json"));
  job["data"] = {{"train_shards", {dir.file("shards/train_000000.bin")}},
                 {"val_shards", {dir.file("shards/val_000000.bin")}}};
  job["eval"]["val_sequences"] = 2;
  job["checkpoint_interval_steps"] = 1;
  job["train_tokens"] = 3 * job["training"]["batch_tokens"].get<int64_t>();
  const std::string path = dir.file("real-job.json");
  write_text(path, job.dump(2));
  return path;
}

// The trainer's checkpoint does not fit: it must exit with an error event that names the file,
// not abort inside LibTorch, and leave no partial checkpoint behind.
TEST_F(DiskFull, CheckpointOnAFullDiskIsAnErrorNamingTheFileAndLeavesNoPartialFile) {
  const std::string job = write_real_job(dir_, sweep_);
  const std::string fs_dir = dir_.file("outfs"), out = fs_dir + "/run";
  fs::create_directories(fs_dir);
  const std::string script = "mount -t tmpfs -o size=128k tmpfs " + fs_dir +
                             " || exit 90\nOMP_NUM_THREADS=1 " PARCAE_TRAINER_PATH " --job " + job +
                             " --out " + out + " 2> " + dir_.file("train.err") + "; echo $? > " +
                             dir_.file("train.code") + "\nls -a " + out + "/checkpoint > " +
                             dir_.file("listing") + "\ncp " + out + "/events.jsonl " +
                             dir_.file("events.jsonl") + "\n";
  const CliResult result = run_in_namespace(script);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::string err = read_text(dir_.file("train.err"));
  EXPECT_EQ(read_text(dir_.file("train.code")), "1\n") << err;
  EXPECT_THAT(err, HasSubstr(out + "/checkpoint/step_"));
  EXPECT_THAT(err, HasSubstr("No space left on device"));
  EXPECT_THAT(read_text(dir_.file("listing")), ::testing::Not(HasSubstr(".tmp")));
  const std::string events = read_text(dir_.file("events.jsonl"));
  ASSERT_FALSE(events.empty());
  const std::string last = events.substr(events.rfind('\n', events.size() - 2) + 1);
  EXPECT_THAT(last, HasSubstr("\"event\":\"error\""));
  EXPECT_THAT(last, HasSubstr("No space left on device"));
}

// Temporaries that a killed writer left in a run folder are removed when the trainer starts there.
TEST_F(DiskFull, TemporariesLeftByAKilledWriterAreRemovedWhenTheTrainerStarts) {
  const std::string job = write_real_job(dir_, sweep_);
  const std::string out = dir_.file("run");
  write_text(out + "/checkpoint/step_00000001.pt.tmp.4242", "half a checkpoint");
  write_text(out + "/job.json.tmp.Xa81Qz", "half a job file");
  const CliResult result = test_support::run_program(
      PARCAE_TRAINER_PATH, {"--job", job, "--out", out}, {{"OMP_NUM_THREADS", "1"}});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(fs::exists(out + "/checkpoint/step_00000001.pt.tmp.4242"));
  EXPECT_FALSE(fs::exists(out + "/job.json.tmp.Xa81Qz"));
  EXPECT_TRUE(fs::exists(out + "/events.jsonl"));
}
#endif

}  // namespace
}  // namespace parcae
