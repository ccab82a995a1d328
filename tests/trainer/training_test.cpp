// End-to-end runs of the trainer on a seeded synthetic corpus: a tiny Parcae learns it and its
// events follow docs/events.md with FLOPs equal to the planner's formula; the Transformer
// evaluates one depth; a run killed by SIGTERM or SIGKILL and resumed ends bitwise where an
// uninterrupted run ends; bad input (job fields, shards, another job's run folder) fails with
// exit code 2 and a message naming what is wrong; a non-finite loss ends the run as diverged.
// Data parallel: one rank through the process group trains bitwise like a process alone, 2 and
// 3 ranks follow one rank's loss curve, and a run preempted on 2 ranks resumes on 1.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/flop_model.h"
#include "sweeps/job_config.h"
#include "sweeps/token_shards.h"
#include "tests/support/scratch_dir.h"
#include "trainer/data.h"
#include "trainer/launcher.h"
#include "trainer/optimizer.h"
#include "trainer/sampling.h"
#include "trainer/trainer.h"

namespace parcae::trainer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char* kTrainerBinary = PARCAE_BINARY_DIR "/bin/parcae-train";

using test_support::ScratchDir;

// Seeded sentences from a small grammar: a few bits of choice per word and fixed spelling in
// between, so a model that learns the words gets far below the byte unigram entropy.
std::string synthetic_text(size_t bytes, uint64_t seed) {
  const std::vector<std::string> subjects = {"the cat",
                                             "the dog",
                                             "a bird",
                                             "my sister",
                                             "the old farmer",
                                             "a young king",
                                             "the river",
                                             "our teacher"};
  const std::vector<std::string> verbs = {
      "sees", "follows", "remembers", "paints", "carries", "finds"};
  const std::vector<std::string> objects = {
      "the moon", "a red apple", "the long road", "seven stones", "the quiet house", "a letter"};
  const std::vector<std::string> endings = {".", "!", " today.", " again."};
  SplitMix64 rng(seed);
  auto pick = [&](const std::vector<std::string>& words) {
    return words[static_cast<size_t>(rng.next() % words.size())];
  };
  std::string text;
  int sentences = 0;
  while (text.size() < bytes) {
    text += pick(subjects) + " " + pick(verbs) + " " + pick(objects) + pick(endings);
    text += ++sentences % 5 == 0 ? "\n" : " ";
  }
  return text;
}

struct Corpus {
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  double unigram_cross_entropy = 0.0;  // nats/token of the train byte frequencies on val
};

Corpus write_corpus(const ScratchDir& dir) {
  const std::string text = synthetic_text(60000, 2024);
  const std::vector<uint16_t> tokens = sweeps::encode_bytes(text);
  const size_t val_start = tokens.size() - 8000;
  Corpus corpus;
  // Two training shards, so that sampling crosses files.
  const size_t half = val_start / 2;
  sweeps::write_token_shard(dir.file("train_0.bin"),
                            std::vector<uint16_t>(tokens.begin(), tokens.begin() + half));
  sweeps::write_token_shard(
      dir.file("train_1.bin"),
      std::vector<uint16_t>(tokens.begin() + half, tokens.begin() + val_start));
  sweeps::write_token_shard(dir.file("val_0.bin"),
                            std::vector<uint16_t>(tokens.begin() + val_start, tokens.end()));
  corpus.train_shards = {dir.file("train_0.bin"), dir.file("train_1.bin")};
  corpus.val_shards = {dir.file("val_0.bin")};
  std::array<double, 256> counts{};
  for (size_t i = 0; i < val_start; ++i)
    counts[tokens[i]] += 1.0;
  double cross_entropy = 0.0;
  for (size_t i = val_start; i < tokens.size(); ++i) {
    cross_entropy -= std::log((counts[tokens[i]] + 1.0) / (static_cast<double>(val_start) + 256.0));
  }
  corpus.unigram_cross_entropy = cross_entropy / static_cast<double>(tokens.size() - val_start);
  return corpus;
}

// The same grammar as documents of 1 to 8 sentences, each after the byte tokenizer's BOS: the
// corpus of packed-document runs.
Corpus write_document_corpus(const ScratchDir& dir) {
  const std::string text = synthetic_text(60000, 2025);
  SplitMix64 rng(77);
  std::vector<uint16_t> tokens;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = begin;
    for (uint64_t sentences = 1 + rng.next() % 8; sentences > 0 && end < text.size(); --sentences) {
      const size_t stop = text.find_first_of(".!", end);
      end = stop == std::string::npos ? text.size() : stop + 1;
    }
    tokens.push_back(sweeps::kByteBosToken);
    const std::vector<uint16_t> ids = sweeps::encode_bytes(text.substr(begin, end - begin));
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    begin = end;
  }
  // The held-out split starts at a document.
  size_t val_start = tokens.size() - 8000;
  while (tokens[val_start] != sweeps::kByteBosToken)
    ++val_start;
  sweeps::write_token_shard(dir.file("doc_train.bin"),
                            std::vector<uint16_t>(tokens.begin(), tokens.begin() + val_start));
  sweeps::write_token_shard(dir.file("doc_val.bin"),
                            std::vector<uint16_t>(tokens.begin() + val_start, tokens.end()));
  Corpus corpus;
  corpus.train_shards = {dir.file("doc_train.bin")};
  corpus.val_shards = {dir.file("doc_val.bin")};
  return corpus;
}

