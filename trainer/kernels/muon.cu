// Muon's weight update for a stack of same-shape fp32 weights: one pass that reads the
// orthogonalised update and its per-row (or per-column) factor and rewrites each weight in place,
// instead of the ATen chain of stack, scale, compare, multiply, add and a subtract per weight.
#include <algorithm>

#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::load_float;

constexpr int kThreads = 256;

// Block (x, k) strides over the elements of matrix k. The products and the sum are rounded one
// at a time (no fused multiply-add), in the order of the ATen composition
//   u = x * factor; update = eta * u + (eta_decay * w) * [u * w >= 0]; w = w - update,
// so that both paths give the same fp32 weights.
template <typename X>
__global__ void muon_update_kernel(float* const* __restrict__ weights,
                                   const X* __restrict__ x,
                                   const float* __restrict__ factor,
                                   bool factor_per_row,
                                   int64_t rows,
                                   int64_t cols,
                                   float eta,
                                   float eta_decay,
                                   const float* __restrict__ apply) {
  if (apply != nullptr && *apply == 0.0f)
    return;  // a skipped step, decided on the GPU
  const int64_t k = blockIdx.y;
  const int64_t size = rows * cols;
  float* __restrict__ w = weights[k];
  const X* __restrict__ xk = x + k * size;
  const float* __restrict__ fk = factor + k * (factor_per_row ? rows : cols);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size;
       i += stride) {
    const float f = fk[factor_per_row ? i / cols : i % cols];
    const float u = __fmul_rn(load_float(xk + i), f);
    const float wi = w[i];
    const float decay = __fmul_rn(u, wi) >= 0.0f ? __fmul_rn(eta_decay, wi) : 0.0f;
    w[i] = __fsub_rn(wi, __fadd_rn(__fmul_rn(eta, u), decay));
  }
}

}  // namespace

cudaError_t muon_update(float* const* weights,
                        int64_t matrices,
                        const void* x,
                        Dtype x_dtype,
                        const float* factor,
                        bool factor_per_row,
                        int64_t rows,
                        int64_t cols,
                        float eta,
                        float eta_decay,
                        const float* apply,
                        int multiprocessors,
                        cudaStream_t stream) {
  if (matrices == 0 || rows * cols == 0)
    return cudaSuccess;
  if (matrices > 65535)
    return cudaErrorInvalidValue;
  // Enough blocks over all matrices to fill the GPU a few times, at least one per matrix.
  const int64_t per_matrix = (rows * cols + kThreads - 1) / kThreads;
  const int64_t wanted = (4 * static_cast<int64_t>(multiprocessors) + matrices - 1) / matrices;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, std::min(per_matrix, wanted))),
                  static_cast<unsigned>(matrices));
  if (x_dtype == Dtype::kBFloat16)
    muon_update_kernel<<<grid, kThreads, 0, stream>>>(weights,
                                                      static_cast<const uint16_t*>(x),
                                                      factor,
                                                      factor_per_row,
                                                      rows,
                                                      cols,
                                                      eta,
                                                      eta_decay,
                                                      apply);
  else
    muon_update_kernel<<<grid, kThreads, 0, stream>>>(weights,
                                                      static_cast<const float*>(x),
                                                      factor,
                                                      factor_per_row,
                                                      rows,
                                                      cols,
                                                      eta,
                                                      eta_decay,
                                                      apply);
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
