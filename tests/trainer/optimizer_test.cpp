// The optimizer against parcae.md §8: Polar-Express output is near-orthogonal, AdamW and Muon
// steps equal the spec's formulas on toy tensors, the trapezoid schedule and Muon's momentum
// and weight-decay schedules take their stated values, and clipping scales to the bound.
#include "trainer/optimizer.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace parcae::trainer {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Singular values of Polar-Express output for a Gaussian matrix.
torch::Tensor polar_singular_values(int64_t rows, int64_t cols, torch::Dtype dtype) {
  torch::manual_seed(rows * 100 + cols);
  const torch::Tensor g = torch::randn({rows, cols});
  return at::linalg_svdvals(polar_express(g, dtype).to(torch::kDouble));
}

// The coefficients (Amsel et al. 2025) are tuned to bring every singular value above ~1e-3 of
// the largest into a band around 1 in five iterations, not exactly onto 1. A rectangular
// Gaussian matrix (aspect 4) has all its singular values within a factor ~3 of each other, and
// they land in [0.86, 1.14]; a square one has some near zero, which come out lower (0.65 for
// this seed) but still well away from it. Exact orthogonality would be 1 everywhere.
TEST(PolarExpress, OutputIsNearOrthogonalForTallWideAndSquareMatrices) {
  for (const auto& [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{128, 32}, {32, 128}, {96, 24}}) {
    const torch::Tensor s = polar_singular_values(rows, cols, torch::kFloat);
    EXPECT_GT(s.min().item<double>(), 0.8) << rows << "x" << cols;
    EXPECT_LT(s.max().item<double>(), 1.2) << rows << "x" << cols;
  }
  const torch::Tensor square = polar_singular_values(64, 64, torch::kFloat);
  EXPECT_GT(square.min().item<double>(), 0.5);
  EXPECT_LT(square.max().item<double>(), 1.2);
  // Without the iterations the spectrum is the normalised input's: far from orthogonal.
  const torch::Tensor raw = polar_express(torch::randn({128, 32}), torch::kFloat, 0);
  EXPECT_LT(at::linalg_svdvals(raw).max().item<double>(), 1.0 / 1.02 + 1e-6);
  EXPECT_LT(at::linalg_svdvals(raw).min().item<double>(), 0.3);
}

TEST(PolarExpress, Bf16ArithmeticStaysInTheSameBand) {
  const torch::Tensor s = polar_singular_values(64, 32, torch::kBFloat16);
  EXPECT_GT(s.min().item<double>(), 0.75);
  EXPECT_LT(s.max().item<double>(), 1.2);
}

// The iteration of Amsel et al., written out with plain products in double precision.
torch::Tensor polar_express_reference(const torch::Tensor& g) {
  torch::Tensor x = g / (at::linalg_vector_norm(g, 2) * 1.02 + 1e-6);
  const bool tall = g.size(0) > g.size(1);
  for (const auto& [a, b, c] : kPolarExpressCoefficients) {
    const torch::Tensor gram = tall ? x.t().mm(x) : x.mm(x.t());
    const torch::Tensor poly = b * gram + c * gram.mm(gram);
    x = a * x + (tall ? x.mm(poly) : poly.mm(x));
  }
  return x;
}

TEST(PolarExpress, EqualsTheIterationWrittenOutInDoublePrecision) {
  torch::manual_seed(5);
  for (const auto& [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{24, 8}, {8, 24}, {12, 12}}) {
    const torch::Tensor g = torch::randn({rows, cols}, kDouble);
    const torch::Tensor ours = polar_express(g, torch::kDouble);
    EXPECT_LT((ours - polar_express_reference(g)).abs().max().item<double>(), 1e-12)
        << rows << "x" << cols;
    // A stack of matrices is the same as each alone.
    const torch::Tensor stacked = polar_express(torch::stack({g, 2.0 * g}), torch::kDouble);
    EXPECT_LT((stacked[0] - ours).abs().max().item<double>(), 1e-12);
  }
}