// A job for the micro preset (S = 32): 16 rows a step in two micro-batches of 8.
json micro_job(const Corpus& corpus, const std::string& model, int64_t steps) {
  return {{"sweep", "test"},
          {"cell", model},
          {"train_tokens", steps * 512},
          {"seed", 3},
          {"model", model},
          {"training", {{"batch_tokens", 512}, {"micro_batch_size", 8}, {"precision", "fp32"}}},
          {"eval", {{"depths", {1, 2, 4}}, {"interval_steps", 50}, {"val_sequences", 32}}},
          {"data", {{"train_shards", corpus.train_shards}, {"val_shards", corpus.val_shards}}},
          {"device", "cpu"}};
}

std::string write_job(const ScratchDir& dir, const std::string& name, const json& job) {
  const std::string path = dir.file(name);
  std::ofstream(path) << job.dump(2) << "\n";
  return path;
}

std::vector<json> read_events(const std::string& out_dir) {
  std::vector<json> events;
  std::ifstream in(out_dir + "/events.jsonl");
  for (std::string line; std::getline(in, line);)
    events.push_back(json::parse(line));
  return events;
}

std::vector<json> of_type(const std::vector<json>& events, const std::string& type) {
  std::vector<json> found;
  for (const auto& e : events) {
    if (e.at("event") == type)
      found.push_back(e);
  }
  return found;
}

TrainResult train_in_process(const std::string& job, const std::string& out) {
  TrainOptions options;
  options.job_path = job;
  options.out_dir = out;
  return train(options);
}

// parcae-train as a child process, stderr captured to a file.
class TrainerProcess {
 public:
  TrainerProcess(const std::string& job, const std::string& out, const std::string& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      ::execl(kTrainerBinary, kTrainerBinary, "--job", job.c_str(), "--out", out.c_str(), nullptr);
      std::_Exit(127);
    }
  }
  // Exit code, or 128 + signal for a killed process.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  bool running() {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == 0;
  }
  void signal(int number) { ::kill(pid_, number); }
  ~TrainerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

 private:
  pid_t pid_ = -1;
};

