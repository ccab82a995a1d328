// JSON form, validation and content id of JobConfig.
#include "sweeps/job_config.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "sweeps/atomic_file.h"
#include "sweeps/error.h"
#include "sweeps/json_fields.h"

namespace parcae::sweeps {
namespace {

using detail::JsonAt;
using detail::read_field;

std::string resolve(const std::string& path, const std::filesystem::path& base) {
  const std::filesystem::path p(path);
  return p.is_absolute() || base.empty() ? path : (base / p).lexically_normal().string();
}

std::string as_text(const std::string& value) {
  return value;
}
std::string as_text(const char* value) {
  return value;
}
template <typename Number>
std::string as_text(Number value) {
  return std::to_string(value);
}

// 64-bit FNV-1a over pieces of text, as if they were one string.
class Fnv1a {
 public:
  void add(std::string_view text) {
    for (unsigned char c : text) {
      hash_ ^= c;
      hash_ *= 1099511628211ULL;
    }
  }
  std::string hex() const {
    char buffer[17];
    std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(hash_));
    return buffer;
  }

 private:
  uint64_t hash_ = 14695981039346656037ULL;
};

}  // namespace

int64_t JobConfig::max_steps() const {
  return training.batch_tokens > 0 ? train_tokens / training.batch_tokens : 0;
}

std::vector<std::string> JobConfig::validate() const {
  static const std::string kValidationLimitText =
      "expected at most " + std::to_string(kMaxValidationTokens) +
      " validation tokens (val_sequences * (context_length + 1))";
  std::vector<std::string> problems;
  for (const auto& p : model.validate())
    problems.push_back("model." + p);
  // Values are turned into text only for a failed check: the planner validates every cell.
  auto need = [&](bool ok, const char* field, const auto& value, const auto& what) {
    if (!ok)
      problems.push_back(std::string(field) + " = " + as_text(value) + ": " + what);
  };
  need(train_tokens > 0, "train_tokens", train_tokens, "expected > 0");
  need(budget_flops >= 0, "budget_flops", budget_flops, "expected >= 0");
  need(!poisson_control || (model.is_looped() && model.mean_recurrence == 1 &&
                            model.depth_sampler == DepthSampler::kPoisson),
       "poisson_control",
       "true",
       "expected only for a looped model at model.mean_recurrence = 1 with the poisson sampler");
  const TrainingConfig& t = training;
  need(t.batch_tokens > 0, "training.batch_tokens", t.batch_tokens, "expected > 0");
  need(t.micro_batch_size > 0, "training.micro_batch_size", t.micro_batch_size, "expected > 0");
  const int64_t rows_per_step = t.batch_tokens / std::max(model.context_length, 1);
  need(t.batch_tokens % std::max(model.context_length, 1) == 0,
       "training.batch_tokens",
       t.batch_tokens,
       "expected a multiple of model.context_length");
  // A micro-batch size below 1 is reported above; the remainder would divide by it.
  need(t.micro_batch_size < 1 ||
           rows_per_step % (static_cast<int64_t>(t.micro_batch_size) * std::max(gpus, 1)) == 0,
       "training.batch_tokens",
       t.batch_tokens,
       "expected sequences per step to be a multiple of micro_batch_size * gpus");
  need(max_steps() >= 1, "train_tokens", train_tokens, "expected at least one batch");
  need(t.adamw_lr > 0, "training.adamw_lr", t.adamw_lr, "expected > 0");
  need(t.muon_lr > 0, "training.muon_lr", t.muon_lr, "expected > 0");
  need(t.cooldown_fraction >= 0 && t.cooldown_fraction <= 1,
       "training.cooldown_fraction",
       t.cooldown_fraction,
       "expected between 0 and 1");
  need(t.warmup_steps >= 0, "training.warmup_steps", t.warmup_steps, "expected >= 0");
  need(t.precision == "bf16" || t.precision == "fp32",
       "training.precision",
       t.precision,
       "expected \"bf16\" or \"fp32\"");
  need(!eval.depths.empty(), "eval.depths", "[]", "expected at least one depth");
  for (int depth : eval.depths)
    need(depth >= 1, "eval.depths", depth, "expected >= 1");
  need(eval.interval_steps >= 0, "eval.interval_steps", eval.interval_steps, "expected >= 0");
  need(eval.val_sequences > 0, "eval.val_sequences", eval.val_sequences, "expected > 0");
  need(static_cast<int64_t>(eval.val_sequences) * (std::max(model.context_length, 0) + 1) <=
           kMaxValidationTokens,
       "eval.val_sequences",
       eval.val_sequences,
       kValidationLimitText);
  need(!data.train_shards.empty(), "data.train_shards", "[]", "expected at least one shard");
  need(!data.val_shards.empty(), "data.val_shards", "[]", "expected at least one shard");
  need(!data.documents() || (data.bos_token >= 0 && data.bos_token < model.vocab_size),
       "data.bos_token",
       data.bos_token,
       "expected a token id in [0, model.vocab_size)");
  need(device == "auto" || device == "cpu" || device == "cuda",
       "device",
       device,
       "expected \"auto\", \"cpu\" or \"cuda\"");
  need(gpus >= 1, "gpus", gpus, "expected >= 1");
  need(checkpoint_interval_steps >= 0,
       "checkpoint_interval_steps",
       checkpoint_interval_steps,
       "expected >= 0");
  return problems;
}