TEST(PolarExpress, ScalingTheInputDoesNotChangeTheOutput) {
  torch::manual_seed(2);
  const torch::Tensor g = torch::randn({16, 8}, kDouble);
  const torch::Tensor a = polar_express(g, torch::kDouble);
  const torch::Tensor b = polar_express(g * 1000.0, torch::kDouble);
  // Only the 1e-6 guard in the normaliser sees the scale: a relative effect of ~1e-7.
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
}

TEST(Schedule, TheTrapezoidHoldsThenDecaysLinearlyToZero) {
  Schedule schedule;
  schedule.max_steps = 10;
  schedule.cooldown_fraction = 0.5;
  const std::vector<double> expected = {1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2};
  for (int64_t step = 0; step < 10; ++step) {
    EXPECT_NEAR(schedule.lr_multiplier(step), expected[static_cast<size_t>(step)], 1e-15)
        << "step " << step;
  }
  // parcae.md §11: 1,402 steps at 1e18 FLOPs for Parcae-140M, of which 701 are cooldown.
  schedule.max_steps = 1402;
  EXPECT_EQ(schedule.lr_multiplier(701), 1.0);
  EXPECT_NEAR(schedule.lr_multiplier(702), 700.0 / 701.0, 1e-15);
  EXPECT_NEAR(schedule.lr_multiplier(1401), 1.0 / 701.0, 1e-15);
  schedule.cooldown_fraction = 0.0;
  EXPECT_EQ(schedule.lr_multiplier(1401), 1.0);
}

TEST(Schedule, OptionalWarmupRampsUpFirst) {
  Schedule schedule;
  schedule.max_steps = 100;
  schedule.warmup_steps = 4;
  EXPECT_NEAR(schedule.lr_multiplier(0), 0.25, 1e-15);
  EXPECT_NEAR(schedule.lr_multiplier(3), 1.0, 1e-15);
}

TEST(Schedule, MuonMomentumRampsAndWeightDecayFallsLinearly) {
  EXPECT_NEAR(Schedule::muon_momentum(0), 0.85, 1e-15);
  EXPECT_NEAR(Schedule::muon_momentum(150), 0.90, 1e-15);
  EXPECT_NEAR(Schedule::muon_momentum(300), 0.95, 1e-15);
  EXPECT_NEAR(Schedule::muon_momentum(5000), 0.95, 1e-15);
  Schedule schedule;
  schedule.max_steps = 10;
  EXPECT_NEAR(schedule.muon_weight_decay(0.2, 0), 0.2, 1e-15);
  EXPECT_NEAR(schedule.muon_weight_decay(0.2, 5), 0.1, 1e-15);
  EXPECT_NEAR(schedule.muon_weight_decay(0.2, 9), 0.02, 1e-15);
}

sweeps::TrainingConfig toy_config() {
  sweeps::TrainingConfig config;
  config.adamw_lr = 0.1;
  config.muon_lr = 0.01;
  config.cooldown_fraction = 0.0;  // constant learning rates
  return config;
}