int run_trainer(const std::string& job, const std::string& out, const std::string& log) {
  TrainerProcess process(job, out, log);
  return process.wait();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int count_step_events(const std::string& out_dir) {
  std::ifstream in(out_dir + "/events.jsonl");
  int count = 0;
  for (std::string line; std::getline(in, line);) {
    count += line.find("\"event\":\"step\"") != std::string::npos ? 1 : 0;
  }
  return count;
}

TEST(TrainingRun, ATinyParcaeLearnsAndItsEventsFollowTheContract) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const sweeps::ModelConfig config = sweeps::preset("parcae-micro");
  const int64_t flops_per_token = sweeps::train_flops_per_token(config);
  // A budget that the planner turns into 100 steps and a fraction: D = floor(C / F).
  json job_json = micro_job(corpus, "parcae-micro", 0);
  const double budget = static_cast<double>(flops_per_token) * 512.0 * 100.5;
  job_json["budget_flops"] = budget;
  job_json["train_tokens"] = sweeps::tokens_for_budget(config, budget);
  job_json["checkpoint_interval_steps"] = 40;
  const std::string job_path = write_job(dir, "job.json", job_json);
  const sweeps::JobConfig job = sweeps::read_job_file(job_path);
  ASSERT_EQ(job.max_steps(), 100);

  const TrainResult result = train_in_process(job_path, dir.file("run"));
  EXPECT_EQ(result.status, TrainStatus::kDone);
  EXPECT_EQ(result.exit_code(), 0);
  EXPECT_EQ(result.steps, 100);

  const std::vector<json> events = read_events(dir.file("run"));
  ASSERT_FALSE(events.empty());
  double previous_time = 0.0;
  for (const auto& e : events) {
    ASSERT_TRUE(e.at("event").is_string()) << e;
    ASSERT_TRUE(e.at("time").is_number_float()) << e;
    ASSERT_TRUE(e.at("step").is_number_integer()) << e;
    EXPECT_GE(e.at("time").get<double>(), previous_time);
    previous_time = e.at("time").get<double>();
  }

  const json& start = events.front();
  EXPECT_EQ(start.at("event"), "start");
  EXPECT_EQ(start.at("step"), 0);
  EXPECT_EQ(start.at("job_id"), job.id());
  EXPECT_EQ(start.at("resumed"), false);
  EXPECT_TRUE(start.at("versions").at("parcae").is_string());
  EXPECT_TRUE(start.at("versions").at("libtorch").is_string());
  // The CUDA version of the LibTorch build ("" for a CPU build), whatever device the job uses.
  EXPECT_TRUE(start.at("versions").at("cuda").is_string());
  EXPECT_EQ(start.at("device"), "cpu");
  EXPECT_EQ(start.at("world_size"), 1);
  const sweeps::ParameterCounts counts = sweeps::count_parameters(config);
  EXPECT_EQ(start.at("parameters").at("total"), counts.total);
  EXPECT_EQ(start.at("parameters").at("noncore"), counts.noncore);
  EXPECT_EQ(start.at("parameters").at("core"), counts.core);
  EXPECT_EQ(start.at("parameters").at("embedding"), counts.embedding);
  EXPECT_EQ(start.at("flops_per_token"), flops_per_token);
  EXPECT_EQ(start.at("max_steps"), 100);
  EXPECT_EQ(start.at("train_tokens"), job.train_tokens);
  EXPECT_EQ(start.at("seed"), 3);
  EXPECT_EQ(start.at("budget_flops"), budget);
  EXPECT_EQ(start.at("data").at("packing"), "windows");
  EXPECT_EQ(start.at("data").at("tokens"), sweeps::corpus_token_count(corpus.train_shards));

  const std::vector<json> steps = of_type(events, "step");
  ASSERT_EQ(steps.size(), 100u);
  Schedule schedule;
  schedule.max_steps = 100;
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& s = steps[i];
    const int64_t number = static_cast<int64_t>(i) + 1;
    EXPECT_EQ(s.at("step"), number);
    EXPECT_EQ(s.at("tokens"), number * 512);
    EXPECT_EQ(s.at("flops").get<double>(), static_cast<double>(number * 512 * flops_per_token));
    EXPECT_TRUE(std::isfinite(s.at("loss").get<double>()));
    EXPECT_DOUBLE_EQ(s.at("lr_adamw").get<double>(), 8e-3 * schedule.lr_multiplier(number - 1));
    EXPECT_DOUBLE_EQ(s.at("lr_muon").get<double>(), 8e-3 * schedule.lr_multiplier(number - 1));
    EXPECT_GT(s.at("grad_norm").get<double>(), 0.0);
    EXPECT_GT(s.at("tokens_per_s").get<double>(), 0.0);
    EXPECT_EQ(s.at("skipped"), false);
    EXPECT_GE(s.at("mean_depth").get<double>(), 1.0);
    const bool diagnostics = number == 1 || number % 10 == 0;
    EXPECT_EQ(s.contains("log_rho"), diagnostics) << "step " << number;
    if (diagnostics) {
      EXPECT_LT(s.at("log_rho").get<double>(), 0.0);
      EXPECT_GT(s.at("mean_decay").get<double>(), 0.0);
      EXPECT_LT(s.at("mean_decay").get<double>(), 1.0);
      EXPECT_GT(s.at("h_rms").get<double>(), 0.0);
    }
  }

  // Evaluations at step 50 and at the end, at every depth of the grid (mu_rec = 2 is in it).
  const std::vector<json> evals = of_type(events, "eval");
  ASSERT_EQ(evals.size(), 6u);
  std::map<int, double> final_loss;
  for (size_t i = 0; i < evals.size(); ++i) {
    EXPECT_EQ(evals[i].at("step"), i < 3 ? 50 : 100);
    EXPECT_EQ(evals[i].at("depth"), std::vector<int>({1, 2, 4})[i % 3]);
    EXPECT_EQ(evals[i].at("tokens"), evals[i].at("step").get<int64_t>() * 512);
    if (i >= 3)
      final_loss[evals[i].at("depth").get<int>()] = evals[i].at("loss").get<double>();
  }

  const std::vector<json> checkpoints = of_type(events, "checkpoint");
  ASSERT_EQ(checkpoints.size(), 3u);  // steps 40, 80 and the end
  EXPECT_EQ(checkpoints.back().at("step"), 100);
  EXPECT_TRUE(fs::exists(checkpoints.back().at("path").get<std::string>()));
  EXPECT_FALSE(fs::exists(checkpoints.front().at("path").get<std::string>()));  // keeps two

  const json& done = events.back();
  EXPECT_EQ(done.at("event"), "done");
  EXPECT_EQ(done.at("status"), "done");
  EXPECT_EQ(done.at("step"), 100);
  EXPECT_EQ(done.at("tokens"), 100 * 512);
  EXPECT_EQ(done.at("flops").get<double>(), 100.0 * 512.0 * static_cast<double>(flops_per_token));
  EXPECT_LT(std::abs(done.at("flops").get<double>() - budget) / budget, 0.01);
  EXPECT_EQ(done.at("loss_train"), steps.back().at("loss"));
  EXPECT_EQ(done.at("loss_val").get<double>(), final_loss.at(2));
  EXPECT_GT(done.at("wall_time_s").get<double>(), 0.0);
  EXPECT_EQ(done.at("peak_memory_bytes"), 0);  // CPU

  // It learned: from ln(256) = 5.55 at the start to well below what byte frequencies give.
  EXPECT_GT(steps.front().at("loss").get<double>(), 5.0);
  // (The grammar's words carry ~0.2 nats a byte; this run reaches ~0.4 against ~2.9.)
  EXPECT_LT(done.at("loss_val").get<double>(), 0.5 * corpus.unigram_cross_entropy)
      << "unigram cross-entropy " << corpus.unigram_cross_entropy;
}

