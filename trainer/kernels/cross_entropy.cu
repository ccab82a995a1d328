// Softmax cross-entropy over bf16 logits, one block per row: an online max and sum of exp in one
// read, the loss, and (for training) the gradient written over the logits in a second read, so
// that no fp32 copy of the logits and no separate log-softmax exist. The second read of a row
// (64 KiB at a 32,768-token vocabulary) is served mostly by L2.
#include <cmath>

#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::bf16_to_float;
using detail::float_to_bf16;

constexpr int kMaxThreads = 256;
constexpr int kPerVector = 8;

// Running (max, sum of exp(x - max)) of a stream of values.
struct SoftmaxState {
  float max;
  float sum;
};

__device__ __forceinline__ void absorb(SoftmaxState& state, float x) {
  if (x > state.max) {
    state.sum = state.sum * __expf(state.max - x) + 1.0f;
    state.max = x;
  } else {
    state.sum += __expf(x - state.max);
  }
}

__device__ __forceinline__ SoftmaxState merge(SoftmaxState a, SoftmaxState b) {
  if (a.max == -INFINITY)
    return b;
  if (b.max == -INFINITY)
    return a;
  const float max = fmaxf(a.max, b.max);
  return {max, a.sum * __expf(a.max - max) + b.sum * __expf(b.max - max)};
}

template <bool kVectorized>
__global__ void softmax_cross_entropy_kernel(uint16_t* __restrict__ logits,
                                             const int64_t* __restrict__ targets,
                                             float* __restrict__ losses,
                                             int64_t vocab,
                                             float grad_scale,
                                             bool write_gradient) {
  __shared__ SoftmaxState partial[kMaxThreads / 32];
  __shared__ float shared_lse;
  const int64_t row = blockIdx.x;
  uint16_t* x = logits + row * vocab;
  const int64_t target = targets[row];
  const bool valid = target >= 0 && target < vocab;
  // Read before any thread of the block can overwrite the row with its gradient.
  const float target_logit = valid ? bf16_to_float(x[target]) : NAN;

  SoftmaxState state{-INFINITY, 0.0f};
  if (kVectorized) {
    for (int64_t v = threadIdx.x; v < vocab / kPerVector; v += blockDim.x) {
      const uint4 in = reinterpret_cast<const uint4*>(x)[v];
      const uint16_t* a = reinterpret_cast<const uint16_t*>(&in);
#pragma unroll
      for (int j = 0; j < kPerVector; ++j)
        absorb(state, bf16_to_float(a[j]));
    }
  } else {
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
      absorb(state, bf16_to_float(x[i]));
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const SoftmaxState other{__shfl_xor_sync(0xffffffffu, state.max, offset),
                             __shfl_xor_sync(0xffffffffu, state.sum, offset)};
    state = merge(state, other);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0)
    partial[warp] = state;
  __syncthreads();
  if (threadIdx.x == 0) {
    SoftmaxState total{-INFINITY, 0.0f};
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w)
      total = merge(total, partial[w]);
    const float lse = total.max + logf(total.sum);
    shared_lse = lse;
    losses[row] = valid ? lse - target_logit : NAN;
  }
  __syncthreads();
  if (!write_gradient)
    return;
  const float lse = shared_lse;
  if (kVectorized) {
    for (int64_t v = threadIdx.x; v < vocab / kPerVector; v += blockDim.x) {
      uint4 io = reinterpret_cast<const uint4*>(x)[v];
      uint16_t* a = reinterpret_cast<uint16_t*>(&io);
#pragma unroll
      for (int j = 0; j < kPerVector; ++j) {
        const int64_t i = v * kPerVector + j;
        const float p = __expf(bf16_to_float(a[j]) - lse);
        a[j] = float_to_bf16(grad_scale * (p - (i == target ? 1.0f : 0.0f)));
      }
      reinterpret_cast<uint4*>(x)[v] = io;
    }
  } else {
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float p = __expf(bf16_to_float(x[i]) - lse);
      x[i] = float_to_bf16(grad_scale * (p - (i == target ? 1.0f : 0.0f)));
    }
  }
}

}  // namespace

cudaError_t softmax_cross_entropy(uint16_t* logits,
                                  const int64_t* targets,
                                  float* losses,
                                  int64_t rows,
                                  int64_t vocab,
                                  float grad_scale,
                                  bool write_gradient,
                                  cudaStream_t stream) {
  if (rows == 0)
    return cudaSuccess;
  if (rows > 0x7fffffff || vocab <= 0)
    return cudaErrorInvalidValue;
  const bool vectorized = vocab % kPerVector == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;
  // Enough threads for one vector each where the vocabulary is small, in whole warps.
  const int64_t work = vectorized ? vocab / kPerVector : vocab;
  int threads = 32;
  while (threads < kMaxThreads && threads < work)
    threads *= 2;
  const dim3 grid(static_cast<unsigned>(rows));
  if (vectorized) {
    softmax_cross_entropy_kernel<true>
        <<<grid, threads, 0, stream>>>(logits, targets, losses, vocab, grad_scale, write_gradient);
  } else {
    softmax_cross_entropy_kernel<false>
        <<<grid, threads, 0, stream>>>(logits, targets, losses, vocab, grad_scale, write_gradient);
  }
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