TEST(AdamW, TwoStepsFollowTheBiasCorrectedFormula) {
  torch::Tensor p = torch::tensor({1.0, -2.0, 0.5}, kDouble).requires_grad_(true);
  MuonAdamW optimizer({{"final_norm.weight", p}}, toy_config(), 10, torch::kDouble);
  ASSERT_EQ(optimizer.adamw_parameters().size(), 1u);
  ASSERT_TRUE(optimizer.muon_parameters().empty());

  // Known answer: the first bias-corrected step moves each coordinate by lr against its sign.
  const torch::Tensor g1 = torch::tensor({0.3, -0.1, 2.0}, kDouble);
  p.mutable_grad() = g1.clone();
  optimizer.step(0);
  EXPECT_NEAR(p[0].item<double>(), 0.9, 1e-9);
  EXPECT_NEAR(p[1].item<double>(), -1.9, 1e-9);
  EXPECT_NEAR(p[2].item<double>(), 0.4, 1e-9);

  const torch::Tensor g2 = torch::tensor({-0.3, 0.2, 1.0}, kDouble);
  const torch::Tensor p1 = p.detach().clone();
  p.mutable_grad() = g2.clone();
  optimizer.step(1);
  const double b1 = 0.8, b2 = 0.95, eps = 1e-10, lr = 0.1;
  const torch::Tensor m = b1 * (1 - b1) * g1 + (1 - b1) * g2;
  const torch::Tensor v = b2 * (1 - b2) * g1 * g1 + (1 - b2) * g2 * g2;
  const torch::Tensor expected = p1 - lr * (m / (1 - b1 * b1)) / ((v / (1 - b2 * b2)).sqrt() + eps);
  EXPECT_LT((p.detach() - expected).abs().max().item<double>(), 1e-14);
}

// parcae.md §8's Muon step written out directly, for one matrix with momentum buffer m and
// second moment v (updated in place).
torch::Tensor reference_muon_step(const torch::Tensor& p,
                                  const torch::Tensor& g,
                                  torch::Tensor& m,
                                  torch::Tensor& v,
                                  double mu,
                                  double lr,
                                  double lambda) {
  m = m + (1 - mu) * (g - m);
  const torch::Tensor u = g + mu * (m - g);
  torch::Tensor x = u / (1.02 * u.norm() + 1e-6);
  for (const auto& [a, b, c] : kPolarExpressCoefficients) {
    if (x.size(0) > x.size(1)) {
      const torch::Tensor gram = x.t().mm(x);
      x = a * x + x.mm(b * gram + c * gram.mm(gram));
    } else {
      const torch::Tensor gram = x.mm(x.t());
      x = a * x + (b * gram + c * gram.mm(gram)).mm(x);
    }
  }
  const int64_t reduce = x.size(0) >= x.size(1) ? 1 : 0;
  v = v + (1 - 0.95) * (x.square().mean(reduce, true) - v);
  const torch::Tensor scaled = x * v.clamp_min(1e-10).rsqrt();
  x = scaled * x.norm() / scaled.norm();
  const double eta =
      lr *
      std::sqrt(std::max(1.0, static_cast<double>(x.size(0)) / static_cast<double>(x.size(1))));
  return p - eta * x - eta * lambda * p * (x * p >= 0).to(torch::kDouble);
}

void expect_muon_matches_reference(int64_t rows, int64_t cols) {
  torch::manual_seed(rows + cols);
  torch::Tensor p = (0.1 * torch::randn({rows, cols}, kDouble)).requires_grad_(true);
  MuonAdamW optimizer({{"core.0.mlp.up.weight", p}}, toy_config(), 10, torch::kDouble);
  ASSERT_EQ(optimizer.muon_parameters().size(), 1u);
  torch::Tensor expected = p.detach().clone();
  torch::Tensor m = torch::zeros({rows, cols}, kDouble);
  torch::Tensor v =
      rows >= cols ? torch::zeros({rows, 1}, kDouble) : torch::zeros({1, cols}, kDouble);
  for (int64_t step = 0; step < 3; ++step) {
    const torch::Tensor g = torch::randn({rows, cols}, kDouble);
    p.mutable_grad() = g.clone();
    optimizer.step(step);
    expected = reference_muon_step(expected,
                                   g,
                                   m,
                                   v,
                                   Schedule::muon_momentum(step),
                                   0.01,
                                   0.2 * (1.0 - static_cast<double>(step) / 10.0));
    EXPECT_LT((p.detach() - expected).abs().max().item<double>(), 1e-13)
        << rows << "x" << cols << " step " << step;
  }
}

