// JobConfig: everything that defines one training run (one cell of a sweep), and its JSON form.
//
// This is the contract between the orchestrator, which writes `job.json` into a job's folder,
// and parcae-train, which reads it. The job id is a content hash of the canonical JSON of the
// fields that change what is trained, so the same cell planned twice is the same job. Defaults
// live here and nowhere else (parcae.md §8 and §10 for the paper's values).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/flop_model.h"

namespace parcae::sweeps {

// Optimizer, schedule and batch (parcae.md §8). Learning rates are per group.
struct TrainingConfig {
  int64_t batch_tokens = 524288;  // tokens per optimizer step (global batch, all ranks)
  int micro_batch_size = 32;      // sequences per forward/backward on one rank
  double adamw_lr = 8e-3;         // W_E, VE tables, norms, 1-D params, logA, dt_bias, B, C
  double adamw_beta1 = 0.8;
  double adamw_beta2 = 0.95;
  double adamw_eps = 1e-10;
  double adamw_weight_decay = 0.0;
  double muon_lr = 8e-3;           // hidden 2-D matrices and the VE gates
  double muon_weight_decay = 0.2;  // lambda at step 0, decays linearly to 0
  double cooldown_fraction = 0.5;  // trapezoid: linear decay to 0 over the last 50% of steps
  int warmup_steps = 0;
  double grad_clip = 1.0;            // global grad-norm clip; <= 0 disables
  std::string precision = "bf16";    // "bf16" (autocast, fp32 master weights) or "fp32"
  bool depth_bucketing = false;      // sort an accumulation batch by n_i before cutting (§6)
  bool unconstrained_decay = false;  // ablation: A free (a = exp(-dt*A_raw)), rho may exceed 1
};

// The most validation tokens (eval.val_sequences * (context_length + 1)) a job may ask for: the
// trainer holds them in memory as 64-bit ids, so this caps that at 512 MiB.
constexpr int64_t kMaxValidationTokens = int64_t{1} << 26;

// Validation during and after training (parcae.md §10).
struct EvalConfig {
  std::vector<int> depths = {1, 2, 4, 6, 8, 10, 12, 16, 20, 24};  // test-time T grid
  int64_t interval_steps = 0;  // evaluate every N optimizer steps; 0 = only at the end
  int val_sequences = 1024;    // first rows of the held-out shards, identical for every run
  uint64_t eval_seed = 1234;   // h0 draws at evaluation
};

// Token shards in llm.c's format (sweeps/token_shards.h). Paths are absolute or relative to the
// folder of the job file.
//
// With a bos_token, the shards are documents, each starting at that id (BOS, or the end-of-text
// id that llm.c's and nanochat's tools write before every document), and the trainer packs them
// as parcae.md §9 does: every row starts at a document's first token, BestFit-Crop over a buffer,
// a seeded permutation of the documents per epoch (trainer/data.h, docs/trainer.md "Data"). Without
// one (kNoBosToken), rows are windows at random offsets: the form of job and sweep files written
// before documents were read, kept so that they plan and resume as they did.
inline constexpr int kNoBosToken = -1;
struct DataConfig {
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  int bos_token = kNoBosToken;  // id that starts every document; kNoBosToken: random windows
  bool documents() const { return bos_token != kNoBosToken; }
};

struct JobIdentityParts;

struct JobConfig {
  std::string sweep;          // sweep name, for humans and the database
  std::string cell;           // cell name inside the sweep, e.g. "C1e18-mu4-seed0"
  std::string budget_id;      // explicit isoFLOP group label, e.g. "1e18"; empty when not isoFLOP
  double budget_flops = 0.0;  // nominal C; 0 when the job is defined by tokens alone
  int64_t train_tokens = 0;   // D: the trainer runs floor(D / batch_tokens) optimizer steps
  // How C was turned into D, and how the trainer counts the FLOPs it spends (flop_model.h).
  FlopConvention flop_convention = FlopConvention::kReference;
  // The sweep's "1-poisson" control (sweep_spec.h RecurrenceChoice): the fits keep it out of the
  // mu_rec axis, whose own mu_rec = 1 trains the same way. The trainer does not read it. Written
  // and hashed only when true, so that other jobs keep the JSON and ids they had.
  bool poisson_control = false;
  uint64_t seed = 0;
  ModelConfig model;
  TrainingConfig training;
  EvalConfig eval;
  DataConfig data;
  int64_t checkpoint_interval_steps = 0;  // 0 = only on SIGTERM and at the end
  std::string device = "auto";            // "auto", "cpu", "cuda"
  int gpus = 1;                           // ranks per job (data parallel)

  // Optimizer steps this job runs: floor(train_tokens / batch_tokens).
  int64_t max_steps() const;
  // Every problem at once, each "field = value: expected"; empty when valid.
  std::vector<std::string> validate() const;
  // Stable 16-hex-digit content hash of the fields that define the training run (everything but
  // device, gpus and checkpoint_interval_steps, which change how, not what, is trained): FNV-1a
  // of their canonical JSON. flop_convention enters only when it is not the reference, so jobs
  // planned before the field existed keep their ids.
  std::string id() const;
  // The same from the canonical JSON of model, training, eval and data given ready-made, for
  // callers that hash many jobs sharing them (the planner). `parts` must be those of this job.
  std::string id(const JobIdentityParts& parts) const;
};

// The compact JSON of a job's larger members, which JobConfig::id() hashes.
struct JobIdentityParts {
  std::string model;
  std::string training;
  std::string eval;
  std::string data;
  static JobIdentityParts of(const JobConfig& job);
};

nlohmann::json to_json(const TrainingConfig& training);
nlohmann::json to_json(const EvalConfig& eval);
nlohmann::json to_json(const DataConfig& data);
nlohmann::json to_json(const JobConfig& job);

// Unknown keys and wrong types throw InputError naming `file` and the field path. Missing keys
// keep their defaults; the result is validated.
TrainingConfig training_config_from_json(const nlohmann::json& value,
                                         const std::string& file,
                                         const std::string& field);
EvalConfig eval_config_from_json(const nlohmann::json& value,
                                 const std::string& file,
                                 const std::string& field);
JobConfig job_config_from_json(const nlohmann::json& value, const std::string& file);
// Reads and parses a job file; relative shard paths are resolved against its folder.
JobConfig read_job_file(const std::string& path);
// Writes the job's JSON (pretty, trailing newline) through a temporary file and a rename.
void write_job_file(const JobConfig& job, const std::string& path);

// 64-bit FNV-1a of a string, as 16 lowercase hex digits.
std::string content_hash(const std::string& text);

}  // namespace parcae::sweeps
