// The memory-bound operations of the models, each in two implementations that compute the same
// function: the ATen composition (the reference, and the only path of a CPU build) and a fused
// operation with its own backward (one CUDA kernel each way on the GPU). parcae.md §3 defines
// the operations:
//   rms_norm, add_rms_norm    RMSNorm with a learned weight, output in a chosen dtype, of x or
//                             of the residual sum x + delta (the add fused in)
//   attention_inputs          q, k, v of one layer from its fused projection: RoPE then QK-norm
//                             on q and k, the gated value embedding added to v
//   relu_squared_half         0.5 relu(u)^2 of the MLP
//   embedding_lookup          token and value-embedding tables, with a sorted-sum backward
//   reorder_rows              rows of a batch put in another order, with a gather backward
//   tied_head_cross_entropy   the tied head and the cross-entropy in row chunks, never holding
//                             the (rows, vocab) logits in fp32 nor all of them at once
// The fused path keeps fewer tensors for the backward and launches one kernel where the
// composition launches up to a dozen. Off the GPU, the fused operations run their explicit
// forward and backward formulas in ATen, so that a CPU test checks those formulas against
// autograd in double precision; trainer_test's CUDA-only tests check the kernels against the
// composition.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace parcae::trainer {

// The dtype the operations compute in: double for double tensors (the CPU gradient tests), fp32
// for everything narrower.
inline torch::Dtype compute_dtype(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

enum class KernelPath {
  kAten,   // the ATen composition, differentiated by autograd
  kFused,  // the fused operations (CUDA kernels on the GPU, explicit formulas elsewhere)
};

// The addresses of a list of weights as a device array, for a kernel that updates them all in
// one launch; kept while the weights stay where they are, so that it is copied to the GPU once.
struct WeightTable {
  std::vector<int64_t> addresses;
  torch::Tensor device;
};

// cos and sin of RoPE angles pos * theta^(-2i/hd), i < hd/2, pos < seq: (seq, hd/2) each, in
// `dtype` (fp32 in training, fp64 in double-precision tests).
struct RotaryTable {
  torch::Tensor cos;
  torch::Tensor sin;
};
RotaryTable make_rotary_table(
    int64_t seq, int64_t head_dim, double theta, torch::Device device, torch::Dtype dtype);

// x * rsqrt(mean(x^2, last dim) + eps), computed in fp32 (fp64 for fp64 input), returned in
// x's dtype. No weight.
torch::Tensor rms_normalize(const torch::Tensor& x, double eps);

// rms_normalize(x) * weight in x's dtype, returned in `out_dtype` (the autocast dtype where the
// result only feeds matrix products, which cast it anyway). x: (..., d), weight: (d).
torch::Tensor rms_norm(const torch::Tensor& x,
                       const torch::Tensor& weight,
                       double eps,
                       torch::Dtype out_dtype,
                       KernelPath path);

struct ResidualNorm {
  torch::Tensor sum;     // x + delta, in the dtype ATen's add gives
  torch::Tensor normed;  // rms_norm(sum, weight), in out_dtype
};

// The residual stream's add and the RMSNorm that reads it, as one operation: sum = x + delta
// (x itself when delta is undefined), normed = rms_norm(sum). The fused path writes both in one
// pass, and its backward adds the gradient that reaches the sum by other paths.
ResidualNorm add_rms_norm(const torch::Tensor& x,
                          const torch::Tensor& delta,
                          const torch::Tensor& weight,
                          double eps,
                          torch::Dtype out_dtype,
                          KernelPath path);

struct AttentionInputs {
  torch::Tensor q, k, v;  // (batch, seq, heads, head_dim), in qkv's dtype
};

// qkv: (batch, seq, 3 * heads * head_dim), [q | k | v] per token. gate_logits (batch, seq, heads)
// and value_embedding (batch, seq, heads * head_dim) are both given (a layer with a value
// embedding) or both undefined. Returns
//   q, k = rms_normalize(rope(q or k), qk_eps) per head, computed in fp32 (fp64 for fp64 input)
//   v    = v + (2 sigmoid(gate_logits) * value_embedding) cast to v's dtype   (or v alone)
AttentionInputs attention_inputs(const torch::Tensor& qkv,
                                 const torch::Tensor& gate_logits,
                                 const torch::Tensor& value_embedding,
                                 const RotaryTable& rope,
                                 int64_t heads,
                                 int64_t head_dim,
                                 double qk_eps,
                                 KernelPath path);

// weight[ids]: (..., d) for ids (...). On the GPU, the fused backward sorts the ids and sums each
// run of equal ids in registers before writing it (kernels::embedding_backward: a store for a run
// within a tile of sorted positions, atomic adds only where a run crosses tiles); elsewhere, and
// for gradients that are not fp32, it adds the gradient rows into a zero table with index_add.
// The composition sorts the ids first too, in a dozen launches.
torch::Tensor embedding_lookup(const torch::Tensor& weight,
                               const torch::Tensor& ids,
                               KernelPath path);

// x.index_select(0, order), for `order` a permutation of x's rows and `inverse` its inverse
// (inverse[order[i]] = i). The backward gathers the gradient's rows back through `inverse`, where
// index_select's scatters them into zeros with atomic adds; both give the same values.
torch::Tensor reorder_rows(const torch::Tensor& x,
                           const torch::Tensor& order,
                           const torch::Tensor& inverse);

// 0.5 relu(u)^2 in u's dtype.
torch::Tensor relu_squared_half(const torch::Tensor& u, KernelPath path);

enum class LossReduction { kMean, kSum };

// Cross-entropy of the logits features W^T against targets, over every row: features (rows, d)
// or (batch, seq, d), weight (vocab, d), targets with one id per row. The logits are computed in
// features' dtype (bf16 under autocast, as a matrix product casts them) and the softmax in fp32
// (fp64 for fp64 features). Returns a 0-dim fp32 (fp64) loss. The fused path works in chunks of
// `chunk_rows` rows (0: as many as make 2^28 logits) and, when a gradient is wanted, computes the
// gradients of features and weight while it has each chunk's logits; its backward only scales
// them by the incoming gradient.
torch::Tensor tied_head_cross_entropy(const torch::Tensor& features,
                                      const torch::Tensor& weight,
                                      const torch::Tensor& targets,
                                      LossReduction reduction,
                                      KernelPath path,
                                      int64_t chunk_rows = 0);

// The dtype a matrix product gives inputs of x's dtype here: the autocast dtype where autocast
// is on for x's device, else x's own.
torch::Dtype matmul_dtype(const torch::Tensor& x);

}  // namespace parcae::trainer