TEST(Muon, StepsFollowTheSpecOnTallWideAndSquareMatrices) {
  expect_muon_matches_reference(8, 4);  // tall: eta = lr * sqrt(2), one v per row
  expect_muon_matches_reference(4, 8);  // wide: eta = lr, one v per column
  expect_muon_matches_reference(6, 6);  // square: one v per row
}

TEST(Muon, CautiousWeightDecayOnlyShrinksWeightsThatAgreeWithTheUpdate) {
  // Two optimizers see the same gradient, one with lambda = 0.5 and one without. Their results
  // differ by -eta * lambda * p exactly where the update x and the weight p agree in sign.
  torch::manual_seed(4);
  const torch::Tensor p0 = torch::randn({4, 4}, kDouble);
  const torch::Tensor g = torch::randn({4, 4}, kDouble);
  sweeps::TrainingConfig with_decay = toy_config(), without_decay = toy_config();
  with_decay.muon_weight_decay = 0.5;
  without_decay.muon_weight_decay = 0.0;
  torch::Tensor a = p0.clone().requires_grad_(true), b = p0.clone().requires_grad_(true);
  MuonAdamW decayed({{"blocks.0.attention.query.weight", a}}, with_decay, 1000, torch::kDouble);
  MuonAdamW plain({{"blocks.0.attention.query.weight", b}}, without_decay, 1000, torch::kDouble);
  a.mutable_grad() = g.clone();
  b.mutable_grad() = g.clone();
  decayed.step(0);
  plain.step(0);
  const double eta = 0.01;  // square: sqrt(max(1, rows / cols)) = 1
  const torch::Tensor x = (p0 - b.detach()) / eta;
  const torch::Tensor agree = (x * p0 >= 0).to(torch::kDouble);
  EXPECT_LT((a.detach() - b.detach() + eta * 0.5 * p0 * agree).abs().max().item<double>(), 1e-15);
  EXPECT_GT(agree.sum().item<double>(), 0.0);
  EXPECT_LT(agree.sum().item<double>(), 16.0);
}

