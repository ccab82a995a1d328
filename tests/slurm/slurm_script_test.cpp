// The Slurm backend's text work, without a cluster: quoting checked by bash itself, the batch
// script rendered from templates (hostile names included), the cluster limits, the array split,
// the run log and the squeue/sacct parsers.
#include <sys/stat.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "orchestrator/detail/slurm.h"
#include "sweeps/error.h"
#include "tests/support/scratch_dir.h"

namespace parcae::orchestrator::detail {
namespace {

using test_support::ScratchDir;

const std::vector<std::string> kHostile = {
    "plain",
    "it's",
    "say \"$(touch PWNED)\"",
    "`touch PWNED` and $HOME and ${PATH}",
    "'; touch PWNED; echo '",
    "back\\slash \\' quote",
    "new\nline",
    "",
};

// Runs `script` with bash in `dir` and returns its stdout.
std::string run_bash(const ScratchDir& dir, const std::string& script) {
  const std::string path = dir.file("script.sh");
  test_support::write_text(path, script);
  const CommandResult result =
      run_command({"bash", "-c", "cd \"$1\" && bash \"$2\"", "bash", dir.path(), path});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return result.out;
}

TEST(ShellQuote, EveryHostileValueComesBackFromBashUnchanged) {
  const ScratchDir dir;
  for (const auto& value : kHostile) {
    SCOPED_TRACE(value);
    EXPECT_EQ(run_bash(dir, "printf '%s' " + shell_quote(value)), value);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("PWNED")));
}

TEST(BatchScript, HostileSweepCellAndFolderNamesReachTheVariablesVerbatim) {
  const ScratchDir dir;
  BatchScript script;
  script.sweep = "sweep \"$(touch PWNED)\" it's";
  script.trainer = "/opt/it's here/`touch PWNED`/parcae-train";
  script.tasks = {{"id0", "cell $(touch PWNED)", "/runs/a'b/0"},
                  {"id1", "cell `touch PWNED`", "/runs/$(touch PWNED)/1"}};
  const std::string text = render_batch_script(
      "#!/bin/bash\n  {{parcae_variables}}  \nprintf '%s|%s|%s|%s|%s' \"$PARCAE_SWEEP\" "
      "\"$PARCAE_TRAINER\" \"$PARCAE_JOB_ID\" \"$PARCAE_CELL\" \"$PARCAE_OUT_DIR\"\n",
      "test.sh",
      script);
  EXPECT_EQ(run_bash(dir, "SLURM_ARRAY_TASK_ID=1\n" + text),
            script.sweep + "|" + script.trainer + "|id1|cell `touch PWNED`|/runs/$(touch PWNED)/1");
  EXPECT_EQ(run_bash(dir, "SLURM_ARRAY_TASK_ID=0\n" + text),
            script.sweep + "|" + script.trainer + "|id0|cell $(touch PWNED)|/runs/a'b/0");
  EXPECT_FALSE(std::filesystem::exists(dir.file("PWNED")));
}

TEST(BatchScript, AnArrayTaskWithoutAJobStopsWithExitTwo) {
  const ScratchDir dir;
  BatchScript script;
  script.sweep = "s";
  script.trainer = "/bin/true";
  script.tasks = {{"a", "a", "/x/a"}, {"b", "b", "/x/b"}};
  test_support::write_text(
      dir.file("s.sh"),
      "SLURM_ARRAY_TASK_ID=7\n" + render_batch_script(kDefaultBatchTemplate, "default", script));
  const CommandResult result = run_command({"bash", dir.file("s.sh")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, testing::HasSubstr("no job for array task '7'"));
}

TEST(BatchScript, TheDefaultTemplateRunsTheTrainerAndLogsTheRunAndItsExitCode) {
  const ScratchDir dir;
  const std::string trainer = dir.file("train");
  // A trainer that records its arguments and exits 143, as after a saved preemption.
  test_support::write_text(trainer, "#!/bin/bash\necho \"args: $*\"\nexit 143\n");
  ::chmod(trainer.c_str(), 0755);
  BatchScript script;
  script.sweep = "s";
  script.trainer = trainer;
  script.tasks = {{"a", "a", dir.file("run a")}};
  test_support::write_text(dir.file("s.sh"),
                           render_batch_script(kDefaultBatchTemplate, "default", script));
  const CommandResult result =
      run_command({"env", "SLURM_JOB_ID=41", "SLURM_RESTART_COUNT=2", "bash", dir.file("s.sh")});
  EXPECT_EQ(result.exit_code, 143) << result.err;
  const auto runs = parse_run_log(test_support::read_text(dir.file("run a/slurm-runs.log")), "41");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].restart, 2);
  EXPECT_EQ(runs[0].exit_code, 143);
  EXPECT_EQ(test_support::read_text(dir.file("run a/trainer.log")),
            "args: --job " + dir.file("run a/job.json") + " --out " + dir.file("run a") + "\n");
}