TEST(TrainingRun, DepthBucketingReordersRowsButDrawsTheSameDepths) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json plain = micro_job(corpus, "parcae-micro", 8);
  json bucketed = plain;
  bucketed["training"]["depth_bucketing"] = true;
  ASSERT_EQ(train_in_process(write_job(dir, "plain.json", plain), dir.file("plain")).status,
            TrainStatus::kDone);
  ASSERT_EQ(
      train_in_process(write_job(dir, "bucketed.json", bucketed), dir.file("bucketed")).status,
      TrainStatus::kDone);
  const std::vector<json> a = of_type(read_events(dir.file("plain")), "step");
  const std::vector<json> b = of_type(read_events(dir.file("bucketed")), "step");
  ASSERT_EQ(a.size(), b.size());
  int differing_losses = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("mean_depth"), b[i].at("mean_depth")) << "step " << i + 1;
    EXPECT_TRUE(std::isfinite(b[i].at("loss").get<double>()));
    differing_losses += a[i].at("loss") != b[i].at("loss") ? 1 : 0;
  }
  // Rows meet other h0 draws once sorted, so the losses move a little: bucketing is active.
  EXPECT_GT(differing_losses, 0);
}

TEST(TrainingData, ValidationIsTheFirstConsecutiveWindowsOfTheShards) {
  const ScratchDir dir;
  std::vector<uint16_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<uint16_t>(i);
  sweeps::write_token_shard(dir.file("a.bin"), tokens);
  sweeps::write_token_shard(dir.file("b.bin"),
                            std::vector<uint16_t>(tokens.begin(), tokens.begin() + 30));
  // seq 15: windows of 16 tokens; a.bin holds 6 (96 tokens), b.bin 1.
  sweeps::DataConfig data;
  data.val_shards = {dir.file("a.bin"), dir.file("b.bin")};
  const torch::Tensor rows = validation_rows(data, 256, 15, 7, "job.json");
  ASSERT_EQ(rows.size(0), 7);
  ASSERT_EQ(rows.size(1), 16);
  for (int64_t r = 0; r < 6; ++r)
    EXPECT_EQ(rows[r][0].item<int64_t>(), r * 16);
  EXPECT_EQ(rows[6][0].item<int64_t>(), 0);  // the first window of b.bin
  EXPECT_EQ(rows[6][15].item<int64_t>(), 15);
  try {
    validation_rows(data, 256, 15, 8, "job.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("eval.val_sequences = 8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("only 7 windows"), std::string::npos) << e.what();
  }
}

TEST(TrainingData, TrainingWindowsAreContiguousAndReplayFromTheirCursor) {
  const ScratchDir dir;
  std::vector<uint16_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<uint16_t>(i);
  sweeps::write_token_shard(dir.file("a.bin"), tokens);
  sweeps::DataConfig data;
  data.train_shards = {dir.file("a.bin")};
  TrainRows windows(data, 1000, 31, /*seed=*/9, "job.json");
  EXPECT_FALSE(windows.packs_documents());
  EXPECT_EQ(windows.tokens(), 1000);
  const torch::Tensor first = windows.next(64);
  EXPECT_EQ(windows.cursor(), 64);
  for (int64_t r = 0; r < 64; ++r) {
    const int64_t start = first[r][0].item<int64_t>();
    EXPECT_LE(start + 31, 999);
    for (int64_t t = 0; t < 32; ++t)
      ASSERT_EQ(first[r][t].item<int64_t>(), start + t);
  }
  std::set<int64_t> starts;
  for (int64_t r = 0; r < 64; ++r)
    starts.insert(first[r][0].item<int64_t>());
  EXPECT_GT(starts.size(), 50u);  // spread over the shard
  const torch::Tensor second = windows.next(8);
  windows.set_cursor(64);
  EXPECT_TRUE(torch::equal(windows.next(8), second));
  // Rows by run-wide index, as the ranks of a data-parallel run read them, in any order.
  const torch::Tensor picked = windows.at({66, 3, 70});
  EXPECT_TRUE(torch::equal(picked[0], second[2]));
  EXPECT_TRUE(torch::equal(picked[1], first[3]));
  EXPECT_TRUE(torch::equal(picked[2], second[6]));
  TrainRows other_seed(data, 1000, 31, /*seed=*/10, "job.json");
  EXPECT_FALSE(torch::equal(other_seed.next(64), first));
}

TEST(TrainingRun, TheTransformerEvaluatesOneDepthAndLogsNoLoopDiagnostics) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const std::string job = write_job(dir, "job.json", micro_job(corpus, "transformer-micro", 12));
  const TrainResult result = train_in_process(job, dir.file("run"));
  EXPECT_EQ(result.status, TrainStatus::kDone);
  const std::vector<json> events = read_events(dir.file("run"));
  const std::vector<json> evals = of_type(events, "eval");
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0].at("depth"), 1);
  EXPECT_EQ(events.back().at("loss_val"), evals[0].at("loss"));
  for (const auto& s : of_type(events, "step")) {
    EXPECT_FALSE(s.contains("log_rho"));
    EXPECT_FALSE(s.contains("h_rms"));
    EXPECT_EQ(s.at("mean_depth"), 1.0);
  }
  const int64_t f = sweeps::train_flops_per_token(sweeps::preset("transformer-micro"));
  EXPECT_EQ(events.back().at("flops").get<double>(), 12.0 * 512.0 * static_cast<double>(f));
}

