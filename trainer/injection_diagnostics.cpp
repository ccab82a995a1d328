// Power iteration for log rho(A-bar) of the linear (RDM) injection.
#include "trainer/injection_diagnostics.h"

#include <cmath>
#include <limits>
#include <vector>

#include "trainer/sampling.h"

namespace parcae::trainer {

double log_spectral_radius(const torch::Tensor& matrix, uint64_t seed) {
  TORCH_CHECK(matrix.dim() == 2 && matrix.size(0) == matrix.size(1),
              "log_spectral_radius needs a square matrix, got ",
              matrix.sizes());
  torch::NoGradGuard no_grad;
  const torch::Tensor m = matrix.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t d = m.size(0);
  // A dense start vector from the seed: almost surely not orthogonal to the dominant eigenspace.
  std::vector<double> start(static_cast<size_t>(d));
  SplitMix64 rng(seed);
  for (auto& value : start)
    value = rng.uniform() - 0.5;
  torch::Tensor x = torch::tensor(start, torch::kDouble);
  x /= x.norm();
  double log_growth = 0.0;
  for (int k = 0; k < kSpectralIterations; ++k) {
    torch::Tensor y = torch::mv(m, x);
    const double norm = y.norm().item<double>();
    if (norm == 0.0)
      return -std::numeric_limits<double>::infinity();
    if (k >= kSpectralBurnIn)
      log_growth += std::log(norm);
    x = y / norm;
  }
  return log_growth / static_cast<double>(kSpectralIterations - kSpectralBurnIn);
}

double adapter_log_spectral_radius(const LoopInjectionImpl& injection, uint64_t seed) {
  TORCH_CHECK(injection.kind == sweeps::Injection::kLinear && injection.adapter,
              "adapter_log_spectral_radius needs the linear injection");
  const torch::Tensor& w = injection.adapter->weight;  // W_adp, (d, 2d): [W_h, W_e]
  return log_spectral_radius(w.narrow(1, 0, w.size(0)), seed);
}

}  // namespace parcae::trainer