TEST(BatchScript, AMultiGpuJobRunsItsRanksWithSrunAndExportsTheRendezvous) {
  const ScratchDir dir;
  // Stand-ins for srun and scontrol that record what the script asks of them.
  test_support::write_text(dir.file("bin/srun"),
                           "#!/bin/bash\necho \"srun $* MASTER_ADDR=$MASTER_ADDR "
                           "MASTER_PORT=$MASTER_PORT\" > \"$RECORD\"\nexit 0\n");
  test_support::write_text(dir.file("bin/scontrol"),
                           "#!/bin/bash\n[ \"$*\" = \"show hostnames gpu[7-8]\" ] && printf "
                           "'gpu7\\ngpu8\\n'\n");
  ::chmod(dir.file("bin/srun").c_str(), 0755);
  ::chmod(dir.file("bin/scontrol").c_str(), 0755);
  BatchScript script;
  script.sweep = "s";
  script.trainer = "/opt/parcae-train";
  script.ranks = 4;
  script.tasks = {{"a", "a", dir.file("run")}};
  test_support::write_text(dir.file("s.sh"),
                           render_batch_script(kDefaultBatchTemplate, "default", script));
  const CommandResult result = run_command({"env",
                                            "PATH=" + dir.file("bin") + ":/usr/bin:/bin",
                                            "RECORD=" + dir.file("srun.txt"),
                                            "SLURM_JOB_ID=1234",
                                            "SLURM_JOB_NODELIST=gpu[7-8]",
                                            "bash",
                                            dir.file("s.sh")});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(test_support::read_text(dir.file("srun.txt")),
            "srun --ntasks=4 --kill-on-bad-exit=1 /opt/parcae-train --job " + dir.file("run") +
                "/job.json --out " + dir.file("run") + " MASTER_ADDR=gpu7 MASTER_PORT=29734\n");
}

TEST(BatchScript, ATemplateWithoutTheVariablesLineIsRefusedNamingTheFile) {
  BatchScript script;
  script.tasks = {{"a", "a", "/x"}};
  try {
    render_batch_script("#!/bin/bash\necho {{parcae_variables}} here\n", "mine.sh", script);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("mine.sh"));
    EXPECT_THAT(e.what(), testing::HasSubstr("{{parcae_variables}}"));
  }
}

TEST(SlurmConfig, LimitsAreReadFromScontrolShowConfig) {
  const SlurmLimits limits = parse_slurm_config(
      "Configuration data as of 2026-11-25T16:51:37\nClusterName             = parcae-test\n"
      "MaxArraySize            = 4\nMaxJobCount             = 10000\nMaxStepCount = 40000\n");
  EXPECT_EQ(limits.max_array_size, 4);
  EXPECT_EQ(limits.max_job_count, 10000);
  EXPECT_EQ(limits.cluster_name, "parcae-test");
  EXPECT_EQ(parse_slurm_config("").max_array_size, 1001);  // Slurm's default
}

TEST(SplitIntoArrays, RangesRespectTheMaximumArraySize) {
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(split_into_arrays(10, 4), (Ranges{{0, 4}, {4, 8}, {8, 10}}));
  EXPECT_EQ(split_into_arrays(4, 4), (Ranges{{0, 4}}));
  EXPECT_EQ(split_into_arrays(3, 1), (Ranges{{0, 1}, {1, 2}, {2, 3}}));
  EXPECT_EQ(split_into_arrays(0, 4), Ranges{});
}

TEST(RunLog, RunsArePairedWithTheirEndsByRestartCountAndOtherIdsAreIgnored) {
  const std::string log =
      "start 7_1 0 node1 100\n"
      "start 9 0 node2 101\n"
      "end 7_1 0 143 150\n"
      "garbage line\n"
      "start 7_1 1 node3 300\n"
      "end 9 0 0 160\n"
      "start 7_1 2 node1 400\n"
      "end 7_1 2 0 500\n";
  const auto runs = parse_run_log(log, "7_1");
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].host, "node1");
  EXPECT_EQ(runs[0].exit_code, 143);
  EXPECT_EQ(runs[1].restart, 1);
  EXPECT_FALSE(runs[1].exit_code);  // killed without a word
  EXPECT_EQ(runs[2].exit_code, 0);
  EXPECT_EQ(runs[2].started_at, 400.0);
  EXPECT_TRUE(parse_run_log(log, "7").empty());
}

TEST(JobStates, SqueueAndSacctLinesAreReadAndClassified) {
  const auto states = parse_job_states(
      "5_0|RUNNING|None\n5_1|PENDING|BeginTime\n6|CANCELLED by 0|0:15\n6.batch|CANCELLED|0:15\n"
      "8|NODE_FAIL|0:0\n");
  ASSERT_EQ(states.size(), 4u);
  EXPECT_EQ(states.at("5_1").reason, "BeginTime");
  EXPECT_EQ(states.at("6").state, "CANCELLED");
  EXPECT_EQ(classify_slurm_state(states.at("5_0").state), SlurmStateClass::kActive);
  EXPECT_EQ(classify_slurm_state(states.at("5_1").state), SlurmStateClass::kQueued);
  EXPECT_EQ(classify_slurm_state("REQUEUED"), SlurmStateClass::kQueued);
  EXPECT_EQ(classify_slurm_state("COMPLETING"), SlurmStateClass::kActive);
  EXPECT_EQ(classify_slurm_state(states.at("8").state), SlurmStateClass::kFinished);
  EXPECT_EQ(classify_slurm_state("TIMEOUT"), SlurmStateClass::kFinished);
}

}  // namespace
}  // namespace parcae::orchestrator::detail