// The loss of each step (the last record of it: a replayed step appears twice), the final
// evaluations and the done event's numbers.
struct RunRecord {
  std::map<int64_t, double> step_loss;
  std::map<int, double> final_eval;
  json done;
};

RunRecord record_of(const std::vector<json>& events) {
  RunRecord record;
  for (const auto& e : events) {
    if (e.at("event") == "step")
      record.step_loss[e.at("step")] = e.at("loss").get<double>();
    if (e.at("event") == "eval")
      record.final_eval[e.at("depth")] = e.at("loss").get<double>();
    if (e.at("event") == "done")
      record.done = e;
  }
  return record;
}

// Kill a running parcae-train after N step events, run it again, and require the records of an
// uninterrupted run, to the last bit (CPU, fixed seed): with random windows, and with packed
// documents, whose packing is replayed up to the checkpoint's cursor.
class KillAndResume : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(KillAndResume, AResumedRunEndsBitwiseWhereAnUninterruptedRunEnds) {
  const auto [signal_number, documents] = GetParam();
  const ScratchDir dir;
  const Corpus corpus = documents ? write_document_corpus(dir) : write_corpus(dir);
  json job_json = micro_job(corpus, "parcae-micro", 120);
  if (documents)
    job_json["data"]["bos_token"] = sweeps::kByteBosToken;
  job_json["checkpoint_interval_steps"] = 5;
  const std::string job = write_job(dir, "job.json", job_json);

  ASSERT_EQ(run_trainer(job, dir.file("clean"), dir.file("clean.log")), kExitDone)
      << read_file(dir.file("clean.log"));

  {
    TrainerProcess victim(job, dir.file("killed"), dir.file("killed.log"));
    while (count_step_events(dir.file("killed")) < 12) {
      ASSERT_TRUE(victim.running())
          << "finished before the kill: " << read_file(dir.file("killed.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    victim.signal(signal_number);
    const int code = victim.wait();
    if (signal_number == SIGTERM) {
      EXPECT_EQ(code, kExitPreempted) << read_file(dir.file("killed.log"));
      const std::vector<json> events = read_events(dir.file("killed"));
      EXPECT_EQ(events.back().at("event"), "preempted");
      EXPECT_EQ(events[events.size() - 2].at("event"), "checkpoint");
    } else {
      EXPECT_EQ(code, 128 + SIGKILL);
    }
  }
  ASSERT_EQ(run_trainer(job, dir.file("killed"), dir.file("resumed.log")), kExitDone)
      << read_file(dir.file("resumed.log"));

  const std::vector<json> killed_events = read_events(dir.file("killed"));
  const std::vector<json> starts = of_type(killed_events, "start");
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1].at("resumed"), true);
  EXPECT_GE(starts[1].at("step").get<int64_t>(), 5);

  const RunRecord clean = record_of(read_events(dir.file("clean")));
  const RunRecord resumed = record_of(killed_events);
  EXPECT_EQ(resumed.step_loss, clean.step_loss);
  EXPECT_EQ(resumed.final_eval, clean.final_eval);
  EXPECT_EQ(resumed.done.at("loss_train"), clean.done.at("loss_train"));
  EXPECT_EQ(resumed.done.at("loss_val"), clean.done.at("loss_val"));
  EXPECT_EQ(resumed.done.at("tokens"), clean.done.at("tokens"));
  EXPECT_EQ(resumed.done.at("flops"), clean.done.at("flops"));
}

INSTANTIATE_TEST_SUITE_P(Signals,
                         KillAndResume,
                         ::testing::Values(std::make_tuple(SIGTERM, false),
                                           std::make_tuple(SIGKILL, false),
                                           std::make_tuple(SIGKILL, true)));

TEST(TrainingRun, PackedDocumentsTrainAndReportTheirEpochs) {
  const ScratchDir dir;
  const Corpus corpus = write_document_corpus(dir);
  json job_json = micro_job(corpus, "parcae-micro", 30);
  job_json["data"]["bos_token"] = sweeps::kByteBosToken;
  const std::string job = write_job(dir, "job.json", job_json);
  const TrainResult result = train_in_process(job, dir.file("run"));
  EXPECT_EQ(result.status, TrainStatus::kDone);
  const std::vector<json> events = read_events(dir.file("run"));
  const json& data = events.front().at("data");
  EXPECT_EQ(data.at("packing"), "documents");
  EXPECT_GT(data.at("documents").get<int64_t>(), 100);
  // The packing buffer alone draws 1,000 documents, several epochs of this small corpus; the 30
  // steps of 16 rows of 33 tokens take at most a document per token on top.
  const auto documents = data.at("documents").get<double>();
  const double epochs = events.back().at("data_epochs").get<double>();
  EXPECT_GE(epochs, 1000.0 / documents);
  EXPECT_LE(epochs, (1000.0 + 30.0 * 16.0 * 33.0) / documents);
  EXPECT_TRUE(std::isfinite(result.loss_val));
}

TEST(TrainingRun, TheRdmLogsTheSpectralRadiusOfItsAdapter) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const std::string job = write_job(dir, "job.json", micro_job(corpus, "rdm-micro", 10));
  const TrainResult result = train_in_process(job, dir.file("run"));
  EXPECT_EQ(result.status, TrainStatus::kDone);
  const std::vector<json> steps = of_type(read_events(dir.file("run")), "step");
  ASSERT_EQ(steps.size(), 10u);
  for (const auto& s : steps) {
    const int64_t number = s.at("step").get<int64_t>();
    EXPECT_EQ(s.contains("log_rho"), number == 1 || number == 10) << "step " << number;
    if (s.contains("log_rho")) {
      // W_h of a truncated-normal init with sigma ~ 1/sqrt(5d): rho near 2 sigma sqrt(d), well
      // inside (0.1, 10), and finite.
      const double log_rho = s.at("log_rho").get<double>();
      EXPECT_GT(log_rho, std::log(0.1));
      EXPECT_LT(log_rho, std::log(10.0));
      EXPECT_FALSE(s.contains("mean_decay"));
    }
  }
}

