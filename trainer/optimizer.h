// The optimizer of parcae.md §8: Muon (Nesterov momentum, Polar-Express orthogonalisation,
// factored second moment, cautious weight decay) for the hidden 2-D matrices and the VE gates,
// bias-corrected AdamW for everything else, the trapezoid schedule, and global-norm clipping.
//
// [R] `recpre/optim/muon_adamw.py` is the reference. Steps are 0-based here: the first
// optimizer step is step 0 (events number it 1), as in [R]'s schedules.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "sweeps/job_config.h"
#include "trainer/fused_ops.h"

namespace parcae::trainer {

inline constexpr int kPolarExpressIterations = 5;
// (a, b, c) per iteration (Amsel et al. 2025, as in [R]).
// clang-format off
inline constexpr std::array<std::array<double, 3>, kPolarExpressIterations> kPolarExpressCoefficients = {{
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
}};
// clang-format on
inline constexpr double kMuonMomentumStart = 0.85;
inline constexpr double kMuonMomentumEnd = 0.95;
inline constexpr int64_t kMuonMomentumRampSteps = 300;
inline constexpr double kMuonBeta2 = 0.95;  // factored second moment

// Learning-rate multiplier and the other per-step schedules of parcae.md §8.
struct Schedule {
  int64_t max_steps = 1;
  double cooldown_fraction = 0.5;
  int warmup_steps = 0;

  // Trapezoid: min(1, (max_steps - step) / cooldown), cooldown = floor(fraction * max_steps);
  // 1 when cooldown is 0. With warmup_steps > 0 (not used by the paper), (step + 1) / warmup
  // before that.
  double lr_multiplier(int64_t step) const;
  // Muon momentum mu, linear from 0.85 to 0.95 over the first 300 steps.
  static double muon_momentum(int64_t step);
  // lambda = base * (1 - step / max_steps).
  double muon_weight_decay(double base, int64_t step) const;
};

struct NamedParameter {
  std::string name;
  torch::Tensor tensor;
};

// Polar-Express orthogonalisation of a 2-D matrix, or of each matrix of a (batch, rows, cols)
// stack, in `dtype` arithmetic (bf16 on the GPU, fp32 on the CPU): X = g / (1.02 ||g||_F + 1e-6),
// then `iterations` steps
//   wide or square: A = X X^T; X = a X + (b A + c A^2) X
//   tall:           A = X^T X; X = a X + X (b A + c A^2)
// Returns X in `dtype`; its singular values lie near 1. A stack costs three batched matrix
// products an iteration, whatever its batch.
torch::Tensor polar_express(const torch::Tensor& g,
                            torch::Dtype dtype,
                            int iterations = kPolarExpressIterations);

// Scales all gradients by max_norm / (norm + 1e-6) when their global L2 norm exceeds max_norm
// (max_norm <= 0 disables clipping). Returns the norm before clipping as a one-element fp32
// tensor on the gradients' device, never read back here, so that the host does not wait for the
// GPU; a non-finite norm leaves the gradients untouched, and the caller skips the step.
torch::Tensor clip_gradient_norm(const std::vector<torch::Tensor>& parameters, double max_norm);

// Muon's last stage for a group of same-shape weights: with u = factor * x[k] (x stacked
// (weights, rows, cols), factor (weights, rows, 1) or (weights, 1, cols)),
//   w_k <- w_k - (eta * u + eta_decay * w_k * [u * w_k >= 0]),
// the update and the cautious weight decay, in place. The fused path is one CUDA kernel on the
// GPU; elsewhere, and on the ATen path, the same formula in ATen.
// `apply`, when defined, is a one-element fp32 tensor on the weights' device: 0 leaves them as
// they are. `weight_table`, when given, keeps the fused path's device table of weight addresses
// from one call to the next.
void apply_muon_update(const std::vector<torch::Tensor>& weights,
                       const torch::Tensor& x,
                       const torch::Tensor& factor,
                       double eta,
                       double eta_decay,
                       KernelPath path,
                       const torch::Tensor& apply = {},
                       WeightTable* weight_table = nullptr);

// The learning rates and Muon settings in force at one step.
struct StepHyperparameters {
  double lr_adamw = 0.0;
  double lr_muon = 0.0;
  double muon_momentum = 0.0;
  double muon_weight_decay = 0.0;
};

class MuonAdamW {
 public:
  // `parameters` in model order; the Muon group is those for which is_muon_parameter() holds.
  // `orthogonalization_dtype` is kBFloat16 on the GPU and kFloat on the CPU; `kernels` picks
  // the fused weight update (a CUDA kernel on the GPU) or its ATen composition.
  MuonAdamW(const std::vector<NamedParameter>& parameters,
            const sweeps::TrainingConfig& config,
            int64_t max_steps,
            torch::Dtype orthogonalization_dtype,
            KernelPath kernels = KernelPath::kFused);

  StepHyperparameters hyperparameters(int64_t step) const;
  // Applies one update from the current gradients at 0-based `step`. Parameters without a
  // gradient are left alone. `apply`, when defined, is a one-element fp32 tensor, 1 to update and
  // 0 to skip the step (a non-finite loss or gradient norm): on the GPU it is read there, by the
  // update kernels, so that deciding to skip costs the host no wait; elsewhere it is read first.
  void step(int64_t step, const torch::Tensor& apply = {});

  // State under nested archives "adamw" and "muon", one entry per parameter with its name, so a
  // checkpoint from another model is refused on load (TORCH_CHECK naming the parameter).
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

  // AdamW updates applied so far (t of the bias correction); reads the GPU's count back.
  int64_t adamw_steps() const;

  const std::vector<NamedParameter>& adamw_parameters() const { return adamw_; }
  const std::vector<NamedParameter>& muon_parameters() const { return muon_; }

 private:
  struct AdamState {
    torch::Tensor m;
    torch::Tensor v;
  };
  struct MuonState {
    torch::Tensor momentum;       // same shape as the weight; a view into its group's stack
    torch::Tensor second_moment;  // (rows, 1) when rows >= cols, else (1, cols); likewise
  };
  // Muon parameters of one shape, updated together: their state stacked along a first dim.
  struct MuonGroup {
    std::vector<size_t> members;  // indices into muon_
    torch::Tensor momentum;       // (members, rows, cols)
    torch::Tensor second_moment;  // (members, rows, 1) or (members, 1, cols)
    WeightTable weight_table;     // the members' addresses, for the fused update
  };

  void adamw_step(const StepHyperparameters& hp, const torch::Tensor& apply);
  void muon_step(const StepHyperparameters& hp, MuonGroup& group, const torch::Tensor& apply);

  sweeps::TrainingConfig config_;
  Schedule schedule_;
  torch::Dtype orthogonalization_dtype_;
  KernelPath kernels_;
  std::vector<NamedParameter> adamw_;
  std::vector<NamedParameter> muon_;
  std::vector<AdamState> adam_state_;
  std::vector<MuonState> muon_state_;
  std::vector<MuonGroup> muon_groups_;
  int64_t adamw_steps_ = 0;  // t of the bias correction: updates applied so far
  // The same count on the GPU, where the fused AdamW reads it and a skipped step leaves it;
  // undefined until the first fused step, and again after a load.
  torch::Tensor adamw_step_count_;
};

}  // namespace parcae::trainer
