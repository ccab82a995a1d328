// The spectral radius of a looped model's state matrix A-bar for the injections that have no
// diagonal one: the step events carry log rho(A-bar) for every injection (docs/events.md), which
// [P] (appendix `stability.tex`) reads to tell stable from diverging loops. For the diagonal
// injection it is the largest log a (LoopInjectionImpl::log_decay); for `add` it is 0; for the
// linear (RDM) adapter u = W_h h + W_e e, with W_adp = [W_h, W_e], A-bar = W_h, an unconstrained
// dense (d, d) matrix whose radius is estimated here by power iteration.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "trainer/model.h"

namespace parcae::trainer {

// Power iterations per estimate, and the first of them whose growth is averaged.
inline constexpr int kSpectralIterations = 256;
inline constexpr int kSpectralBurnIn = 64;

// log rho(M) of a square matrix, by power iteration in fp64 on the CPU from a start vector drawn
// from `seed`: the mean of log(|M x_k| / |x_k|) over iterations kSpectralBurnIn ..
// kSpectralIterations. For a dominant real eigenvalue this converges geometrically; for a
// dominant complex pair (a real matrix's usual case) |M^k x| oscillates within a bounded factor
// around rho^k, so the mean growth is off by at most log(that factor) / (iterations averaged).
// A zero matrix gives -inf. Needs a square 2-D tensor.
double log_spectral_radius(const torch::Tensor& matrix, uint64_t seed);

// log rho(W_h) of a linear injection (W_h = the first d columns of W_adp). Needs kind kLinear.
double adapter_log_spectral_radius(const LoopInjectionImpl& injection, uint64_t seed);

}  // namespace parcae::trainer
