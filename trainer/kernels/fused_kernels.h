// Launchers of the trainer's fused CUDA kernels: RMSNorm, the attention inputs (RoPE and QK-norm
// of q and k, the gated value embedding added to v), ReLU^2, softmax cross-entropy with its
// gradient written over the logits, Muon's weight update and the embedding tables' gradient. Each
// replaces a chain of ATen element-wise kernels of trainer/fused_ops.cpp's reference path by one
// pass over memory, with the same arithmetic in fp32 and the same roundings to bf16.
//
// Plain pointers and sizes only, so that the .cu files build with nvcc alone and the LibTorch
// glue (fused_ops_cuda.cpp) owns allocation, shapes and checks. Tensors are row-major and
// contiguous unless a stride is given. Every launcher enqueues on `stream` and returns the
// launch's cudaError_t; none synchronises.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace parcae::trainer::kernels {

// The element types of activations: fp32 or bf16 (stored as uint16_t bits).
enum class Dtype { kFloat, kBFloat16 };

// RMSNorm of s = x, or of the residual sum s = x + delta (delta bf16, the sum rounded to x's type
// as ATen's add rounds it, and written to sum_out in x's type):
//   y = round(round(s * r) * round(w)), r = rsqrt(mean(s^2) + eps) over each row of `dim`,
// where round() is to x's type (as ATen rounds the normalised value and the weight to x's type
// before the product) and y is written in y_dtype. weight may be null (no weight); delta and
// sum_out are both null or both given. rstd (rows) receives r.
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
                             cudaStream_t stream);

// Gradient of rms_norm_forward with respect to its input s (x here is s: the saved sum, or the
// plain input): ds = r * (dn - n * mean(dn * n)) + grad_sum, n = s r, dn = dy * w, written to dx
// in s's type and, when d_delta is given, to d_delta in bf16 (the gradient of the bf16 addend).
// grad_sum (s's type) may be null: no gradient reached the sum by another path. With a weight,
// block b of `blocks` writes its partial sum of dy * n per column to weight_partial[b * dim ...];
// the caller sums the `blocks` rows. Needs dim <= rms_norm_max_dim().
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
                              cudaStream_t stream);
int rms_norm_max_dim();

// The attention inputs of one layer from its fused projection qkv, bf16, row t at
// qkv + t * qkv_stride holding [q | k | v], each heads * head_dim:
//   q_out, k_out = rms_normalize(rope(q or k)) per head (fp32 arithmetic, eps)
//   v_out        = v + round(round(2 sigmoid(gate_logits)) * value_embedding)   (with a gate)
//                = v                                                            (without)
// Outputs are contiguous (rows, heads * head_dim) bf16. cos and sin are (seq, head_dim / 2) fp32;
// row t sits at position t mod seq. gate_logits: (rows, heads) bf16, value_embedding:
// (rows, heads * head_dim) fp32, both null without a gate. Needs head_dim even and
// head_dim <= 256, qkv 4-byte aligned and qkv_stride even.
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
                                     cudaStream_t stream);

// Gradients of attention_inputs_forward: d_qkv (rows, 3 * heads * head_dim, contiguous) from
// d_q, d_k, d_v (contiguous, as the outputs); with a gate also d_gate_logits (rows, heads) bf16
// and d_value_embedding (rows, heads * head_dim) fp32.
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
                                      cudaStream_t stream);

// y = 0.5 relu(u)^2 and du = dy * relu(u), bf16, n elements.
cudaError_t relu_squared_forward(const uint16_t* u, uint16_t* y, int64_t n, cudaStream_t stream);
cudaError_t relu_squared_backward(
    const uint16_t* dy, const uint16_t* u, uint16_t* du, int64_t n, cudaStream_t stream);

// Softmax cross-entropy of bf16 logits (rows, vocab), row-major: losses[r] = logsumexp(row r) -
// logit[r, targets[r]] in fp32 (NaN for a target outside [0, vocab)). With write_gradient, each
// row is overwritten by grad_scale * (softmax(row) - onehot(target)) in bf16.
cudaError_t softmax_cross_entropy(uint16_t* logits,
                                  const int64_t* targets,
                                  float* losses,
                                  int64_t rows,
                                  int64_t vocab,
                                  float grad_scale,
                                  bool write_gradient,
                                  cudaStream_t stream);

// Muon's last stage for `matrices` fp32 weights of one shape (rows, cols), weights[k] each (a
// device array of device pointers): with u = factor * x[k] (x stacked (matrices, rows, cols), bf16
// or fp32; factor (matrices, rows) per row or (matrices, cols) per column),
//   w <- w - (eta * u + (u * w >= 0 ? eta_decay * w : 0)),
// unless `apply` (a device scalar, or null for always) is 0.
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
                        cudaStream_t stream);

// The gradient of an embedding lookup, added into d_weight (rows, dim) fp32, zero on entry: row r
// receives the sum of the rows of g (n, dim, fp32 or bf16) whose id is r. sorted_ids (n) holds the
// ids in ascending order and order (n) the row of g each came from. Runs of one id are summed in
// registers over tiles of sorted positions; a run that spans tiles adds its partial sums
// atomically, so, as with index_add_, its last bits may differ between runs.
cudaError_t embedding_backward(const int64_t* sorted_ids,
                               const int64_t* order,
                               int64_t n,
                               const void* g,
                               Dtype g_dtype,
                               float* d_weight,
                               int64_t rows,
                               int dim,
                               cudaStream_t stream);

}  // namespace parcae::trainer::kernels
