// The attention inputs of one layer from its fused q|k|v projection: RoPE then QK-norm for q and
// k, and v plus its gated value embedding, one warp per (token, head) vector and part, so that
// the projection's bf16 output is read once and q, k, v are written once, contiguous for
// attention. The backward recomputes RoPE and the norm from the saved projection.
#include "trainer/kernels/device_math.cuh"
#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels {
namespace {

using detail::bf16_to_float;
using detail::float_to_bf16;
using detail::round_to_bf16;
using detail::warp_sum;

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxPairsPerLane = 4;  // head_dim <= 2 * 32 * 4

// A pair of adjacent bf16 values, loaded and stored as one 32-bit word.
__device__ __forceinline__ float2 load_pair(const uint16_t* p) {
  const uint32_t bits = *reinterpret_cast<const uint32_t*>(p);
  return make_float2(bf16_to_float(static_cast<uint16_t>(bits & 0xffffu)),
                     bf16_to_float(static_cast<uint16_t>(bits >> 16)));
}
__device__ __forceinline__ void store_pair(uint16_t* p, float a, float b) {
  *reinterpret_cast<uint32_t*>(p) =
      static_cast<uint32_t>(float_to_bf16(a)) | (static_cast<uint32_t>(float_to_bf16(b)) << 16);
}

// The gate 2 sigmoid(logit), rounded as the bf16 reference rounds it (sigmoid, then the doubling,
// which is exact).
__device__ __forceinline__ float gate_of(float logit) {
  return 2.0f * round_to_bf16(1.0f / (1.0f + __expf(-logit)));
}

struct Shape {
  int64_t rows;
  int heads;
  int head_dim;
  int seq;
  int64_t qkv_stride;
  float eps;
};

__global__ void attention_inputs_forward_kernel(const uint16_t* __restrict__ qkv,
                                                const uint16_t* __restrict__ gate_logits,
                                                const float* __restrict__ value_embedding,
                                                const float* __restrict__ cos,
                                                const float* __restrict__ sin,
                                                uint16_t* __restrict__ q_out,
                                                uint16_t* __restrict__ k_out,
                                                uint16_t* __restrict__ v_out,
                                                Shape shape) {
  const int part = blockIdx.y;  // 0 q, 1 k, 2 v
  const int lane = threadIdx.x & 31;
  const int64_t vector = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (vector >= shape.rows * shape.heads)
    return;
  const int64_t row = vector / shape.heads;
  const int head = static_cast<int>(vector % shape.heads);
  const int width = shape.heads * shape.head_dim;
  const int half = shape.head_dim / 2;
  const uint16_t* in = qkv + row * shape.qkv_stride + part * width + head * shape.head_dim;
  const int64_t out_offset = vector * shape.head_dim;

  if (part == 2) {
    uint16_t* out = v_out + out_offset;
    if (gate_logits == nullptr) {
      for (int p = lane; p < half; p += 32)
        *reinterpret_cast<uint32_t*>(out + 2 * p) = *reinterpret_cast<const uint32_t*>(in + 2 * p);
      return;
    }
    const float gate = gate_of(bf16_to_float(gate_logits[vector]));
    const float* ve = value_embedding + out_offset;
    for (int p = lane; p < half; p += 32) {
      const float2 v = load_pair(in + 2 * p);
      const float added0 = round_to_bf16(gate * ve[2 * p]);
      const float added1 = round_to_bf16(gate * ve[2 * p + 1]);
      store_pair(out + 2 * p, v.x + added0, v.y + added1);
    }
    return;
  }

  const int position = static_cast<int>(row % shape.seq);
  const float* c = cos + static_cast<int64_t>(position) * half;
  const float* s = sin + static_cast<int64_t>(position) * half;
  float rotated0[kMaxPairsPerLane], rotated1[kMaxPairsPerLane];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int p = lane + 32 * j;
    rotated0[j] = rotated1[j] = 0.0f;
    if (p < half) {
      const float2 x = load_pair(in + 2 * p);
      rotated0[j] = x.x * c[p] - x.y * s[p];
      rotated1[j] = x.x * s[p] + x.y * c[p];
      sum += rotated0[j] * rotated0[j] + rotated1[j] * rotated1[j];
    }
  }
  const float r = rsqrtf(warp_sum(sum) / static_cast<float>(shape.head_dim) + shape.eps);
  uint16_t* out = (part == 0 ? q_out : k_out) + out_offset;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int p = lane + 32 * j;
    if (p < half)
      store_pair(out + 2 * p, rotated0[j] * r, rotated1[j] * r);
  }
}

