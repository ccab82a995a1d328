// The job file: JSON round trip, content ids and the errors a bad job file produces.
#include "sweeps/job_config.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "sweeps/error.h"

namespace parcae::sweeps {
namespace {

JobConfig tiny_job() {
  JobConfig job;
  job.sweep = "unit";
  job.cell = "mu4";
  job.model = preset("parcae-tiny");
  job.training.batch_tokens = 4096;
  job.training.micro_batch_size = 8;
  job.train_tokens = 40960;
  job.data.train_shards = {"train_000.bin"};
  job.data.val_shards = {"val_000.bin"};
  return job;
}

TEST(JobConfig, JsonRoundTripKeepsEveryFieldAndTheId) {
  const JobConfig job = tiny_job();
  const JobConfig back = job_config_from_json(to_json(job), "job.json");
  EXPECT_EQ(to_json(back), to_json(job));
  EXPECT_EQ(back.id(), job.id());
  EXPECT_EQ(job.id().size(), 16u);
}

TEST(JobConfig, RecordsItsFlopConventionAndReadsTheReferenceWhenAbsent) {
  JobConfig job = tiny_job();
  EXPECT_EQ(to_json(job).at("flop_convention"), "reference");
  job.flop_convention = FlopConvention::kPaper;
  const nlohmann::json written = to_json(job);
  EXPECT_EQ(written.at("flop_convention"), "paper");
  EXPECT_EQ(job_config_from_json(written, "job.json").flop_convention, FlopConvention::kPaper);
  nlohmann::json older = written;
  older.erase("flop_convention");
  EXPECT_EQ(job_config_from_json(older, "job.json").flop_convention, FlopConvention::kReference);
  EXPECT_NE(job_config_from_json(older, "job.json").id(), job.id());
  nlohmann::json bad = written;
  bad["flop_convention"] = "nanochat";
  try {
    job_config_from_json(bad, "job.json");
    FAIL() << "an unknown convention was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "flop_convention");
    EXPECT_NE(std::string(e.what()).find("job.json"), std::string::npos);
  }
}

TEST(JobConfig, IdChangesWithWhatIsTrainedButNotWithWhereItRuns) {
  const JobConfig job = tiny_job();
  JobConfig other_seed = job;
  other_seed.seed = 1;
  EXPECT_NE(other_seed.id(), job.id());
  JobConfig other_mu = job;
  other_mu.model.mean_recurrence = 6;
  EXPECT_NE(other_mu.id(), job.id());
  JobConfig on_gpu = job;
  on_gpu.device = "cuda";
  on_gpu.checkpoint_interval_steps = 100;
  EXPECT_EQ(on_gpu.id(), job.id());
}

TEST(JobConfig, IdIsTheHashOfTheCanonicalJsonOfWhatIsTrained) {
  JobConfig job = tiny_job();
  job.cell = "C1e18-mu4-seed0 \"quoted\"";
  job.budget_id = "1e18";
  job.budget_flops = 1.2345678901234e18;
  job.seed = 18446744073709551615ULL;
  nlohmann::json identity = to_json(job);
  // The reference convention is left out of the hash, so ids planned before it existed hold.
  for (const char* how : {"device", "gpus", "checkpoint_interval_steps", "flop_convention"})
    identity.erase(how);
  EXPECT_EQ(job.id(), content_hash(identity.dump()));
  EXPECT_EQ(job.id(JobIdentityParts::of(job)), job.id());
  job.flop_convention = FlopConvention::kPaper;
  identity["flop_convention"] = "paper";
  EXPECT_EQ(job.id(), content_hash(identity.dump()));
  EXPECT_EQ(job.id(JobIdentityParts::of(job)), job.id());
  // FNV-1a's published check value: "a" -> af63dc4c8601ec8c.
  EXPECT_EQ(content_hash("a"), "af63dc4c8601ec8c");
}

TEST(JobConfig, ThePoissonControlMarkIsWrittenAndHashedOnlyWhenSet) {
  JobConfig job = tiny_job();
  job.model.mean_recurrence = job.model.mean_backward = 1;
  EXPECT_FALSE(to_json(job).contains("poisson_control"));
  JobConfig control = job;
  control.poisson_control = true;
  const nlohmann::json written = to_json(control);
  EXPECT_EQ(written.at("poisson_control"), true);
  EXPECT_TRUE(job_config_from_json(written, "job.json").poisson_control);
  EXPECT_TRUE(control.validate().empty());
  nlohmann::json identity = written;
  for (const char* how : {"device", "gpus", "checkpoint_interval_steps", "flop_convention"})
    identity.erase(how);
  EXPECT_EQ(control.id(), content_hash(identity.dump()));
  EXPECT_NE(control.id(), job.id());
  // Only a looped model at mu_rec = 1 with Poisson depths can be that control.
  control.model.mean_recurrence = 4;
  ASSERT_EQ(control.validate().size(), 1u);
  EXPECT_EQ(control.validate()[0].rfind("poisson_control = true: expected only for", 0), 0u)
      << control.validate()[0];
}

TEST(JobConfig, ABosTokenMeansPackedDocumentsAndIsPartOfTheId) {
  const JobConfig windows = tiny_job();
  EXPECT_FALSE(windows.data.documents());
  // Without a bos_token the data JSON is what it was before documents, so ids stay as planned.
  EXPECT_EQ(to_json(windows.data),
            nlohmann::json({{"train_shards", {"train_000.bin"}}, {"val_shards", {"val_000.bin"}}}));
  JobConfig documents = windows;
  documents.data.bos_token = 2;
  EXPECT_TRUE(documents.data.documents());
  EXPECT_NE(documents.id(), windows.id());
  const JobConfig back = job_config_from_json(to_json(documents), "job.json");
  EXPECT_EQ(back.data.bos_token, 2);
  EXPECT_EQ(back.id(), documents.id());

  JobConfig outside = windows;
  outside.data.bos_token = 50256;  // beyond parcae-tiny's vocabulary
  const auto problems = outside.validate();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("data.bos_token = 50256"), std::string::npos) << problems[0];
}

TEST(JobConfig, MaxStepsIsTokensOverBatchRoundedDown) {
  JobConfig job = tiny_job();
  job.train_tokens = 4096 * 10 + 4095;
  EXPECT_EQ(job.max_steps(), 10);
}

TEST(JobConfig, ValidationReportsEveryProblemAtOnce) {
  JobConfig job = tiny_job();
  job.training.batch_tokens = 1000;  // not a multiple of the context
  job.training.precision = "fp16";
  job.eval.depths = {0};
  const auto problems = job.validate();
  EXPECT_GE(problems.size(), 3u);
}

TEST(JobConfig, UnknownKeyInTrainingNamesTheFieldPath) {
  nlohmann::json j = to_json(tiny_job());
  j["training"]["learning_rate"] = 1e-3;
  try {
    job_config_from_json(j, "runs/a/job.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "runs/a/job.json");
    EXPECT_EQ(e.field(), "training.learning_rate");
  }
}

TEST(JobConfig, ReadJobFileResolvesShardsAgainstItsFolder) {
  const auto dir = std::filesystem::temp_directory_path() / "parcae_job_config_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "job.json").string();
  write_job_file(tiny_job(), path);
  const JobConfig job = read_job_file(path);
  EXPECT_EQ(job.data.train_shards.at(0), (dir / "train_000.bin").string());
  // Shards are part of what is trained; a job planned with absolute paths keeps its id.
  JobConfig absolute = tiny_job();
  absolute.data.train_shards = {(dir / "train_000.bin").string()};
  absolute.data.val_shards = {(dir / "val_000.bin").string()};
  EXPECT_EQ(job.id(), absolute.id());
  write_job_file(absolute, path);
  EXPECT_EQ(read_job_file(path).id(), absolute.id());
  std::filesystem::remove_all(dir);
}

TEST(JobConfig, MalformedJsonNamesTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / "parcae_job_config_bad";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "job.json").string();
  std::ofstream(path) << "{\"model\": ";
  try {
    read_job_file(path);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), path);
  }
  std::filesystem::remove_all(dir);
}

TEST(ContentHash, IsFnv1a64) {
  EXPECT_EQ(content_hash(""), "cbf29ce484222325");
  EXPECT_EQ(content_hash("a"), "af63dc4c8601ec8c");
}

}  // namespace
}  // namespace parcae::sweeps