#if PARCAE_WITH_GLOO
// Data parallel on the CPU: parcae-train with gpus = N launches N ranks that sum gradients over
// Gloo. 48 rows a step in 6 micro-batches of 8, so 2 and 3 ranks each accumulate several.
json data_parallel_job(const Corpus& corpus, int gpus, int64_t steps) {
  json job = micro_job(corpus, "parcae-micro", steps);
  job["train_tokens"] = steps * 1536;
  job["training"]["batch_tokens"] = 1536;
  job["eval"]["interval_steps"] = 0;
  job["gpus"] = gpus;
  return job;
}

// N ranks add the same terms as one rank in another order, in fp32: gradients differ in the
// last bits, and training amplifies the difference. Measured on these jobs, the relative gap in
// step loss stays below 1e-7 for 12 steps, then grows about tenfold every 4 steps (8e-6 at step
// 20, 3e-3 at step 40), so the runs here stop by step 20. A real error (a row read twice, a
// gradient not summed, a depth drawn from another stream) moves the loss by 1e-2 or more at once.
constexpr double kCurveTolerance = 1e-4;

void expect_same_curve(const RunRecord& got, const RunRecord& expected, const std::string& what) {
  ASSERT_EQ(got.step_loss.size(), expected.step_loss.size()) << what;
  for (const auto& [step, loss] : expected.step_loss) {
    EXPECT_NEAR(got.step_loss.at(step), loss, kCurveTolerance * std::abs(loss))
        << what << ", step " << step;
  }
  ASSERT_EQ(got.final_eval.size(), expected.final_eval.size()) << what;
  for (const auto& [depth, loss] : expected.final_eval) {
    EXPECT_NEAR(got.final_eval.at(depth), loss, kCurveTolerance * std::abs(loss))
        << what << ", depth " << depth;
  }
}

TEST(DataParallel, OneRankThroughTheProcessGroupTrainsBitwiseLikeAProcessAlone) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const std::string job = write_job(dir, "job.json", data_parallel_job(corpus, 1, 6));
  ASSERT_EQ(train_in_process(job, dir.file("alone")).status, TrainStatus::kDone);
  TrainOptions options;
  options.job_path = job;
  options.out_dir = dir.file("group");
  RankOptions ranks;
  ranks.master_port = free_local_port();
  options.ranks = ranks;
  ASSERT_EQ(train(options).status, TrainStatus::kDone);
  const RunRecord alone = record_of(read_events(dir.file("alone")));
  const RunRecord group = record_of(read_events(dir.file("group")));
  EXPECT_EQ(group.step_loss, alone.step_loss);
  EXPECT_EQ(group.final_eval, alone.final_eval);
  EXPECT_EQ(group.done.at("loss_val"), alone.done.at("loss_val"));
}

// (world size, depth bucketing, packed documents)
class DataParallelRanks : public ::testing::TestWithParam<std::tuple<int, bool, bool>> {};

