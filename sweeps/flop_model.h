// The model description: ModelConfig, its parameter counts and its FLOPs per token.
//
// This file owns the one FLOP formula of the project (docs/flops.md, parcae.md §11). The sweep
// planner turns budgets into tokens with it, the trainer counts the FLOPs it spends with it, and
// the fitting front end evaluates F(mu, mu/2) at a non-integer optimum with it. It does not
// depend on LibTorch, so a machine that only plans and fits never needs it.
//
// Per-token training FLOPs of a looped model (Parcae and the looped injections):
//   F(mu_rec, mu_bwd) = 6*N_noncore + 3*(L_P + L_C)*attn_l
//                     + 2*N_loop*mu_rec + 4*N_loop*mu_bwd
//                     + L_R*attn_l*mu_rec + 2*L_R*attn_l*mu_bwd
//   attn_l = 4*H*hd*S      (forward attention FLOPs per layer per token, non-causal count)
// where N_loop = N_core (+ the 2d^2 concat adapter for the `linear` injection, which runs once per
// loop), and N_noncore excludes the tied embedding W_E. A fixed-depth Transformer costs
//   F = 6*(N_params - numel(W_E)) + 3*L*attn_l.
// Tokens for a budget: D = floor(C / F); optimizer steps = floor(D / batch_tokens).
// That is the reference convention, [R]'s cost script. The paper's text counts 6N differently
// (FlopConvention::kPaper below, docs/flops.md): the embedding lookups out, the unembedding in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace parcae::sweeps {

// Fixed-depth Transformer, or a looped model (prelude, recurrent core applied T times, coda).
enum class Family { kTransformer, kLooped };

// How the looped state h and the prelude output e are combined before each pass of the core
// (parcae.md §5.2): Parcae's stable diagonal ZOH injection, the RDM/Huginn concat adapter, or h+e.
enum class Injection { kDiagonal, kLinear, kAdd };

// One depth draw per sequence (Parcae) or one per micro-batch (the ablation presets).
enum class DepthGranularity { kPerSequence, kPerBatch };

// T = max(Poisson(mu_rec), 1), or exactly T = 1 (the `mu_rec=1 fixed` control, parcae.md §6).
enum class DepthSampler { kPoisson, kFixed };

// Everything that defines a model's shape. Field names are also the JSON keys.
struct ModelConfig {
  std::string name = "custom";
  Family family = Family::kLooped;
  Injection injection = Injection::kDiagonal;
  DepthGranularity depth_granularity = DepthGranularity::kPerSequence;
  DepthSampler depth_sampler = DepthSampler::kPoisson;
  bool prelude_norm = true;  // RMSNorm on e = P(x); looped family only

  int n_layers = 0;     // L, Transformer family only
  int n_prelude = 2;    // L_P
  int n_recurrent = 2;  // L_R, the core applied T times
  int n_coda = 2;       // L_C

  int d_model = 768;          // d (= d_rec)
  int n_heads = 6;            // H
  int head_dim = 128;         // hd; n_heads * head_dim == d_model
  int d_ff = 3072;            // MLP hidden width, 4d in every preset
  int vocab_size = 32768;     // V
  int context_length = 2048;  // S
  int ve_gate_channels = 32;  // the value-embedding gate reads z[..., :32]
  double rope_theta = 50000.0;

  int mean_recurrence = 8;  // mu_rec; 1 for the Transformer
  int mean_backward = 4;    // mu_bwd = ceil(mu_rec / 2) by default

  // Layers with distinct weights: L for the Transformer, L_P + L_R + L_C when looped.
  int n_effective_layers() const;
  // Layer i (prelude, core, coda order) has a value embedding and gate iff i = n_eff-1 (mod 2).
  bool has_value_embedding(int layer) const;
  int n_value_embeddings() const;
  bool is_looped() const { return family == Family::kLooped; }

  // Every problem at once, each "field: value: expected"; empty when valid.
  std::vector<std::string> validate() const;
};

// mu_bwd = ceil(mu_rec / 2), computed as (mu + 1) / 2 the way [R]'s sweep script does.
int default_mean_backward(int mean_recurrence);

// Parameter counts, split as parcae.md §7 and §11 split them. Every field is a count of scalars.
struct ParameterCounts {
  int64_t embedding = 0;         // W_E, tied to the head, counted once
  int64_t value_embeddings = 0;  // all VE tables, [V, H*hd] each
  int64_t per_block = 0;         // one transformer block: attention + MLP + 2 norms
  int64_t prelude_coda = 0;      // prelude and coda blocks with their VE gates (Transformer: all)
  int64_t core = 0;              // N_core: the L_R core blocks with their VE gates
  int64_t injection = 0;         // B, logA, dt_bias (diagonal) or W_adp (linear); 0 for add
  int64_t readout = 0;           // C, [d, d]
  int64_t norms = 0;             // prelude norm and final norm weights
  int64_t noncore = 0;           // N_noncore of §11 (excludes W_E, core and the linear adapter)
  int64_t per_loop = 0;          // N_loop: parameters run once per loop (core + linear adapter)
  int64_t total = 0;             // every parameter, W_E once
};

ParameterCounts count_parameters(const ModelConfig& config);