std::string JobConfig::id() const {
  return id(JobIdentityParts::of(*this));
}

JobIdentityParts JobIdentityParts::of(const JobConfig& job) {
  return {to_json(job.model).dump(),
          to_json(job.training).dump(),
          to_json(job.eval).dump(),
          to_json(job.data).dump()};
}

std::string JobConfig::id(const JobIdentityParts& parts) const {
  // The compact JSON (keys sorted, as nlohmann::json writes objects) of every field of to_json()
  // but device, gpus and checkpoint_interval_steps, hashed piece by piece.
  Fnv1a hash;
  hash.add("{\"budget_flops\":");
  hash.add(nlohmann::json(budget_flops).dump());
  hash.add(",\"budget_id\":");
  hash.add(nlohmann::json(budget_id).dump());
  hash.add(",\"cell\":");
  hash.add(nlohmann::json(cell).dump());
  hash.add(",\"data\":");
  hash.add(parts.data);
  hash.add(",\"eval\":");
  hash.add(parts.eval);
  if (flop_convention != FlopConvention::kReference) {
    hash.add(",\"flop_convention\":");
    hash.add(nlohmann::json(to_string(flop_convention)).dump());
  }
  hash.add(",\"model\":");
  hash.add(parts.model);
  if (poisson_control)
    hash.add(",\"poisson_control\":true");
  hash.add(",\"seed\":");
  hash.add(std::to_string(seed));
  hash.add(",\"sweep\":");
  hash.add(nlohmann::json(sweep).dump());
  hash.add(",\"train_tokens\":");
  hash.add(std::to_string(train_tokens));
  hash.add(",\"training\":");
  hash.add(parts.training);
  hash.add("}");
  return hash.hex();
}

nlohmann::json to_json(const TrainingConfig& t) {
  return {{"batch_tokens", t.batch_tokens},
          {"micro_batch_size", t.micro_batch_size},
          {"adamw_lr", t.adamw_lr},
          {"adamw_beta1", t.adamw_beta1},
          {"adamw_beta2", t.adamw_beta2},
          {"adamw_eps", t.adamw_eps},
          {"adamw_weight_decay", t.adamw_weight_decay},
          {"muon_lr", t.muon_lr},
          {"muon_weight_decay", t.muon_weight_decay},
          {"cooldown_fraction", t.cooldown_fraction},
          {"warmup_steps", t.warmup_steps},
          {"grad_clip", t.grad_clip},
          {"precision", t.precision},
          {"depth_bucketing", t.depth_bucketing},
          {"unconstrained_decay", t.unconstrained_decay}};
}

nlohmann::json to_json(const EvalConfig& e) {
  return {{"depths", e.depths},
          {"interval_steps", e.interval_steps},
          {"val_sequences", e.val_sequences},
          {"eval_seed", e.eval_seed}};
}

nlohmann::json to_json(const DataConfig& d) {
  nlohmann::json j = {{"train_shards", d.train_shards}, {"val_shards", d.val_shards}};
  // Absent for windows, so that jobs planned before documents existed keep their ids.
  if (d.documents())
    j["bos_token"] = d.bos_token;
  return j;
}

nlohmann::json to_json(const JobConfig& job) {
  nlohmann::json j = {{"sweep", job.sweep},
                      {"cell", job.cell},
                      {"budget_id", job.budget_id},
                      {"budget_flops", job.budget_flops},
                      {"train_tokens", job.train_tokens},
                      {"flop_convention", to_string(job.flop_convention)},
                      {"seed", job.seed},
                      {"model", to_json(job.model)},
                      {"training", to_json(job.training)},
                      {"eval", to_json(job.eval)},
                      {"data", to_json(job.data)},
                      {"checkpoint_interval_steps", job.checkpoint_interval_steps},
                      {"device", job.device},
                      {"gpus", job.gpus}};
  if (job.poisson_control)
    j["poisson_control"] = true;
  return j;
}

