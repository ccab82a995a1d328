// RMSNorm over the last dimension: one warp per row, fp32 arithmetic, the weight's gradient
// reduced per block in shared memory and summed over blocks by the caller.
#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::load_float;
using detail::round_through;
using detail::store_float;
using detail::warp_sum;

constexpr int kWarpsPerBlock = 8;
// Shared memory of the backward: one fp32 accumulator per column and warp, within 48 KiB.
constexpr int kSharedBytes = 48 * 1024;

template <typename In, typename Out>
__global__ void rms_norm_forward_kernel(const In* __restrict__ x,
                                        const float* __restrict__ weight,
                                        Out* __restrict__ y,
                                        float* __restrict__ rstd,
                                        int64_t rows,
                                        int dim,
                                        float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows)
    return;
  const In* xr = x + row * dim;
  float sum = 0.0f;
  for (int i = lane; i < dim; i += 32) {
    const float v = load_float(xr + i);
    sum += v * v;
  }
  const float r = rsqrtf(warp_sum(sum) / static_cast<float>(dim) + eps);
  if (lane == 0)
    rstd[row] = r;
  Out* yr = y + row * dim;
  for (int i = lane; i < dim; i += 32) {
    const float n = round_through<In>(load_float(xr + i) * r);
    store_float(yr + i, weight != nullptr ? n * round_through<In>(weight[i]) : n);
  }
}

template <typename In, typename Grad>
__global__ void rms_norm_backward_kernel(const Grad* __restrict__ dy,
                                         const In* __restrict__ x,
                                         const float* __restrict__ weight,
                                         const float* __restrict__ rstd,
                                         In* __restrict__ dx,
                                         float* __restrict__ weight_partial,
                                         int64_t rows,
                                         int dim,
                                         int warps) {
  extern __shared__ float column_sums[];  // (warps, dim) when there is a weight
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const bool has_weight = weight != nullptr;
  float* mine = column_sums + warp * dim;
  if (has_weight) {
    for (int i = lane; i < dim; i += 32)
      mine[i] = 0.0f;
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * warps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + warp; row < rows; row += stride) {
    const In* xr = x + row * dim;
    const Grad* dyr = dy + row * dim;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int i = lane; i < dim; i += 32) {
      const float n = load_float(xr + i) * r;
      const float g = load_float(dyr + i);
      const float dn = has_weight ? g * weight[i] : g;
      dot += dn * n;
      if (has_weight)
        mine[i] += g * n;  // column i belongs to this lane of this warp alone
    }
    dot = warp_sum(dot) / static_cast<float>(dim);
    In* dxr = dx + row * dim;
    for (int i = lane; i < dim; i += 32) {
      const float n = load_float(xr + i) * r;
      const float g = load_float(dyr + i);
      const float dn = has_weight ? g * weight[i] : g;
      store_float(dxr + i, r * (dn - n * dot));
    }
  }
  if (!has_weight)
    return;
  __syncthreads();
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float total = 0.0f;
    for (int w = 0; w < warps; ++w)
      total += column_sums[w * dim + i];
    weight_partial[static_cast<int64_t>(blockIdx.x) * dim + i] = total;
  }
}

template <typename In, typename Out>
cudaError_t launch_forward(const void* x,
                           const float* weight,
                           void* y,
                           float* rstd,
                           int64_t rows,
                           int dim,
                           float eps,
                           cudaStream_t stream) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  rms_norm_forward_kernel<In, Out>
      <<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
          static_cast<const In*>(x), weight, static_cast<Out*>(y), rstd, rows, dim, eps);
  return cudaGetLastError();
}

template <typename In, typename Grad>
cudaError_t launch_backward(const void* dy,
                            const void* x,
                            const float* weight,
                            const float* rstd,
                            void* dx,
                            float* weight_partial,
                            int64_t rows,
                            int dim,
                            int blocks,
                            cudaStream_t stream) {
  int warps = kWarpsPerBlock;
  while (warps > 1 && static_cast<int64_t>(warps) * dim * 4 > kSharedBytes)
    warps /= 2;
  const size_t shared = weight != nullptr ? static_cast<size_t>(warps) * dim * sizeof(float) : 0;
  rms_norm_backward_kernel<In, Grad>
      <<<static_cast<unsigned>(blocks), warps * 32, shared, stream>>>(static_cast<const Grad*>(dy),
                                                                      static_cast<const In*>(x),
                                                                      weight,
                                                                      rstd,
                                                                      static_cast<In*>(dx),
                                                                      weight_partial,
                                                                      rows,
                                                                      dim,
                                                                      warps);
  return cudaGetLastError();
}

}  // namespace

int rms_norm_max_dim() {
  return kSharedBytes / static_cast<int>(sizeof(float));
}

cudaError_t rms_norm_forward(const void* x,
                             Dtype x_dtype,
                             const float* weight,
                             void* y,
                             Dtype y_dtype,
                             float* rstd,
                             int64_t rows,
                             int dim,
                             float eps,
                             cudaStream_t stream) {
  if (rows == 0)
    return cudaSuccess;
  const bool x_bf16 = x_dtype == Dtype::kBFloat16, y_bf16 = y_dtype == Dtype::kBFloat16;
  if (x_bf16 && y_bf16)
    return launch_forward<uint16_t, uint16_t>(x, weight, y, rstd, rows, dim, eps, stream);
  if (x_bf16)
    return launch_forward<uint16_t, float>(x, weight, y, rstd, rows, dim, eps, stream);
  if (y_bf16)
    return launch_forward<float, uint16_t>(x, weight, y, rstd, rows, dim, eps, stream);
  return launch_forward<float, float>(x, weight, y, rstd, rows, dim, eps, stream);
}

cudaError_t rms_norm_backward(const void* dy,
                              Dtype dy_dtype,
                              const void* x,
                              Dtype x_dtype,
                              const float* weight,
                              const float* rstd,
                              void* dx,
                              float* weight_partial,
                              int64_t rows,
                              int dim,
                              int blocks,
                              cudaStream_t stream) {
  if (dim > rms_norm_max_dim() || blocks < 1)
    return cudaErrorInvalidValue;
  const bool x_bf16 = x_dtype == Dtype::kBFloat16, dy_bf16 = dy_dtype == Dtype::kBFloat16;
  if (x_bf16 && dy_bf16) {
    return launch_backward<uint16_t, uint16_t>(
        dy, x, weight, rstd, dx, weight_partial, rows, dim, blocks, stream);
  }
  if (x_bf16) {
    return launch_backward<uint16_t, float>(
        dy, x, weight, rstd, dx, weight_partial, rows, dim, blocks, stream);
  }
  if (dy_bf16) {
    return launch_backward<float, uint16_t>(
        dy, x, weight, rstd, dx, weight_partial, rows, dim, blocks, stream);
  }
  return launch_backward<float, float>(
      dy, x, weight, rstd, dx, weight_partial, rows, dim, blocks, stream);
}

}  // namespace parcae::trainer::kernels
