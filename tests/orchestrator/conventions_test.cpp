// The conventions researchers bring from torchrun, Slurm, git, kubectl and Hydra, as parcae-scale
// keeps them: the GPUs CUDA_VISIBLE_DEVICES or Slurm allow, and a dry run that shows each job's
// GPU; shared flags anywhere on the line, --version, and the database's only sweep as the
// default; sweep files with comments and KEY=VALUE overrides, and a dry run that refuses what the
// real plan refuses; one name per concept and a schema_version in every JSON document; and a
// status line that fits an 80-column terminal.
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "orchestrator/detail/resources.h"
#include "results/results.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::cli {
namespace {

using results::JobState;
using results::Store;
using test_support::CliProcess;
using test_support::run_cli;
using test_support::ScratchDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class Conventions : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("OMP_NUM_THREADS");
    trainer_ = test_support::write_fake_trainer(dir_.path());
    std::filesystem::create_directories(plans_);
    // A machine with four GPUs, as nvidia-smi would list them.
    test_support::write_text(dir_.file("bin/nvidia-smi"),
                             "#!/bin/sh\n"
                             "printf '0, Fake GPU, GPU-aaaa0000\\n1, Fake GPU, GPU-bbbb1111\\n"
                             "2, Fake GPU, GPU-cccc2222\\n3, Fake GPU, GPU-dddd3333\\n'\n");
    ::chmod(dir_.file("bin/nvidia-smi").c_str(), 0755);
    // A trainer that notes the GPU and thread settings it was given, then trains as the fake.
    recording_trainer_ = dir_.file("recording-train");
    test_support::write_text(recording_trainer_,
                             "#!/bin/bash\n"
                             "echo \"${CUDA_VISIBLE_DEVICES-unset} ${OMP_NUM_THREADS-unset} "
                             "${CUDA_DEVICE_ORDER-unset}\" >> " +
                                 dir_.file("seen") + "\nexec " + trainer_ + " \"$@\"\n");
    ::chmod(recording_trainer_.c_str(), 0755);
    env_ = {{"FAKE_PLAN_DIR", plans_},
            {"FAKE_FIFO", fifo_.path()},
            {"PATH", dir_.file("bin") + ":" + std::getenv("PATH")}};
  }

  std::map<std::string, std::string> env_with(const std::map<std::string, std::string>& more) {
    auto env = env_;
    for (const auto& [k, v] : more)
      env[k] = v;
    return env;
  }

  ScratchDir dir_;
  std::string db_ = dir_.file("db.sqlite");
  std::string trainer_;
  std::string recording_trainer_;
  std::string plans_ = dir_.file("plans");
  test_support::BlockFifo fifo_{dir_.file("blocked.fifo")};
  std::map<std::string, std::string> env_;
};

// --- 1. GPU selection -------------------------------------------------------------------------

