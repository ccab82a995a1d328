// The models of parcae.md §2–§5 as LibTorch modules: Parcae (diagonal injection), the looped
// `linear` (RDM/Huginn concat adapter) and `add` variants, the unconstrained-decay ablation and
// the fixed-depth Transformer, with §4's initialisation.
//
// Module and submodule names are checkpoint keys (`prelude.0.attention.query.weight`,
// `injection.log_a`, `readout.weight`, ...); they change only with a checkpoint version bump.
// The parameter count of every model equals sweeps::count_parameters of its config exactly
// (tests/trainer/model_test.cpp), so the FLOPs the trainer spends are the planner's FLOPs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <torch/torch.h>

#include "sweeps/flop_model.h"
#include "trainer/fused_ops.h"
#include "trainer/sampling.h"

namespace parcae::trainer {

inline constexpr double kNormEps = 1e-5;    // RMSNorm, parcae.md §3
inline constexpr double kQkNormEps = 1e-6;  // parameter-free QK-norm, §3 (eps <= 1e-6)

struct ModelOptions {
  // training.unconstrained_decay: a = exp(-Delta * a_raw) with a_raw free (init 1), so rho(A-bar)
  // may exceed 1 — the unstable ablation. Only for the diagonal injection.
  bool unconstrained_decay = false;
  // Apply §4's initialisation. Off only where values do not matter (counting parameters).
  bool initialize = true;
  // The implementation of the memory-bound operations (fused_ops.h); unset: fused on a GPU,
  // the ATen composition on the CPU.
  std::optional<KernelPath> kernels;
};

// RMSNorm with a learned weight (init 1): rms_normalize(x) * w (parcae.md §3), returned in
// `out_dtype`.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x, torch::Dtype out_dtype, KernelPath path);
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// Multi-head causal attention with RoPE then parameter-free QK-norm, and the optional value
// embedding gate g = 2 sigmoid(z[..., :32] W_g^T) (parcae.md §3). q, k and v come from one
// matrix product with [Wq; Wk; Wv] stacked (qkv_weight()), which a looped model stacks once per
// forward and reuses on every loop.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const sweeps::ModelConfig& config, bool gated);
  // [Wq; Wk; Wv], (3 H hd, d), differentiable.
  torch::Tensor qkv_weight();
  // z: (batch, seq, d) the normed block input; value_embedding: (batch, seq, H*hd) or undefined;
  // qkv_weight: this layer's qkv_weight().
  torch::Tensor forward(const torch::Tensor& z,
                        const torch::Tensor& value_embedding,
                        const torch::Tensor& qkv_weight,
                        const RotaryTable& rope,
                        KernelPath path);

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, output{nullptr};
  torch::nn::Linear value_gate{nullptr};  // W_g, (H, 32); null in layers without a VE

 private:
  int64_t n_heads_;
  int64_t head_dim_;
  int64_t gate_channels_;
};
TORCH_MODULE(Attention);

// W2 (0.5 relu(W1 x)^2), no biases ([R] Relu2).
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const sweeps::ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, KernelPath path);
  torch::nn::Linear up{nullptr}, down{nullptr};
};
TORCH_MODULE(Mlp);

// The residual stream between blocks. Its value is x + pending: a block's last branch output
// (pending; undefined when there is none) is added by the norm that next reads the stream
// (add_rms_norm), in the same pass over memory.
struct ResidualStream {
  torch::Tensor x;
  torch::Tensor pending;
  torch::Tensor value() const { return pending.defined() ? x + pending : x; }
};

// Pre-norm block: x + Attn(N1 x), then + MLP(N2 x). A block with a value embedding owns its
// table VE (V, H*hd); the caller looks it up once per forward (a core layer's lookup serves
// every loop) and passes it in.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const sweeps::ModelConfig& config, bool has_value_embedding);
  // qkv_weight: attention->qkv_weight(), or undefined to stack it here. Returns the stream with
  // the MLP's output pending.
  ResidualStream forward(const ResidualStream& in,
                         const torch::Tensor& value_embedding,
                         const torch::Tensor& qkv_weight,
                         const RotaryTable& rope,
                         KernelPath path);
  // VE[ids], (batch, seq, H*hd); undefined when this block has no table.
  torch::Tensor lookup_value_embedding(const torch::Tensor& ids, KernelPath path);

  RMSNorm attention_norm{nullptr}, mlp_norm{nullptr};
  Attention attention{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Embedding value_embedding{nullptr};
};
TORCH_MODULE(Block);

// How the loop state h and the prelude output e combine before each pass of the core
// (parcae.md §5.2):
//   diagonal: u = a * h + b, a = exp(-Delta * exp(log_a)), b = Delta * (e B^T),
//             Delta = softplus(dt_bias)      (unconstrained: exp(log_a) -> a_raw)
//   linear:   u = [h; e] W_adp^T             (W_adp: (d, 2d))
//   add:      u = h + e
class LoopInjectionImpl : public torch::nn::Module {
 public:
  LoopInjectionImpl(const sweeps::ModelConfig& config, bool unconstrained_decay);

  // What does not change across loops, computed once per forward with autograd on
  // (parcae.md §2 step 5 DECISION).
  struct Constants {
    torch::Tensor decay;  // a, (d); diagonal only
    torch::Tensor input;  // b, (batch, seq, d) for diagonal; e for linear and add
  };
  Constants constants(const torch::Tensor& e);
  torch::Tensor apply(const torch::Tensor& h, const Constants& constants);
  // a per channel, (d): the diagonal of A-bar; ones for `add` (A-bar = I); undefined for
  // `linear`, which has no diagonal A-bar.
  torch::Tensor decay();
  // log a per channel in fp64, computed as -Delta * rate so that it stays exact where a rounds
  // to 1 in fp32; zeros for `add`; undefined for `linear`. log rho(A-bar) is its maximum.
  torch::Tensor log_decay();

