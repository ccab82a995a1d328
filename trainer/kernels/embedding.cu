// The gradient of an embedding lookup as a sum over sorted ids: each block takes a tile of
// consecutive sorted positions and sums the gradient rows of each run of equal ids in registers,
// writing a run that lies inside its tile with a plain store and adding one that continues into a
// neighbouring tile with one atomic add per element. ATen's index_add_ adds every element of every
// gradient row atomically, several times slower than the bytes need.
#include <algorithm>

#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::load_float;

constexpr int kThreads = 256;
constexpr int64_t kTile = 32;  // sorted positions a block sums

// One element group of a row: a float, or four floats loaded at once.
__device__ __forceinline__ void add_into(float& sum, float value) {
  sum += value;
}
__device__ __forceinline__ void add_into(float4& sum, const float4& value) {
  sum.x += value.x, sum.y += value.y, sum.z += value.z, sum.w += value.w;
}
__device__ __forceinline__ void store(float* out, float value, bool atomic) {
  if (atomic)
    atomicAdd(out, value);
  else
    *out = value;
}
__device__ __forceinline__ void store(float4* out, const float4& value, bool atomic) {
  if (atomic) {
    float* p = reinterpret_cast<float*>(out);
    atomicAdd(p, value.x), atomicAdd(p + 1, value.y), atomicAdd(p + 2, value.z);
    atomicAdd(p + 3, value.w);
  } else {
    *out = value;
  }
}
__device__ __forceinline__ float load_group(const float* p) {
  return *p;
}
__device__ __forceinline__ float load_group(const uint16_t* p) {
  return load_float(p);
}
__device__ __forceinline__ float4 load_group(const float4* p) {
  return *p;
}

// G: the stored element group of g (float, bf16 bits, or float4); Sum: its fp32 sum (float or
// float4). `width` counts groups a row.
template <typename G, typename Sum>
__global__ void embedding_backward_kernel(const int64_t* __restrict__ sorted_ids,
                                          const int64_t* __restrict__ order,
                                          int64_t n,
                                          const G* __restrict__ g,
                                          Sum* __restrict__ d_weight,
                                          int64_t rows,
                                          int width) {
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kTile;
  if (begin >= n)
    return;
  const int64_t end = begin + kTile < n ? begin + kTile : n;
  // Runs that continue past the tile's edges have partial sums in the neighbouring tiles.
  const bool open_before = begin > 0 && sorted_ids[begin - 1] == sorted_ids[begin];
  const bool open_after = end < n && sorted_ids[end] == sorted_ids[end - 1];
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    Sum sum{};
    int64_t run_begin = begin;
    for (int64_t k = begin; k < end; ++k) {
      add_into(sum, load_group(g + order[k] * width + c));
      const int64_t id = sorted_ids[k];
      if (k + 1 < end && sorted_ids[k + 1] == id)
        continue;
      const bool shared = (run_begin == begin && open_before) || (k + 1 == end && open_after);
      if (id >= 0 && id < rows)
        store(d_weight + id * width + c, sum, shared);
      sum = Sum{};
      run_begin = k + 1;
    }
  }
}

int threads_for(int width) {
  return std::min(kThreads, std::max(32, ((width + 31) / 32) * 32));
}

}  // namespace

cudaError_t embedding_backward(const int64_t* sorted_ids,
                               const int64_t* order,
                               int64_t n,
                               const void* g,
                               Dtype g_dtype,
                               float* d_weight,
                               int64_t rows,
                               int dim,
                               cudaStream_t stream) {
  if (n == 0 || dim == 0)
    return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((n + kTile - 1) / kTile);
  const bool aligned = reinterpret_cast<uintptr_t>(g) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(d_weight) % 16 == 0;
  if (g_dtype == Dtype::kFloat && dim % 4 == 0 && aligned) {
    const int width = dim / 4;
    embedding_backward_kernel<float4, float4>
        <<<blocks, threads_for(width), 0, stream>>>(sorted_ids,
                                                    order,
                                                    n,
                                                    static_cast<const float4*>(g),
                                                    reinterpret_cast<float4*>(d_weight),
                                                    rows,
                                                    width);
  } else if (g_dtype == Dtype::kFloat) {
    embedding_backward_kernel<float, float><<<blocks, threads_for(dim), 0, stream>>>(
        sorted_ids, order, n, static_cast<const float*>(g), d_weight, rows, dim);
  } else {
    embedding_backward_kernel<uint16_t, float><<<blocks, threads_for(dim), 0, stream>>>(
        sorted_ids, order, n, static_cast<const uint16_t*>(g), d_weight, rows, dim);
  }
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