__global__ void attention_inputs_backward_kernel(const uint16_t* __restrict__ d_q,
                                                 const uint16_t* __restrict__ d_k,
                                                 const uint16_t* __restrict__ d_v,
                                                 const uint16_t* __restrict__ qkv,
                                                 const uint16_t* __restrict__ gate_logits,
                                                 const float* __restrict__ value_embedding,
                                                 const float* __restrict__ cos,
                                                 const float* __restrict__ sin,
                                                 uint16_t* __restrict__ d_qkv,
                                                 uint16_t* __restrict__ d_gate_logits,
                                                 float* __restrict__ d_value_embedding,
                                                 Shape shape) {
  const int part = blockIdx.y;
  const int lane = threadIdx.x & 31;
  const int64_t vector = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (vector >= shape.rows * shape.heads)
    return;
  const int64_t row = vector / shape.heads;
  const int head = static_cast<int>(vector % shape.heads);
  const int width = shape.heads * shape.head_dim;
  const int half = shape.head_dim / 2;
  const int64_t grad_offset = vector * shape.head_dim;
  uint16_t* d_in = d_qkv + row * 3 * width + part * width + head * shape.head_dim;

  if (part == 2) {
    const uint16_t* g = d_v + grad_offset;
    for (int p = lane; p < half; p += 32)
      *reinterpret_cast<uint32_t*>(d_in + 2 * p) = *reinterpret_cast<const uint32_t*>(g + 2 * p);
    if (gate_logits == nullptr)
      return;
    const float logit = bf16_to_float(gate_logits[vector]);
    const float gate = gate_of(logit);
    const float* ve = value_embedding + grad_offset;
    float* d_ve = d_value_embedding + grad_offset;
    float d_gate = 0.0f;
    for (int p = lane; p < half; p += 32) {
      const float2 dv = load_pair(g + 2 * p);
      d_ve[2 * p] = dv.x * gate;
      d_ve[2 * p + 1] = dv.y * gate;
      d_gate += dv.x * ve[2 * p] + dv.y * ve[2 * p + 1];
    }
    d_gate = warp_sum(d_gate);
    if (lane == 0) {
      const float sigmoid = 1.0f / (1.0f + __expf(-logit));
      d_gate_logits[vector] = float_to_bf16(2.0f * d_gate * sigmoid * (1.0f - sigmoid));
    }
    return;
  }

  const uint16_t* in = qkv + row * shape.qkv_stride + part * width + head * shape.head_dim;
  const uint16_t* g = (part == 0 ? d_q : d_k) + grad_offset;
  const int position = static_cast<int>(row % shape.seq);
  const float* c = cos + static_cast<int64_t>(position) * half;
  const float* s = sin + static_cast<int64_t>(position) * half;
  float rotated0[kMaxPairsPerLane], rotated1[kMaxPairsPerLane];
  float grad0[kMaxPairsPerLane], grad1[kMaxPairsPerLane];
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int p = lane + 32 * j;
    rotated0[j] = rotated1[j] = grad0[j] = grad1[j] = 0.0f;
    if (p < half) {
      const float2 x = load_pair(in + 2 * p);
      rotated0[j] = x.x * c[p] - x.y * s[p];
      rotated1[j] = x.x * s[p] + x.y * c[p];
      sum += rotated0[j] * rotated0[j] + rotated1[j] * rotated1[j];
      const float2 dn = load_pair(g + 2 * p);
      grad0[j] = dn.x;
      grad1[j] = dn.y;
    }
  }
  const float r = rsqrtf(warp_sum(sum) / static_cast<float>(shape.head_dim) + shape.eps);
  // dn . n over the vector, n = rotated * r.
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j)
    dot += (grad0[j] * rotated0[j] + grad1[j] * rotated1[j]) * r;
  dot = warp_sum(dot) / static_cast<float>(shape.head_dim);
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int p = lane + 32 * j;
    if (p < half) {
      // Through the norm: d rotated = r (dn - n mean(dn . n)); then through the rotation.
      const float d0 = r * (grad0[j] - rotated0[j] * r * dot);
      const float d1 = r * (grad1[j] - rotated1[j] * r * dot);
      store_pair(d_in + 2 * p, d0 * c[p] + d1 * s[p], d1 * c[p] - d0 * s[p]);
    }
  }
}

dim3 grid_of(const Shape& shape) {
  const int64_t vectors = shape.rows * shape.heads;
  return dim3(static_cast<unsigned>((vectors + kWarpsPerBlock - 1) / kWarpsPerBlock), 3);
}

bool supported(const Shape& shape, const void* qkv) {
  return shape.head_dim % 2 == 0 && shape.head_dim <= 2 * 32 * kMaxPairsPerLane &&
         shape.qkv_stride % 2 == 0 && reinterpret_cast<uintptr_t>(qkv) % 4 == 0 && shape.seq > 0;
}

}  // namespace

cudaError_t attention_inputs_forward(const uint16_t* qkv,
                                     int64_t qkv_stride,
                                     const uint16_t* gate_logits,
                                     const float* value_embedding,
                                     const float* cos,
                                     const float* sin,
                                     uint16_t* q_out,
                                     uint16_t* k_out,
                                     uint16_t* v_out,
                                     int64_t rows,
                                     int heads,
                                     int head_dim,
                                     int seq,
                                     float eps,
                                     cudaStream_t stream) {
  const Shape shape{rows, heads, head_dim, seq, qkv_stride, eps};
  if (!supported(shape, qkv))
    return cudaErrorInvalidValue;
  if (rows == 0)
    return cudaSuccess;
  attention_inputs_forward_kernel<<<grid_of(shape), kWarpsPerBlock * 32, 0, stream>>>(
      qkv, gate_logits, value_embedding, cos, sin, q_out, k_out, v_out, shape);
  return cudaGetLastError();
}

cudaError_t attention_inputs_backward(const uint16_t* d_q,
                                      const uint16_t* d_k,
                                      const uint16_t* d_v,
                                      const uint16_t* qkv,
                                      int64_t qkv_stride,
                                      const uint16_t* gate_logits,
                                      const float* value_embedding,
                                      const float* cos,
                                      const float* sin,
                                      uint16_t* d_qkv,
                                      uint16_t* d_gate_logits,
                                      float* d_value_embedding,
                                      int64_t rows,
                                      int heads,
                                      int head_dim,
                                      int seq,
                                      float eps,
                                      cudaStream_t stream) {
  const Shape shape{rows, heads, head_dim, seq, qkv_stride, eps};
  if (!supported(shape, qkv))
    return cudaErrorInvalidValue;
  if (rows == 0)
    return cudaSuccess;
  attention_inputs_backward_kernel<<<grid_of(shape), kWarpsPerBlock * 32, 0, stream>>>(
      d_q,
      d_k,
      d_v,
      qkv,
      gate_logits,
      value_embedding,
      cos,
      sin,
      d_qkv,
      d_gate_logits,
      d_value_embedding,
      shape);
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
