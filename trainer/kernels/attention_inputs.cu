// The attention inputs of one layer from its fused q|k|v projection: RoPE then QK-norm for q and
// k, and v plus its gated value embedding, a group of lanes per (token, head) vector and part, so
// that the projection's bf16 output is read once and q, k, v are written once, contiguous for
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

// The same two kernels with 16-byte accesses: kLanes = head_dim / 8 lanes per (token, head)
// vector, each holding 8 values (4 rotary pairs), 32 / kLanes vectors per warp. Sums over a
// vector are shuffles within its group of lanes. For head_dim in {16, 32, 64, 128, 256}.
struct Eight {
  float v[8];
};

__device__ __forceinline__ Eight load_eight(const uint16_t* p) {
  const uint4 bits = *reinterpret_cast<const uint4*>(p);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(&bits);
  Eight out;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    out.v[j] = bf16_to_float(h[j]);
  return out;
}

__device__ __forceinline__ void store_eight(uint16_t* p, const Eight& values) {
  uint4 bits;
  uint16_t* h = reinterpret_cast<uint16_t*>(&bits);
#pragma unroll
  for (int j = 0; j < 8; ++j)
    h[j] = float_to_bf16(values.v[j]);
  *reinterpret_cast<uint4*>(p) = bits;
}

__device__ __forceinline__ Eight load_eight_floats(const float* p) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  return {{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}};
}

template <int kLanes>
__device__ __forceinline__ float group_sum(float value) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Where one lane's eight values sit: its vector (token, head) and its first element.
struct LaneSlot {
  bool valid;
  int64_t vector;
  int64_t row;
  int head;
  int first;  // element offset within the head, a multiple of 8
};

template <int kLanes>
__device__ __forceinline__ LaneSlot lane_slot(const Shape& shape) {
  constexpr int kVectorsPerWarp = 32 / kLanes;
  const int lane = threadIdx.x & 31;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  LaneSlot slot;
  slot.vector = warp * kVectorsPerWarp + lane / kLanes;
  slot.valid = slot.vector < shape.rows * shape.heads;
  slot.row = slot.valid ? slot.vector / shape.heads : 0;
  slot.head = slot.valid ? static_cast<int>(slot.vector % shape.heads) : 0;
  slot.first = (lane % kLanes) * 8;
  return slot;
}

// The four rotary pairs of one lane: cos and sin at its token's position, 16-byte loads.
struct RotaryQuad {
  float cos[4];
  float sin[4];
};

__device__ __forceinline__ RotaryQuad rotary_quad(const float* cos,
                                                  const float* sin,
                                                  const LaneSlot& slot,
                                                  const Shape& shape) {
  const int half = shape.head_dim / 2;
  const int64_t at = static_cast<int64_t>(slot.row % shape.seq) * half + slot.first / 2;
  const float4 c = *reinterpret_cast<const float4*>(cos + at);
  const float4 s = *reinterpret_cast<const float4*>(sin + at);
  return {{c.x, c.y, c.z, c.w}, {s.x, s.y, s.z, s.w}};
}

__device__ __forceinline__ Eight rotate(const Eight& x, const RotaryQuad& t) {
  Eight out;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    out.v[2 * j] = x.v[2 * j] * t.cos[j] - x.v[2 * j + 1] * t.sin[j];
    out.v[2 * j + 1] = x.v[2 * j] * t.sin[j] + x.v[2 * j + 1] * t.cos[j];
  }
  return out;
}

template <int kLanes>
__global__ void attention_inputs_forward_vectorized(const uint16_t* __restrict__ qkv,
                                                    const uint16_t* __restrict__ gate_logits,
                                                    const float* __restrict__ value_embedding,
                                                    const float* __restrict__ cos,
                                                    const float* __restrict__ sin,
                                                    uint16_t* __restrict__ q_out,
                                                    uint16_t* __restrict__ k_out,
                                                    uint16_t* __restrict__ v_out,
                                                    Shape shape) {
  const int part = blockIdx.y;
  const LaneSlot slot = lane_slot<kLanes>(shape);
  const int width = shape.heads * shape.head_dim;
  const uint16_t* in =
      qkv + slot.row * shape.qkv_stride + part * width + slot.head * shape.head_dim + slot.first;
  const int64_t out_offset = slot.vector * shape.head_dim + slot.first;
  if (part == 2) {  // no shuffles here: lanes may leave
    if (!slot.valid)
      return;
    Eight v = load_eight(in);
    if (gate_logits != nullptr) {
      const float gate = gate_of(bf16_to_float(gate_logits[slot.vector]));
      const Eight ve = load_eight_floats(value_embedding + out_offset);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        v.v[j] += round_to_bf16(gate * ve.v[j]);
    }
    store_eight(v_out + out_offset, v);
    return;
  }
  const RotaryQuad table = rotary_quad(cos, sin, slot, shape);
  Eight rotated{};
  float sum = 0.0f;
  if (slot.valid) {
    rotated = rotate(load_eight(in), table);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      sum += rotated.v[j] * rotated.v[j];
  }
  const float r = rsqrtf(group_sum<kLanes>(sum) / static_cast<float>(shape.head_dim) + shape.eps);
  if (!slot.valid)
    return;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    rotated.v[j] *= r;
  store_eight((part == 0 ? q_out : k_out) + out_offset, rotated);
}