TrainingConfig training_config_from_json(const nlohmann::json& value,
                                         const std::string& file,
                                         const std::string& field) {
  const JsonAt at{file, field};
  detail::require_object_with_keys(value,
                                   {"batch_tokens",
                                    "micro_batch_size",
                                    "adamw_lr",
                                    "adamw_beta1",
                                    "adamw_beta2",
                                    "adamw_eps",
                                    "adamw_weight_decay",
                                    "muon_lr",
                                    "muon_weight_decay",
                                    "cooldown_fraction",
                                    "warmup_steps",
                                    "grad_clip",
                                    "precision",
                                    "depth_bucketing",
                                    "unconstrained_decay"},
                                   at);
  TrainingConfig t;
  read_field(value, "batch_tokens", at, t.batch_tokens);
  read_field(value, "micro_batch_size", at, t.micro_batch_size);
  read_field(value, "adamw_lr", at, t.adamw_lr);
  read_field(value, "adamw_beta1", at, t.adamw_beta1);
  read_field(value, "adamw_beta2", at, t.adamw_beta2);
  read_field(value, "adamw_eps", at, t.adamw_eps);
  read_field(value, "adamw_weight_decay", at, t.adamw_weight_decay);
  read_field(value, "muon_lr", at, t.muon_lr);
  read_field(value, "muon_weight_decay", at, t.muon_weight_decay);
  read_field(value, "cooldown_fraction", at, t.cooldown_fraction);
  read_field(value, "warmup_steps", at, t.warmup_steps);
  read_field(value, "grad_clip", at, t.grad_clip);
  read_field(value, "precision", at, t.precision);
  read_field(value, "depth_bucketing", at, t.depth_bucketing);
  read_field(value, "unconstrained_decay", at, t.unconstrained_decay);
  return t;
}

EvalConfig eval_config_from_json(const nlohmann::json& value,
                                 const std::string& file,
                                 const std::string& field) {
  const JsonAt at{file, field};
  detail::require_object_with_keys(
      value, {"depths", "interval_steps", "val_sequences", "eval_seed"}, at);
  EvalConfig e;
  read_field(value, "depths", at, e.depths);
  read_field(value, "interval_steps", at, e.interval_steps);
  read_field(value, "val_sequences", at, e.val_sequences);
  read_field(value, "eval_seed", at, e.eval_seed);
  return e;
}

JobConfig job_config_from_json(const nlohmann::json& value, const std::string& file) {
  const JsonAt at{file, ""};
  detail::require_object_with_keys(value,
                                   {"id",
                                    "sweep",
                                    "cell",
                                    "budget_id",
                                    "budget_flops",
                                    "train_tokens",
                                    "flop_convention",
                                    "poisson_control",
                                    "seed",
                                    "model",
                                    "training",
                                    "eval",
                                    "data",
                                    "checkpoint_interval_steps",
                                    "device",
                                    "gpus"},
                                   at);
  JobConfig job;
  read_field(value, "sweep", at, job.sweep);
  read_field(value, "cell", at, job.cell);
  read_field(value, "budget_id", at, job.budget_id);
  read_field(value, "budget_flops", at, job.budget_flops);
  read_field(value, "train_tokens", at, job.train_tokens);
  if (value.contains("flop_convention"))
    job.flop_convention =
        flop_convention_from_json(value.at("flop_convention"), file, "flop_convention");
  read_field(value, "poisson_control", at, job.poisson_control);
  read_field(value, "seed", at, job.seed);
  if (!value.contains("model"))
    throw InputError(file, "model", "(missing)", "expected a preset name or an object");
  job.model = model_config_from_json(value.at("model"), file, "model");
  if (value.contains("training"))
    job.training = training_config_from_json(value.at("training"), file, "training");
  if (value.contains("eval"))
    job.eval = eval_config_from_json(value.at("eval"), file, "eval");
  if (value.contains("data")) {
    const JsonAt data_at{file, "data"};
    detail::require_object_with_keys(
        value.at("data"), {"train_shards", "val_shards", "bos_token"}, data_at);
    read_field(value.at("data"), "train_shards", data_at, job.data.train_shards);
    read_field(value.at("data"), "val_shards", data_at, job.data.val_shards);
    read_field(value.at("data"), "bos_token", data_at, job.data.bos_token);
  }
  read_field(value, "checkpoint_interval_steps", at, job.checkpoint_interval_steps);
  read_field(value, "device", at, job.device);
  read_field(value, "gpus", at, job.gpus);
  const auto problems = job.validate();
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems)
      all += (all.empty() ? "" : "; ") + p;
    throw InputError(file, "", "job", "invalid: " + all);
  }
  return job;
}

JobConfig read_job_file(const std::string& path) {
  const nlohmann::json value = detail::read_json_file(path, /*allow_comments=*/false);
  JobConfig job = job_config_from_json(value, path);
  const auto base = std::filesystem::path(path).parent_path();
  for (auto& shard : job.data.train_shards)
    shard = resolve(shard, base);
  for (auto& shard : job.data.val_shards)
    shard = resolve(shard, base);
  return job;
}

void write_job_file(const JobConfig& job, const std::string& path) {
  nlohmann::json j = to_json(job);
  j["id"] = job.id();
  write_file_atomically(path, {j.dump(2), "\n"}, Durability::kOnRename);
}

std::string content_hash(const std::string& text) {
  Fnv1a hash;
  hash.add(text);
  return hash.hex();
}

}  // namespace parcae::sweeps