// F = c0 + c1*mu_rec + c2*mu_bwd for a looped model (c2 = 2*c1); c1 = c2 = 0 for a Transformer.
struct FlopLine {
  int64_t c0 = 0;
  int64_t c1 = 0;
  int64_t c2 = 0;
};

// Which parameters the 6N term of a budget counts (parcae.md §13 decision 1, docs/flops.md):
//   kReference  [R]'s `scripts/cost.py`: every value-embedding table in, the tied head out. The
//               default: it is how [R] turned the paper's budgets into tokens.
//   kPaper      [P]'s text (and nanochat): embedding lookups (W_E and the VE tables) out, the
//               unembedding (the head, V*d, tied to W_E) in:
//               c0_paper = c0_reference - 6*numel(VE tables) + 6*numel(W_E).
// Only c0 differs; the loop terms c1, c2 are the same. At Parcae-140M, F(8, 4) is 1,359,902,976
// under the reference and 1,057,913,088 under the paper's convention, 28.5% apart.
enum class FlopConvention { kReference, kPaper };

FlopLine flop_line(const ModelConfig& config);  // the reference convention
FlopLine flop_line(const ModelConfig& config, FlopConvention convention);

// Forward attention FLOPs per layer per token: 4*H*hd*S.
int64_t attention_flops_per_layer(const ModelConfig& config);

// Training FLOPs per token at the config's nominal depths: F(mu_rec, mu_bwd), so F(1, 1) for
// both mu_rec = 1 controls (the fixed sampler, and Poisson at mu_rec = 1, which [R] charges as
// one loop although its mean depth is 1 + e^-1).
int64_t train_flops_per_token(const ModelConfig& config);  // the reference convention
int64_t train_flops_per_token(const ModelConfig& config, FlopConvention convention);

// The same line at any (mu_rec, mu_bwd); F(mu, mu/2) is the continuous form for a fitted mu*.
double train_flops_per_token_at(const ModelConfig& config,
                                double mean_recurrence,
                                double mean_backward,
                                FlopConvention convention = FlopConvention::kReference);

// Forward FLOPs per token of evaluation at test-time depth T (all loops without grad).
int64_t eval_flops_per_token(const ModelConfig& config, int depth);

// Model FLOPs for MFU (nanochat/PaLM convention: matmul weights only, head in, lookups free).
// Never used for budgets. model_flop_line() is its line in (mu_rec, mu_bwd), zero slopes for the
// Transformer; model_flops_per_token_at() evaluates it at any mean depths, such as the loop
// iterations a step really executed (for hardware FLOPs utilisation).
FlopLine model_flop_line(const ModelConfig& config);
int64_t model_flops_per_token(const ModelConfig& config);
double model_flops_per_token_at(const ModelConfig& config,
                                double mean_recurrence,
                                double mean_backward);

// Effective parameters of the training law, N(mu) = N_noncore + mu * N_core (parcae.md §13 #11).
double effective_parameters(const ModelConfig& config, double mean_recurrence);

// The most training tokens one job may have, 2^53 (about 9.0e15): token counts are 64-bit
// integers that are also multiplied into FLOPs as doubles, which hold integers exactly only up
// to 2^53. It is about a thousand times the largest published training run.
constexpr int64_t kMaxTrainTokens = int64_t{1} << 53;

// D = floor(C / F). Throws InputError when C <= 0 or not finite, or when D > kMaxTrainTokens.
int64_t tokens_for_budget(const ModelConfig& config,
                          double budget_flops,
                          FlopConvention convention = FlopConvention::kReference);

// Preset names, `<variant>-<size>`: variants parcae, transformer, rdm, parcae-constrained-only,
// parcae-no-prelude-norm, add; sizes 140m, 370m, 770m, 1.3b (the paper's nanochat setup) and
// tiny, micro (CPU demos and tests).
std::vector<std::string> preset_names();
// Throws InputError naming the closest preset when `name` is unknown.
ModelConfig preset(const std::string& name);

// JSON in either form: a preset name, or an object {"preset": NAME, ...overrides} or a full
// object. Unknown keys are errors. `file` and `field` locate the value in error messages.
ModelConfig model_config_from_json(const nlohmann::json& value,
                                   const std::string& file,
                                   const std::string& field);
nlohmann::json to_json(const ModelConfig& config);

// The training settings a preset carries (parcae.md §7): {"adamw_lr": 6e-3} for the 770m and
// 1.3b sizes, {"adamw_lr": 8e-3} for 140m and 370m, whatever the variant ([P] swept the
// Transformer's rates and Parcae reuses them; Muon's 8e-3 is the same at every size and stays
// TrainingConfig's default). An empty object for tiny, micro and names that are not presets.
// The keys are those of TrainingConfig's JSON, so a sweep can lay its own on top (sweep_spec.h).
nlohmann::json preset_training(const std::string& preset_name);

std::string to_string(Family family);
std::string to_string(Injection injection);
std::string to_string(DepthGranularity granularity);
std::string to_string(DepthSampler sampler);
std::string to_string(FlopConvention convention);  // "reference" or "paper"
// Throws InputError naming `file` and `field` for anything but "reference" or "paper".
FlopConvention flop_convention_from_json(const nlohmann::json& value,
                                         const std::string& file,
                                         const std::string& field);

}  // namespace parcae::sweeps
