// RMSNorm over the last dimension, optionally of a residual sum x + delta that it also writes:
// one warp per row, fp32 arithmetic, the weight's gradient reduced per block in shared memory and
// summed over blocks by the caller. Fusing the residual add saves a pass over the fp32 stream
// each way, and in the backward the add of the residual branch's gradient.
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

// x + delta rounded to In (what ATen's add gives for an In and a bf16 operand), or x.
template <typename In>
__device__ __forceinline__ float input_at(const In* x, const uint16_t* delta, int64_t i) {
  const float v = load_float(x + i);
  return delta != nullptr ? round_through<In>(v + load_float(delta + i)) : v;
}

template <typename In, typename Out>
__global__ void rms_norm_forward_kernel(const In* __restrict__ x,
                                        const uint16_t* __restrict__ delta,
                                        In* __restrict__ sum_out,
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
  const uint16_t* dr = delta != nullptr ? delta + row * dim : nullptr;
  float sum = 0.0f;
  for (int i = lane; i < dim; i += 32) {
    const float v = input_at(xr, dr, i);
    sum += v * v;
  }
  const float r = rsqrtf(warp_sum(sum) / static_cast<float>(dim) + eps);
  if (lane == 0)
    rstd[row] = r;
  Out* yr = y + row * dim;
  In* sr = sum_out != nullptr ? sum_out + row * dim : nullptr;
  for (int i = lane; i < dim; i += 32) {
    const float v = input_at(xr, dr, i);
    if (sr != nullptr)
      store_float(sr + i, v);
    const float n = round_through<In>(v * r);
    store_float(yr + i, weight != nullptr ? n * round_through<In>(weight[i]) : n);
  }
}

template <typename In, typename Grad>
__global__ void rms_norm_backward_kernel(const Grad* __restrict__ dy,
                                         const In* __restrict__ x,
                                         const In* __restrict__ grad_sum,
                                         const float* __restrict__ weight,
                                         const float* __restrict__ rstd,
                                         In* __restrict__ dx,
                                         uint16_t* __restrict__ d_delta,
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
    const In* gsr = grad_sum != nullptr ? grad_sum + row * dim : nullptr;
    uint16_t* ddr = d_delta != nullptr ? d_delta + row * dim : nullptr;
    for (int i = lane; i < dim; i += 32) {
      const float n = load_float(xr + i) * r;
      const float g = load_float(dyr + i);
      const float dn = has_weight ? g * weight[i] : g;
      float d = r * (dn - n * dot);
      if (gsr != nullptr)
        d += load_float(gsr + i);
      store_float(dxr + i, d);
      if (ddr != nullptr)
        store_float(ddr + i, d);
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
                           const uint16_t* delta,
                           void* sum_out,
                           const float* weight,
                           void* y,
                           float* rstd,
                           int64_t rows,
                           int dim,
                           float eps,
                           cudaStream_t stream) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  rms_norm_forward_kernel<In, Out>
      <<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(static_cast<const In*>(x),
                                                                          delta,
                                                                          static_cast<In*>(sum_out),
                                                                          weight,
                                                                          static_cast<Out*>(y),
                                                                          rstd,
                                                                          rows,
                                                                          dim,
                                                                          eps);
  return cudaGetLastError();
}

template <typename In, typename Grad>
cudaError_t launch_backward(const void* dy,
                            const void* x,
                            const void* grad_sum,
                            const float* weight,
                            const float* rstd,
                            void* dx,
                            uint16_t* d_delta,
                            float* weight_partial,
                            int64_t rows,
                            int dim,
                            int blocks,
                            cudaStream_t stream) {
  int warps = kWarpsPerBlock;
  while (warps > 1 && static_cast<int64_t>(warps) * dim * 4 > kSharedBytes)
    warps /= 2;
  const size_t shared = weight != nullptr ? static_cast<size_t>(warps) * dim * sizeof(float) : 0;
  rms_norm_backward_kernel<In, Grad><<<static_cast<unsigned>(blocks), warps * 32, shared, stream>>>(
      static_cast<const Grad*>(dy),
      static_cast<const In*>(x),
      static_cast<const In*>(grad_sum),
      weight,
      rstd,
      static_cast<In*>(dx),
      d_delta,
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
                             const uint16_t* delta,
                             void* sum_out,
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
  if ((delta == nullptr) != (sum_out == nullptr))
    return cudaErrorInvalidValue;
  return detail::with_storage_types(x_dtype, y_dtype, [&](auto in, auto out) {
    return launch_forward<decltype(in), decltype(out)>(
        x, delta, sum_out, weight, y, rstd, rows, dim, eps, stream);
  });
}

cudaError_t rms_norm_backward(const void* dy,
                              Dtype dy_dtype,
                              const void* x,
                              Dtype x_dtype,
                              const void* grad_sum,
                              const float* weight,
                              const float* rstd,
                              void* dx,
                              uint16_t* d_delta,
                              float* weight_partial,
                              int64_t rows,
                              int dim,
                              int blocks,
                              cudaStream_t stream) {
  if (dim > rms_norm_max_dim() || blocks < 1)
    return cudaErrorInvalidValue;
  return detail::with_storage_types(x_dtype, dy_dtype, [&](auto in, auto grad) {
    return launch_backward<decltype(in), decltype(grad)>(
        dy, x, grad_sum, weight, rstd, dx, d_delta, weight_partial, rows, dim, blocks, stream);
  });
}

}  // namespace parcae::trainer::kernels