template <int kLanes>
__global__ void attention_inputs_backward_vectorized(const uint16_t* __restrict__ d_q,
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
  const LaneSlot slot = lane_slot<kLanes>(shape);
  const int width = shape.heads * shape.head_dim;
  const int64_t grad_offset = slot.vector * shape.head_dim + slot.first;
  uint16_t* d_in =
      d_qkv + slot.row * 3 * width + part * width + slot.head * shape.head_dim + slot.first;
  if (part == 2) {
    float d_gate = 0.0f;
    if (slot.valid) {
      *reinterpret_cast<uint4*>(d_in) = *reinterpret_cast<const uint4*>(d_v + grad_offset);
      if (gate_logits != nullptr) {
        const Eight g = load_eight(d_v + grad_offset);
        const float gate = gate_of(bf16_to_float(gate_logits[slot.vector]));
        const Eight ve = load_eight_floats(value_embedding + grad_offset);
        float4* d_ve = reinterpret_cast<float4*>(d_value_embedding + grad_offset);
        d_ve[0] = make_float4(g.v[0] * gate, g.v[1] * gate, g.v[2] * gate, g.v[3] * gate);
        d_ve[1] = make_float4(g.v[4] * gate, g.v[5] * gate, g.v[6] * gate, g.v[7] * gate);
#pragma unroll
        for (int j = 0; j < 8; ++j)
          d_gate += g.v[j] * ve.v[j];
      }
    }
    if (gate_logits == nullptr)
      return;
    d_gate = group_sum<kLanes>(d_gate);
    if (slot.valid && slot.first == 0) {
      const float logit = bf16_to_float(gate_logits[slot.vector]);
      const float sigmoid = 1.0f / (1.0f + __expf(-logit));
      d_gate_logits[slot.vector] = float_to_bf16(2.0f * d_gate * sigmoid * (1.0f - sigmoid));
    }
    return;
  }
  const uint16_t* in =
      qkv + slot.row * shape.qkv_stride + part * width + slot.head * shape.head_dim + slot.first;
  const RotaryQuad table = rotary_quad(cos, sin, slot, shape);
  Eight rotated{}, g{};
  float sum = 0.0f;
  if (slot.valid) {
    rotated = rotate(load_eight(in), table);
    g = load_eight((part == 0 ? d_q : d_k) + grad_offset);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      sum += rotated.v[j] * rotated.v[j];
  }
  const float r = rsqrtf(group_sum<kLanes>(sum) / static_cast<float>(shape.head_dim) + shape.eps);
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    dot += g.v[j] * rotated.v[j] * r;
  dot = group_sum<kLanes>(dot) / static_cast<float>(shape.head_dim);
  if (!slot.valid)
    return;
  // Through the norm: d rotated = r (dn - n mean(dn . n)); then through the inverse rotation.
  Eight d_rotated;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    d_rotated.v[j] = r * (g.v[j] - rotated.v[j] * r * dot);
  Eight d_x;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float d0 = d_rotated.v[2 * j], d1 = d_rotated.v[2 * j + 1];
    d_x.v[2 * j] = d0 * table.cos[j] + d1 * table.sin[j];
    d_x.v[2 * j + 1] = d1 * table.cos[j] - d0 * table.sin[j];
  }
  store_eight(d_in, d_x);
}

// head_dim / 8 lanes per vector where that divides a warp and the accesses are 16-byte aligned;
// 0 selects the pairwise kernels.
int vector_lanes(const Shape& shape, const void* qkv) {
  const int lanes = shape.head_dim / 8;
  const bool fits = shape.head_dim % 8 == 0 && lanes >= 2 && lanes <= 32 && 32 % lanes == 0;
  const bool aligned = reinterpret_cast<uintptr_t>(qkv) % 16 == 0 && shape.qkv_stride % 8 == 0;
  return fits && aligned ? lanes : 0;
}

dim3 vectorized_grid(const Shape& shape, int lanes) {
  const int64_t vectors_per_block = static_cast<int64_t>(kWarpsPerBlock) * (32 / lanes);
  const int64_t vectors = shape.rows * shape.heads;
  return dim3(static_cast<unsigned>((vectors + vectors_per_block - 1) / vectors_per_block), 3);
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
  const int lanes = vector_lanes(shape, qkv);
  const dim3 grid = vectorized_grid(shape, lanes > 0 ? lanes : 32);
  const bool launched = detail::with_power_of_two_lanes(lanes, [&](auto lanes_constant) {
    attention_inputs_forward_vectorized<decltype(lanes_constant)::value>
        <<<grid, kWarpsPerBlock * 32, 0, stream>>>(
            qkv, gate_logits, value_embedding, cos, sin, q_out, k_out, v_out, shape);
  });
  if (!launched) {
    attention_inputs_forward_kernel<<<grid_of(shape), kWarpsPerBlock * 32, 0, stream>>>(
        qkv, gate_logits, value_embedding, cos, sin, q_out, k_out, v_out, shape);
  }
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
  const int lanes = vector_lanes(shape, qkv);
  const dim3 grid = vectorized_grid(shape, lanes > 0 ? lanes : 32);
  const bool launched = detail::with_power_of_two_lanes(lanes, [&](auto lanes_constant) {
    attention_inputs_backward_vectorized<decltype(lanes_constant)::value>
        <<<grid, kWarpsPerBlock * 32, 0, stream>>>(d_q,
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
  });
  if (!launched) {
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
  }
  return cudaGetLastError();
}

}  // namespace parcae::trainer::kernels