TEST_P(DataParallelRanks, TheRanksFollowTheLossCurveOfOneRankWithTheSameGlobalBatch) {
  const auto [world, bucketing, documents] = GetParam();
  const ScratchDir dir;
  const Corpus corpus = documents ? write_document_corpus(dir) : write_corpus(dir);
  json one = data_parallel_job(corpus, 1, 10);
  one["training"]["depth_bucketing"] = bucketing;
  if (documents)
    one["data"]["bos_token"] = sweeps::kByteBosToken;
  json many = one;
  many["gpus"] = world;
  ASSERT_EQ(train_in_process(write_job(dir, "one.json", one), dir.file("one")).status,
            TrainStatus::kDone);
  ASSERT_EQ(run_trainer(write_job(dir, "many.json", many), dir.file("many"), dir.file("many.log")),
            kExitDone)
      << read_file(dir.file("many.log"));

  const std::vector<json> events = read_events(dir.file("many"));
  // Rank 0 alone writes: one start, one step event per step, one done.
  ASSERT_EQ(of_type(events, "start").size(), 1u);
  EXPECT_EQ(of_type(events, "start")[0].at("world_size"), world);
  ASSERT_EQ(of_type(events, "done").size(), 1u);
  const std::vector<json> steps = of_type(events, "step");
  const std::vector<json> reference = of_type(read_events(dir.file("one")), "step");
  ASSERT_EQ(steps.size(), 10u);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].at("tokens"), reference[i].at("tokens"));
    EXPECT_EQ(steps[i].at("flops"), reference[i].at("flops"));
    // Depths are drawn for the global batch on every rank: exactly one rank's draws.
    EXPECT_EQ(steps[i].at("mean_depth"), reference[i].at("mean_depth")) << "step " << i + 1;
    if (reference[i].contains("h_rms")) {
      EXPECT_NEAR(steps[i].at("h_rms").get<double>(),
                  reference[i].at("h_rms").get<double>(),
                  kCurveTolerance * reference[i].at("h_rms").get<double>());
    }
  }
  expect_same_curve(
      record_of(events), record_of(read_events(dir.file("one"))), std::to_string(world) + " ranks");
  const std::string log = read_file(dir.file("many.log"));
  EXPECT_NE(log.find("started rank " + std::to_string(world - 1)), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(WorldSizes,
                         DataParallelRanks,
                         ::testing::Values(std::make_tuple(2, false, false),
                                           std::make_tuple(3, true, false),
                                           std::make_tuple(2, true, true)));

TEST(DataParallel, ARunPreemptedOnTwoRanksResumesOnOneAndEndsWhereOneRankEnds) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json two = data_parallel_job(corpus, 2, 20);
  two["checkpoint_interval_steps"] = 5;
  json one = two;
  one["gpus"] = 1;
  const std::string two_job = write_job(dir, "two.json", two);
  const std::string one_job = write_job(dir, "one.json", one);
  ASSERT_EQ(sweeps::read_job_file(two_job).id(), sweeps::read_job_file(one_job).id());
  ASSERT_EQ(train_in_process(one_job, dir.file("clean")).status, TrainStatus::kDone);

  {
    TrainerProcess victim(two_job, dir.file("killed"), dir.file("killed.log"));
    while (count_step_events(dir.file("killed")) < 4) {
      ASSERT_TRUE(victim.running())
          << "finished before the kill: " << read_file(dir.file("killed.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    victim.signal(SIGTERM);  // the launcher alone: it must pass the stop to its ranks
    EXPECT_EQ(victim.wait(), kExitPreempted) << read_file(dir.file("killed.log"));
  }
  const std::vector<json> preempted = read_events(dir.file("killed"));
  ASSERT_GE(preempted.size(), 2u);
  EXPECT_EQ(preempted.back().at("event"), "preempted");
  EXPECT_EQ(preempted[preempted.size() - 2].at("event"), "checkpoint");
  EXPECT_EQ(of_type(preempted, "preempted").size(), 1u);

  ASSERT_EQ(run_trainer(one_job, dir.file("killed"), dir.file("resumed.log")), kExitDone)
      << read_file(dir.file("resumed.log"));
  const std::vector<json> events = read_events(dir.file("killed"));
  const std::vector<json> starts = of_type(events, "start");
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0].at("world_size"), 2);
  EXPECT_EQ(starts[1].at("world_size"), 1);
  EXPECT_EQ(starts[1].at("resumed"), true);
  EXPECT_GE(starts[1].at("step").get<int64_t>(), 4);
  const RunRecord clean = record_of(read_events(dir.file("clean")));
  const RunRecord resumed = record_of(events);
  expect_same_curve(resumed, clean, "preempted on 2 ranks, resumed on 1");
  EXPECT_EQ(resumed.done.at("tokens"), clean.done.at("tokens"));
  EXPECT_EQ(resumed.done.at("flops"), clean.done.at("flops"));
}

// SIGKILL one rank mid-run (an out-of-memory kill, a lost GPU): the job must fail, not hang or
// pass for preempted, and its events must end with an error.
TEST(DataParallel, ARankKilledMidRunFailsTheJobAndEndsItsEventsWithAnError) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const std::string job = write_job(dir, "job.json", data_parallel_job(corpus, 2, 200));
  TrainerProcess launcher(job, dir.file("run"), dir.file("run.log"));
  while (count_step_events(dir.file("run")) < 2) {
    ASSERT_TRUE(launcher.running()) << read_file(dir.file("run.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string log = read_file(dir.file("run.log"));
  const std::string mark = "started rank 1 of 2 (pid ";
  const size_t at = log.find(mark);
  ASSERT_NE(at, std::string::npos) << log;
  const pid_t rank_one = static_cast<pid_t>(std::stol(log.substr(at + mark.size())));
  ASSERT_EQ(::kill(rank_one, SIGKILL), 0);
  const int code = launcher.wait();
  EXPECT_NE(code, kExitDone);
  EXPECT_NE(code, kExitBadInput);
  EXPECT_NE(code, kExitPreempted);
  const std::string final_log = read_file(dir.file("run.log"));
  EXPECT_NE(final_log.find("rank 1 exited with code " + std::to_string(128 + SIGKILL)),
            std::string::npos)
      << final_log;
  const std::vector<json> events = read_events(dir.file("run"));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().at("event"), "error") << events.back();
  EXPECT_TRUE(of_type(events, "done").empty());
}

TEST(DataParallel, BadInputStopsEveryRankWithExitCodeTwoAndOneErrorEvent) {
  const ScratchDir dir;
  Corpus corpus = write_corpus(dir);
  std::ofstream(dir.file("bad.bin"), std::ios::binary) << std::string(2048, 'x');
  corpus.val_shards = {dir.file("bad.bin")};
  const std::string job = write_job(dir, "job.json", data_parallel_job(corpus, 2, 4));
  EXPECT_EQ(run_trainer(job, dir.file("run"), dir.file("run.log")), kExitBadInput)
      << read_file(dir.file("run.log"));
  const std::vector<json> events = read_events(dir.file("run"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("event"), "error");
  EXPECT_NE(events[0].at("message").get<std::string>().find(dir.file("bad.bin")), std::string::npos)
      << events[0];
}

TEST(DataParallel, AWorldSizeOtherThanTheJobsGpusIsBadInput) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  const std::string job = write_job(dir, "job.json", data_parallel_job(corpus, 1, 4));
  TrainOptions options;
  options.job_path = job;
  options.out_dir = dir.file("run");
  RankOptions ranks;
  ranks.world_size = 2;
  ranks.master_port = free_local_port();
  ranks.source = "RANK";
  options.ranks = ranks;
  try {
    train(options);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gpus = 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("world size 2 set by RANK"), std::string::npos)
        << e.what();
  }
}
#endif  // PARCAE_WITH_GLOO

TEST(TrainingInput, AJobOfSeveralGpusNeedsRankVariablesWhenTrainedInProcess) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json job_json = micro_job(corpus, "parcae-micro", 4);
  job_json["gpus"] = 2;
  try {
    train_in_process(write_job(dir, "job.json", job_json), dir.file("run"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gpus = 2"), std::string::npos) << e.what();
  }
}

TEST(TrainingInput, ABadJobFieldExitsWithTwoAndNamesTheField) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json job_json = micro_job(corpus, "parcae-micro", 4);
  job_json["training"]["micro_batch_sise"] = 8;
  const std::string job = write_job(dir, "job.json", job_json);
  EXPECT_EQ(run_trainer(job, dir.file("run"), dir.file("run.log")), kExitBadInput);
  const std::string log = read_file(dir.file("run.log"));
  EXPECT_NE(log.find("training.micro_batch_sise"), std::string::npos) << log;
  const std::vector<json> events = read_events(dir.file("run"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("event"), "error");
  EXPECT_NE(events[0].at("message").get<std::string>().find("training.micro_batch_sise"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("run/checkpoint")));
}

TEST(TrainingInput, ACorruptShardIsReportedWithItsFileNameBeforeAnyStep) {
  const ScratchDir dir;
  Corpus corpus = write_corpus(dir);
  std::ofstream(dir.file("bad.bin"), std::ios::binary) << std::string(2048, 'x');
  corpus.val_shards = {dir.file("bad.bin")};
  const std::string job = write_job(dir, "job.json", micro_job(corpus, "parcae-micro", 4));
  try {
    train_in_process(job, dir.file("run"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("bad.bin")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("header.magic"), std::string::npos) << e.what();
  }
  const std::vector<json> events = read_events(dir.file("run"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("event"), "error");
}

TEST(TrainingInput, ARunFolderOfAnotherJobIsRefusedNamingBothIds) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json first = micro_job(corpus, "parcae-micro", 3);
  json second = first;
  second["seed"] = 4;
  const std::string first_job = write_job(dir, "first.json", first);
  const std::string second_job = write_job(dir, "second.json", second);
  ASSERT_EQ(train_in_process(first_job, dir.file("run")).status, TrainStatus::kDone);
  const std::string first_id = sweeps::read_job_file(first_job).id();
  const std::string second_id = sweeps::read_job_file(second_job).id();
  ASSERT_NE(first_id, second_id);
  try {
    train_in_process(second_job, dir.file("run"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(first_id), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(second_id), std::string::npos) << e.what();
  }
}

TEST(TrainingRun, ANonFiniteLossEndsTheRunAsDiverged) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir);
  json job_json = micro_job(corpus, "parcae-micro", 10);
  job_json["training"]["adamw_lr"] = 1e38;  // the first update overflows the weights
  job_json["training"]["muon_lr"] = 1e38;
  const std::string job = write_job(dir, "job.json", job_json);
  const TrainResult result = train_in_process(job, dir.file("run"));
  EXPECT_EQ(result.status, TrainStatus::kDiverged);
  EXPECT_EQ(result.exit_code(), kExitDone);
  const std::vector<json> events = read_events(dir.file("run"));
  const json& done = events.back();
  EXPECT_EQ(done.at("event"), "done");
  EXPECT_EQ(done.at("status"), "diverged");
  EXPECT_TRUE(done.at("loss_train").is_null());
  EXPECT_LT(done.at("step").get<int64_t>(), 10);
  EXPECT_TRUE(of_type(events, "step").back().at("loss").is_null());
}

}  // namespace
}  // namespace parcae::trainer