TEST(GpuSelection, CudaVisibleDevicesThenSlurmThenEveryGpuDecide) {
  using orchestrator::detail::GpuInfo;
  using orchestrator::detail::visible_gpus;
  const std::vector<GpuInfo> machine = {
      {0, "g", "GPU-aa"}, {1, "g", "GPU-bb"}, {2, "g", "GPU-cc"}, {3, "g", "GPU-dd"}};
  const auto indices = [](const orchestrator::detail::VisibleGpus& v) {
    std::vector<int> out;
    for (const auto& g : v.gpus)
      out.push_back(g.index);
    return out;
  };
  EXPECT_THAT(indices(visible_gpus(machine, {})), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(indices(visible_gpus(machine, {{"CUDA_VISIBLE_DEVICES", "2,3"}})), ElementsAre(2, 3));
  EXPECT_THAT(indices(visible_gpus(machine, {{"CUDA_VISIBLE_DEVICES", "GPU-dd,GPU-b"}})),
              ElementsAre(3, 1));
  // CUDA stops at the first entry that names no device; -1 and an empty value hide them all.
  EXPECT_THAT(indices(visible_gpus(machine, {{"CUDA_VISIBLE_DEVICES", "1,7,2"}})), ElementsAre(1));
  EXPECT_TRUE(visible_gpus(machine, {{"CUDA_VISIBLE_DEVICES", "-1"}}).gpus.empty());
  EXPECT_TRUE(visible_gpus(machine, {{"CUDA_VISIBLE_DEVICES", ""}}).gpus.empty());
  // Inside a Slurm allocation: its GPUs, or none when it has none.
  EXPECT_THAT(indices(visible_gpus(machine, {{"SLURM_JOB_ID", "7"}, {"SLURM_JOB_GPUS", "1,3"}})),
              ElementsAre(1, 3));
  EXPECT_THAT(indices(visible_gpus(machine, {{"SLURM_JOB_ID", "7"}, {"SLURM_STEP_GPUS", "0-1"}})),
              ElementsAre(0, 1));
  EXPECT_TRUE(visible_gpus(machine, {{"SLURM_JOB_ID", "7"}}).gpus.empty());
  // CUDA_VISIBLE_DEVICES, which Slurm sets in the allocation, is the more precise of the two.
  EXPECT_THAT(
      indices(visible_gpus(
          machine,
          {{"SLURM_JOB_ID", "7"}, {"SLURM_JOB_GPUS", "1,3"}, {"CUDA_VISIBLE_DEVICES", "3"}})),
      ElementsAre(3));
}

TEST_F(Conventions, JobsRunOnlyOnTheGpusCudaVisibleDevicesAllowsAndDryRunShowsWhich) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4, 6});
  const auto env = env_with({{"CUDA_VISIBLE_DEVICES", "2,3"}});
  const auto dry = run_cli(
      {"--db", db_, "sweep", "run", file, "--trainer", recording_trainer_, "--dry-run", "--json"},
      env);
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const nlohmann::json plan = nlohmann::json::parse(dry.out);
  ASSERT_EQ(plan.at("jobs").size(), 3u);
  EXPECT_EQ(plan.at("jobs")[0].at("devices"), "GPU 2");
  EXPECT_EQ(plan.at("jobs")[1].at("devices"), "GPU 3");
  EXPECT_TRUE(plan.at("jobs")[2].at("devices").is_null());  // waits for a free GPU
  EXPECT_THAT(plan.at("slots").get<std::string>(), HasSubstr("CUDA_VISIBLE_DEVICES=2,3"));
  EXPECT_FALSE(std::filesystem::exists(db_));

  const auto run = run_cli({"--db",
                            db_,
                            "sweep",
                            "run",
                            file,
                            "--trainer",
                            recording_trainer_,
                            "--poll-interval",
                            "0.05"},
                           env);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  const std::string threads = std::to_string(std::max(1, CPU_COUNT(&set) / 2));
  std::istringstream seen(test_support::read_text(dir_.file("seen")));
  std::string devices, omp, order;
  std::set<std::string> used;
  int launches = 0;
  while (seen >> devices >> omp >> order) {
    ++launches;
    used.insert(devices);
    EXPECT_EQ(omp, threads);  // cores shared by the two trainers that run at once
    EXPECT_EQ(order, "PCI_BUS_ID");
  }
  EXPECT_EQ(launches, 3);
  EXPECT_EQ(used, (std::set<std::string>{"2", "3"}));

  // A GPU outside the allowed ones is refused, naming the flag and where the limit comes from.
  const auto refused = run_cli(
      {"--db", db_, "sweep", "run", "tiny", "--trainer", trainer_, "--gpus", "0", "--dry-run"},
      env);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("--gpus = 0: GPU 0 is not one this process may use"));
  EXPECT_THAT(refused.err, HasSubstr("CUDA_VISIBLE_DEVICES=2,3"));
}

// --- 2. The command line ----------------------------------------------------------------------