TEST(Clipping, GradientsAboveTheBoundAreScaledToIt) {
  torch::Tensor a = torch::zeros({1}, kDouble).requires_grad_(true);
  torch::Tensor b = torch::zeros({1}, kDouble).requires_grad_(true);
  a.mutable_grad() = torch::tensor({3.0}, kDouble);
  b.mutable_grad() = torch::tensor({4.0}, kDouble);
  EXPECT_NEAR(clip_gradient_norm({a, b}, 1.0).item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(a.grad().item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(b.grad().item<double>(), 0.8, 1e-6);
  EXPECT_NEAR(
      clip_gradient_norm({a, b}, 2.0).item<double>(), 1.0, 1e-6);  // below the bound: unchanged
  EXPECT_NEAR(a.grad().item<double>(), 0.6, 1e-6);
  b.mutable_grad() = torch::tensor({std::nan("")}, kDouble);
  EXPECT_TRUE(std::isnan(clip_gradient_norm({a, b}, 1.0).item<double>()));
  EXPECT_NEAR(a.grad().item<double>(), 0.6, 1e-6);  // a non-finite norm leaves gradients alone
}

// Two optimizers over the same Muon matrices (two of one shape, one of another) and AdamW
// vectors: one takes steps 0 and 1 ungated; the other takes step 0 with a gate of 1, then sees
// non-finite gradients at step 1 with the gate its trainer computes for them (0), then step 1
// again with a gate of 1. A gate of 1 changes nothing and a gate of 0 leaves every weight, moment
// and step count as it was, so both end bitwise equal.
void expect_gated_steps_skip_exactly(torch::Device device,
                                     torch::Dtype orthogonalization,
                                     KernelPath kernels) {
  torch::manual_seed(21);
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"core.0.mlp.up.weight", {16, 8}},
      {"core.1.mlp.up.weight", {16, 8}},
      {"core.0.attention.query.weight", {8, 8}},
      {"final_norm.weight", {8}}};
  std::vector<torch::Tensor> initial, ungated, gated;
  std::vector<NamedParameter> ungated_named, gated_named;
  for (const auto& [name, shape] : shapes) {
    initial.push_back(0.1 * torch::randn(shape, options));
    ungated.push_back(initial.back().clone().requires_grad_(true));
    gated.push_back(initial.back().clone().requires_grad_(true));
    ungated_named.push_back({name, ungated.back()});
    gated_named.push_back({name, gated.back()});
  }
  MuonAdamW plain(ungated_named, toy_config(), 10, orthogonalization, kernels);
  MuonAdamW gate(gated_named, toy_config(), 10, orthogonalization, kernels);
  ASSERT_EQ(plain.muon_parameters().size(), 3u);
  ASSERT_EQ(plain.adamw_parameters().size(), 1u);
  auto set_gradients = [](std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& g) {
    for (size_t i = 0; i < params.size(); ++i)
      params[i].mutable_grad() = g[i].clone();
  };
  std::vector<std::vector<torch::Tensor>> gradients(2);
  for (auto& step_gradients : gradients) {
    for (const torch::Tensor& p : initial)
      step_gradients.push_back(torch::randn(p.sizes(), options));
  }
  const torch::Tensor one = torch::ones({}, options), zero = torch::zeros({}, options);

  for (int64_t step = 0; step < 2; ++step) {
    set_gradients(ungated, gradients[static_cast<size_t>(step)]);
    plain.step(step);
  }
  set_gradients(gated, gradients[0]);
  gate.step(0, one);
  std::vector<torch::Tensor> before;
  for (const torch::Tensor& p : gated)
    before.push_back(p.detach().clone());
  std::vector<torch::Tensor> poisoned;
  for (const torch::Tensor& g : gradients[1])
    poisoned.push_back(g.clone());
  poisoned[0][0][0] = std::nan("");
  poisoned[2][1][1] = std::numeric_limits<double>::infinity();
  set_gradients(gated, poisoned);
  const torch::Tensor norm = clip_gradient_norm(gated, 1.0);
  const torch::Tensor apply = torch::isfinite(norm).to(torch::kFloat);
  EXPECT_EQ(apply.item<double>(), 0.0);
  gate.step(1, apply);
  for (size_t i = 0; i < gated.size(); ++i)
    EXPECT_TRUE(torch::equal(gated[i].detach(), before[i])) << shapes[i].first;
  EXPECT_EQ(gate.adamw_steps(), 1);
  set_gradients(gated, gradients[1]);
  gate.step(1, one);

  EXPECT_EQ(plain.adamw_steps(), 2);
  EXPECT_EQ(gate.adamw_steps(), 2);
  for (size_t i = 0; i < gated.size(); ++i) {
    EXPECT_FALSE(torch::equal(gated[i].detach(), initial[i])) << shapes[i].first;
    EXPECT_TRUE(torch::equal(gated[i].detach(), ungated[i].detach())) << shapes[i].first;
  }
}

TEST(StepGate, ZeroSkipsTheStepAndOneChangesNothing) {
  expect_gated_steps_skip_exactly(torch::kCPU, torch::kFloat, KernelPath::kFused);
}

#if PARCAE_WITH_CUDA
// On the GPU the gate is read by the update kernels themselves, on both kernel paths.
TEST(StepGate, ZeroSkipsTheStepAndOneChangesNothingOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  for (const KernelPath kernels : {KernelPath::kFused, KernelPath::kAten}) {
    SCOPED_TRACE(kernels == KernelPath::kFused ? "fused" : "aten");
    expect_gated_steps_skip_exactly(torch::Device(torch::kCUDA, 0), torch::kBFloat16, kernels);
  }
}
#endif

}  // namespace
}  // namespace parcae::trainer
