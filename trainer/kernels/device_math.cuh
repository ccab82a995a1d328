// Helpers shared by the fused kernels: bf16 <-> fp32 conversion of raw 16-bit storage, rounding
// through a storage type, warp sums, and the host-side dispatch of templates on dtypes and lane
// counts.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "trainer/kernels/fused_kernels.h"

namespace parcae::trainer::kernels::detail {

__device__ __forceinline__ float bf16_to_float(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest even, NaN kept a NaN: what a cast of fp32 to bf16 does.
__device__ __forceinline__ uint16_t float_to_bf16(float value) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(value));
}

__device__ __forceinline__ float round_to_bf16(float value) {
  return bf16_to_float(float_to_bf16(value));
}

// Element access for the two activation types: float, and bf16 held as uint16_t.
__device__ __forceinline__ float load_float(const float* p) {
  return *p;
}
__device__ __forceinline__ float load_float(const uint16_t* p) {
  return bf16_to_float(*p);
}
__device__ __forceinline__ void store_float(float* p, float value) {
  *p = value;
}
__device__ __forceinline__ void store_float(uint16_t* p, float value) {
  *p = float_to_bf16(value);
}

// The value a cast to T leaves: itself for float, the nearest bf16 for uint16_t.
template <typename T>
__device__ __forceinline__ float round_through(float value) {
  return value;
}
template <>
__device__ __forceinline__ float round_through<uint16_t>(float value) {
  return round_to_bf16(value);
}

__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Calls f(A{}, B{}) with A and B the storage types of two activation dtypes (float, or uint16_t
// for bf16), so that one launcher serves the four combinations.
template <typename F>
cudaError_t with_storage_types(Dtype a, Dtype b, F&& f) {
  const bool a16 = a == Dtype::kBFloat16, b16 = b == Dtype::kBFloat16;
  if (a16 && b16)
    return f(uint16_t{}, uint16_t{});
  if (a16)
    return f(uint16_t{}, float{});
  if (b16)
    return f(float{}, uint16_t{});
  return f(float{}, float{});
}

// Calls f(std::integral_constant<int, L>{}) for lanes == L in {2, 4, 8, 16, 32} and returns true;
// returns false for other values.
template <typename F>
bool with_power_of_two_lanes(int lanes, F&& f) {
  switch (lanes) {
    case 2:
      f(std::integral_constant<int, 2>{});
      return true;
    case 4:
      f(std::integral_constant<int, 4>{});
      return true;
    case 8:
      f(std::integral_constant<int, 8>{});
      return true;
    case 16:
      f(std::integral_constant<int, 16>{});
      return true;
    case 32:
      f(std::integral_constant<int, 32>{});
      return true;
    default:
      return false;
  }
}

}  // namespace parcae::trainer::kernels::detail