TEST_F(Conventions, SharedFlagsWorkAnywhereAndTheOnlySweepIsTheDefault) {
  const auto version = run_cli({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, HasSubstr("parcae-scale 0."));

  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  ASSERT_EQ(run_cli({"sweep", "plan", file, "--db", db_}).exit_code, 0);
  const auto status = run_cli({"sweep", "status", "--db", db_, "tiny"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("sweep tiny: 2 jobs, 2 planned"));
  const auto json_first = run_cli({"--json", "sweep", "status", "--db", db_});
  EXPECT_EQ(json_first.exit_code, 0) << json_first.err;
  EXPECT_EQ(nlohmann::json::parse(json_first.out).at("sweeps").size(), 1u);

  ASSERT_EQ(
      run_cli({"sweep", "run", "--trainer", trainer_, "--poll-interval", "0.05", "--db", db_}, env_)
          .exit_code,
      0);
  const auto exported = run_cli({"export", "--table", "jobs", "--db", db_});
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(std::count(exported.out.begin(), exported.out.end(), '\n'), 3);
  const auto plotted = run_cli({"plot", "curves", "--db", db_});
  EXPECT_EQ(plotted.exit_code, 0) << plotted.err;
  EXPECT_THAT(plotted.out, HasSubstr(dir_.file("figures/tiny/curves_2e11")));
  const auto fitted = run_cli({"fit", "satexp", "--json", "--db", db_});
  EXPECT_THAT(fitted.err, Not(HasSubstr("data source")));
  EXPECT_EQ(nlohmann::json::parse(fitted.out).at("law"), "satexp");

  // --watch is a flag: the next word is the sweep, never a number to range-check.
  const auto watched = run_cli({"sweep", "status", "--watch", "tinny", "--db", db_});
  EXPECT_EQ(watched.exit_code, 2);
  EXPECT_THAT(watched.err, HasSubstr("sweep = tinny: no such sweep"));
  EXPECT_THAT(watched.err, HasSubstr("did you mean 'tiny'?"));
  EXPECT_LT(watched.err.size(), 300u);
}

// --- 3. Sweep files ---------------------------------------------------------------------------

TEST_F(Conventions, SweepFilesTakeCommentsAndOverridesWhichAreRecorded) {
  const std::string json =
      test_support::read_text(test_support::write_sweep(dir_.path(), "tiny", {2}));
  const std::string file = dir_.file("commented.json");
  test_support::write_text(file,
                           "// A sweep for the tests\n" + json.substr(0, json.size() - 1) +
                               "  /* the last field */\n}\n");
  const auto planned = run_cli({"--db",
                                db_,
                                "sweep",
                                "plan",
                                file,
                                "training.batch_tokens=2048",
                                "model.d_ff=256",
                                "+description=changed on the command line",
                                "--json"});
  ASSERT_EQ(planned.exit_code, 0) << planned.err;
  EXPECT_THAT(nlohmann::json::parse(planned.out).at("overrides"),
              ElementsAre("training.batch_tokens=2048",
                          "model.d_ff=256",
                          "+description=changed on the command line"));
  const Store store = Store::open(db_);
  const auto sweep = store.find_sweep("tiny");
  EXPECT_EQ(sweep->spec.at("training").at("batch_tokens"), 2048);
  EXPECT_EQ(sweep->spec.at("model").at("d_ff"), 256);
  EXPECT_EQ(sweep->description, "changed on the command line");
  EXPECT_EQ(store.jobs("tiny").at(0).config.at("training").at("batch_tokens"), 2048);
  EXPECT_EQ(store.jobs("tiny").at(0).config.at("model").at("d_ff"), 256);

  const auto bad = run_cli({"--db", db_, "sweep", "plan", file, "training.batch_tokens"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("'training.batch_tokens': expected KEY=VALUE"));
  const auto wrong = run_cli({"--db", db_, "sweep", "plan", file, "training.batch_tokens=4k"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("training.batch_tokens = \"4k\": expected an integer"));
}

TEST_F(Conventions, PlanDryRunRefusesWhatThePlanWouldRefuse) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  ASSERT_EQ(
      run_cli({"--db", db_, "sweep", "run", file, "--trainer", trainer_, "--poll-interval", "0.05"},
              env_)
          .exit_code,
      0);
  const auto again = run_cli({"--db", db_, "sweep", "plan", file, "--dry-run"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("would record sweep tiny"));
  EXPECT_THAT(again.err, HasSubstr("0 new jobs, 2 unchanged"));

  const std::vector<std::string> changed = {
      "--db", db_, "sweep", "plan", file, "training.batch_tokens=8192"};
  auto dry = changed;
  dry.push_back("--dry-run");
  const auto predicted = run_cli(dry);
  const auto real = run_cli(changed);
  EXPECT_EQ(predicted.exit_code, 2);
  EXPECT_EQ(real.exit_code, 2);
  EXPECT_THAT(predicted.err, HasSubstr("already has started cells with a different configuration"));
  EXPECT_EQ(predicted.err, real.err);
}

// --- 4. One vocabulary, versioned -------------------------------------------------------------

TEST_F(Conventions, EveryJsonDocumentIsVersionedAndNamesAJobTheSameWay) {
  const std::string file = test_support::write_sweep(dir_.path(), "tiny", {2, 4});
  const auto plan = run_cli({"--db", db_, "sweep", "plan", file, "--json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  ASSERT_EQ(
      run_cli({"--db", db_, "sweep", "run", "--trainer", trainer_, "--poll-interval", "0.05"}, env_)
          .exit_code,
      0);
  {
    Store store = Store::open(db_);
    results::FitRecord fit;
    fit.law = "power";
    fit.sweep = "tiny";
    fit.coefficients = {{"a", 0.5}};
    fit.intervals = {{"a", {0.4, 0.6}}};
    fit.job_ids = {store.jobs("tiny").at(0).id};
    fit.details = {{"law", "power"}, {"status", "ok"}};
    store.save_fit(fit);
  }
  const std::vector<std::vector<std::string>> commands = {
      {"model", "list"},
      {"model", "describe", "parcae-micro"},
      {"sweep", "plan", file, "--dry-run"},
      {"sweep", "run", "--dry-run", "--trainer", trainer_},
      {"sweep", "status"},
      {"sweep", "status", "tiny"},
      {"sweep", "list"},
      {"sweep", "retry", "tiny"},
      {"sweep", "sync", "tiny"},
      {"fit", "satexp"},
      {"plot", "curves"},
  };
  for (auto command : commands) {
    command.insert(command.begin(), {"--db", db_});
    command.push_back("--json");
    const auto result = run_cli(command);
    SCOPED_TRACE(command[2] + " " + command[3]);
    ASSERT_NE(result.exit_code, 2) << result.err;
    const nlohmann::json document = nlohmann::json::parse(result.out);
    EXPECT_EQ(document.at("schema_version"), 1);
    EXPECT_EQ(result.out.find("\"schema_version\""), 4u);  // the first key
  }

  const nlohmann::json planned = nlohmann::json::parse(plan.out);
  const nlohmann::json status =
      nlohmann::json::parse(run_cli({"--db", db_, "sweep", "status", "tiny", "--json"}).out);
  const nlohmann::json listed =
      nlohmann::json::parse(run_cli({"--db", db_, "sweep", "list", "--json"}).out);
  const std::string id = planned.at("cells")[0].at("job_id");
  EXPECT_EQ(planned.at("cells")[0].at("cell"), "C2e11-mu2-seed0");
  EXPECT_FALSE(planned.at("cells")[0].contains("name"));
  EXPECT_EQ(status.at("jobs")[0].at("job_id"), id);
  EXPECT_EQ(status.at("jobs")[0].at("cell"), "C2e11-mu2-seed0");
  // `sweep list` and `sweep status` describe a sweep with the same keys; only status lists jobs.
  const nlohmann::json summary = listed.at("sweeps")[0];
  EXPECT_EQ(summary.at("sweep"), "tiny");
  EXPECT_EQ(summary.at("jobs_total"), 2);
  EXPECT_FALSE(summary.contains("jobs"));
  for (const auto& [key, value] : summary.items()) {
    if (key != "updated_at") {
      EXPECT_EQ(status.at(key), value) << key;
    }
  }

  const auto jobs = run_cli({"--db", db_, "export", "--table", "jobs", "--format", "json"});
  const nlohmann::json rows = nlohmann::json::parse(jobs.out);
  EXPECT_EQ(rows[0].at("job_id"), id);
  EXPECT_TRUE(rows[0].at("budget_id").is_string());
  EXPECT_EQ(rows[0].at("recurrence"), "2");
  EXPECT_EQ(rows[0].at("flop_convention"), "reference");
  EXPECT_TRUE(std::regex_match(rows[0].at("created_at").get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  // CSV quotes every text value, so readers that honour quotes keep "2e11" and ids as text.
  const auto csv = run_cli({"--db", db_, "export", "--table", "jobs"});
  EXPECT_THAT(csv.out,
              HasSubstr("\"" + id + "\",\"C2e11-mu2-seed0\",\"done\",\"parcae-micro\",\"2e11\","));
  // The curves and evaluations carry what plotting them alone needs.
  for (const char* table : {"curves", "evals"}) {
    const nlohmann::json first = nlohmann::json::parse(
        run_cli({"--db", db_, "export", "--table", table, "--format", "json"}).out)[0];
    for (const char* column : {"job_id",
                               "cell",
                               "budget_id",
                               "budget_flops",
                               "mean_recurrence",
                               "fixed_depth",
                               "recurrence",
                               "flop_convention",
                               "parameters_total"})
      EXPECT_TRUE(first.contains(column)) << table << " " << column;
  }
  // Saved fits: JSON columns are JSON, not JSON inside strings.
  const nlohmann::json fits = nlohmann::json::parse(
      run_cli({"--db", db_, "export", "--table", "fits", "--format", "json"}).out);
  ASSERT_FALSE(fits.empty());
  EXPECT_TRUE(fits[0].at("coefficients").is_object());
  EXPECT_TRUE(fits[0].at("job_ids").is_array());
  EXPECT_TRUE(fits[0].at("fit_id").is_number());
}

// --- 5. Progress that fits the terminal -------------------------------------------------------

// Runs parcae-scale on a pseudo-terminal of 80 columns until its output contains `until`, then
// stops it with SIGTERM and returns everything it wrote.
std::string run_on_terminal(const std::vector<std::string>& args,
                            const std::map<std::string, std::string>& env,
                            const std::string& until) {
  test_support::ExecArguments exec(test_support::cli_path(), args, env);
  winsize size{};
  size.ws_row = 24;
  size.ws_col = 80;
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  if (pid == 0) {
    ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
    ::_exit(127);
  }
  std::string out;
  bool stopped = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (true) {
    if (!stopped &&
        (out.find(until) != std::string::npos || std::chrono::steady_clock::now() > deadline)) {
      ::kill(pid, SIGTERM);
      stopped = true;
    }
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0)
      continue;
    char chunk[4096];
    const ssize_t n = ::read(master, chunk, sizeof(chunk));
    if (n <= 0)
      break;  // EIO once the program has exited and closed the terminal
    out.append(chunk, static_cast<size_t>(n));
  }
  ::close(master);
  ::waitpid(pid, nullptr, 0);
  return out;
}

TEST_F(Conventions, TheStatusLineFitsAnEightyColumnTerminalWithLossAndEta) {
  const std::string file =
      test_support::write_sweep(dir_.path(), "tiny-sweep-with-a-long-name", {2, 4, 6, 8});
  // Four states at once make the counts long: one job planned, two running, one failed.
  for (int mu : {2, 6, 8})
    test_support::plan_actions(plans_, "C2e11-mu" + std::to_string(mu) + "-seed0", {"block"});
  test_support::plan_actions(plans_, "C2e11-mu4-seed0", {"fail"});
  const std::string out = run_on_terminal({"--db",
                                           db_,
                                           "sweep",
                                           "run",
                                           file,
                                           "--trainer",
                                           trainer_,
                                           "--max-parallel",
                                           "2",
                                           "--retries",
                                           "0",
                                           "--poll-interval",
                                           "0.05"},
                                          env_,
                                          "loss 18.500");
  ASSERT_THAT(out, HasSubstr("loss 18.500"));
  // The terminal turns "\n" into "\r\n"; each "\r\033[K" starts a redraw, whose last line is the
  // status line.
  std::string text = std::regex_replace(out, std::regex("\r\n"), "\n");
  int status_lines = 0;
  size_t at = 0;
  const std::string redraw = "\r\033[K";
  while ((at = text.find(redraw, at)) != std::string::npos) {
    at += redraw.size();
    const size_t next = text.find('\r', at);
    std::string chunk = text.substr(at, next == std::string::npos ? std::string::npos : next - at);
    const std::string status =
        chunk.substr(chunk.rfind('\n') == std::string::npos ? 0 : chunk.rfind('\n') + 1);
    if (status.empty())
      continue;
    ++status_lines;
    EXPECT_LT(status.size(), 80u) << status;
    EXPECT_THAT(status, HasSubstr("ETA")) << status;
  }
  EXPECT_GT(status_lines, 0);
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(C2e11-mu2-seed0 2/\d+ loss 18\.500)")));
}

}  // namespace
}  // namespace parcae::cli