  sweeps::Injection kind;
  bool unconstrained;
  torch::Tensor log_a;                 // (d), diagonal constrained; A = -exp(log_a)
  torch::Tensor a_raw;                 // (d), diagonal unconstrained; A = -a_raw
  torch::Tensor dt_bias;               // (d), Delta = softplus(dt_bias)
  torch::nn::Linear input{nullptr};    // B, (d, d)
  torch::nn::Linear adapter{nullptr};  // W_adp, (d, 2d)
};
TORCH_MODULE(LoopInjection);

struct ModelOutput {
  torch::Tensor logits;  // (batch, seq, V), fp32 (fp64 for a fp64 model)
  torch::Tensor state;   // h_T, (batch, seq, d); undefined for the Transformer
};

// The final-normed features the tied head reads, and h_T.
struct ModelFeatures {
  torch::Tensor features;  // (batch, seq, d), in the matrix-product dtype (bf16 under autocast)
  torch::Tensor state;     // h_T, (batch, seq, d); undefined for the Transformer
};

struct ModelLoss {
  torch::Tensor loss;   // 0-dim fp32 (fp64 for a fp64 model): mean or sum over every token
  torch::Tensor state;  // h_T; undefined for the Transformer
};

class LanguageModelImpl : public torch::nn::Module {
 public:
  explicit LanguageModelImpl(const sweeps::ModelConfig& config, const ModelOptions& options = {});

  // ids: (batch, seq) int64. For a looped model, `plan` gives each row's no-grad and graded
  // iterations and `initial_state` is h0, (batch, seq, d) in the model's dtype (see
  // sample_initial_state). The no-grad iterations run under NoGradGuard, then the autocast
  // cache is cleared, then the graded iterations run with autograd (parcae.md §6 batched
  // execution: a row whose iterations are done keeps its state). The Transformer ignores both.
  //
  // Each iteration runs only the rows that still loop: the rows are put in order of decreasing
  // depth (and back afterwards), so that those rows are a prefix of the batch, and the others
  // keep their state without being computed.
  ModelOutput forward(const torch::Tensor& ids,
                      const DepthPlan& plan,
                      const torch::Tensor& initial_state);
  // The same forward up to the final norm, without the logits.
  ModelFeatures features(const torch::Tensor& ids,
                         const DepthPlan& plan,
                         const torch::Tensor& initial_state);
  // Cross-entropy of the next-token predictions against targets (batch, seq), through
  // tied_head_cross_entropy: the fused path never holds the fp32 logits.
  ModelLoss loss(const torch::Tensor& ids,
                 const torch::Tensor& targets,
                 const DepthPlan& plan,
                 const torch::Tensor& initial_state,
                 LossReduction reduction = LossReduction::kMean);
  // The kernel path this model uses on its current device.
  KernelPath kernel_path() const;

  // Loop iterations computed by forwards since reset_loop_work(), summed over rows: the work the
  // hardware did, beside the plan's depths (rows masked back to their state count as computed).
  struct LoopWork {
    int64_t rows = 0;
    int64_t iterations = 0;         // no-grad and graded
    int64_t graded_iterations = 0;  // graded only
  };
  LoopWork loop_work() const { return loop_work_; }
  void reset_loop_work() { loop_work_ = {}; }

  // h0 ~ TruncNormal(0, sigma0^2, cut at +-3 sigma0), sigma0 = sqrt(2/(5d)), (rows, seq, d),
  // drawn from `generator` (which must live on the model's device).
  torch::Tensor sample_initial_state(int64_t rows, int64_t seq, at::Generator& generator) const;

  int64_t parameter_count() const;
  const sweeps::ModelConfig& config() const { return config_; }
  torch::Device device() const { return embedding->weight.device(); }
  torch::Dtype dtype() const { return embedding->weight.scalar_type(); }

  torch::nn::Embedding embedding{nullptr};  // W_E, (V, d), tied to the head
  std::vector<Block> blocks;                // Transformer
  std::vector<Block> prelude, core, coda;   // looped
  RMSNorm prelude_norm{nullptr};            // looped with prelude_norm on
  LoopInjection injection{nullptr};
  torch::nn::Linear readout{nullptr};  // C, (d, d)
  RMSNorm final_norm{nullptr};

 private:
  void initialize();
  torch::Tensor final_features(const ResidualStream& y);
  const RotaryTable& rotary_table(int64_t seq, torch::Device device, torch::Dtype dtype);

  sweeps::ModelConfig config_;
  std::optional<KernelPath> kernels_;
  LoopWork loop_work_;
  // RoPE tables by (seq, device, dtype), made once: a table made anew would be copied from the
  // host on every forward, and such a copy waits for the GPU to finish its queued work.
  std::map<std::tuple<int64_t, std::string, int>, RotaryTable> rotary_tables_;
};
TORCH_MODULE(LanguageModel);

// True for the Muon group of parcae.md §8: the 2-D weights inside blocks (Wq, Wk, Wv, Wo, W1,
// W2, W_g), not the VE tables. Everything else goes to AdamW.
bool is_muon_parameter(const std::string& name, const torch::Tensor& parameter);

}  // namespace parcae::trainer
