// ReLU^2 of the MLP, y = 0.5 relu(u)^2, and its gradient du = dy relu(u): one pass each over
// bf16 memory, eight values per thread and load.
#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::bf16_to_float;
using detail::float_to_bf16;

constexpr int kThreads = 256;
constexpr int kPerVector = 8;  // bf16 values in one 16-byte load

__device__ __forceinline__ float relu(float v) {
  return v > 0.0f ? v : 0.0f;
}

__global__ void relu_squared_forward_kernel(const uint16_t* __restrict__ u,
                                            uint16_t* __restrict__ y,
                                            int64_t n) {
  const int64_t vectors = n / kPerVector;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += stride) {
    const uint4 in = reinterpret_cast<const uint4*>(u)[i];
    const uint16_t* a = reinterpret_cast<const uint16_t*>(&in);
    uint4 out;
    uint16_t* b = reinterpret_cast<uint16_t*>(&out);
#pragma unroll
    for (int j = 0; j < kPerVector; ++j) {
      const float r = relu(bf16_to_float(a[j]));
      b[j] = float_to_bf16(0.5f * r * r);
    }
    reinterpret_cast<uint4*>(y)[i] = out;
  }
  // The tail of fewer than eight values, by the first threads.
  const int64_t tail =
      vectors * kPerVector + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tail < n && tail < (vectors + 1) * kPerVector) {
    const float r = relu(bf16_to_float(u[tail]));
    y[tail] = float_to_bf16(0.5f * r * r);
  }
}

__global__ void relu_squared_backward_kernel(const uint16_t* __restrict__ dy,
                                             const uint16_t* __restrict__ u,
                                             uint16_t* __restrict__ du,
                                             int64_t n) {
  const int64_t vectors = n / kPerVector;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += stride) {
    const uint4 g_in = reinterpret_cast<const uint4*>(dy)[i];
    const uint4 u_in = reinterpret_cast<const uint4*>(u)[i];
    const uint16_t* g = reinterpret_cast<const uint16_t*>(&g_in);
    const uint16_t* a = reinterpret_cast<const uint16_t*>(&u_in);
    uint4 out;
    uint16_t* b = reinterpret_cast<uint16_t*>(&out);
#pragma unroll
    for (int j = 0; j < kPerVector; ++j)
      b[j] = float_to_bf16(bf16_to_float(g[j]) * relu(bf16_to_float(a[j])));
    reinterpret_cast<uint4*>(du)[i] = out;
  }
  const int64_t tail =
      vectors * kPerVector + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tail < n && tail < (vectors + 1) * kPerVector)
    du[tail] = float_to_bf16(bf16_to_float(dy[tail]) * relu(bf16_to_float(u[tail])));
}

unsigned blocks_for(int64_t n) {
  const int64_t vectors = n / kPerVector + 1;
  const int64_t wanted = (vectors + kThreads - 1) / kThreads;
  return static_cast<unsigned>(wanted < 65536 ? wanted : 65536);
}

bool aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

cudaError_t relu_squared_forward(const uint16_t* u, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (!aligned(u) || !aligned(y))
    return cudaErrorMisalignedAddress;
  if (n == 0)
    return cudaSuccess;
  relu_squared_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(u, y, n);
  return cudaGetLastError();
}

cudaError_t relu_squared_backward(
    const uint16_t* dy, const uint16_t* u, uint16_t* du, int64_t n, cudaStream_t stream) {
  if (!aligned(dy) || !aligned(u) || !aligned(du))
    return cudaErrorMisalignedAddress;
  if (n == 0)
    return cudaSuccess;
  relu_squared_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dy, u, du, n);
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
