// The CUDA side of fused_ops.h: LibTorch tensors in, the kernels of trainer/kernels/ launched on
// the current stream, tensors out. Built only with PARCAE_WITH_CUDA. Each *_supported() says
// whether the kernels take these tensors (dtypes, layout, sizes); fused_ops.cpp falls back to the
// ATen composition where they do not.
#pragma once

#include <cstdint>
#include <tuple>
#include <vector>

#include <torch/torch.h>

#include "trainer/fused_ops.h"

namespace parcae::trainer::cuda_ops {

// RMSNorm of x, or of x + delta with delta bf16 (undefined: none).
bool rms_norm_supported(const torch::Tensor& x,
                        const torch::Tensor& delta,
                        const torch::Tensor& weight,
                        torch::Dtype out);
// The sum x + delta (x's dtype; undefined without delta), y (x's shape, `out` dtype) and rstd
// (rows) fp32.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> rms_norm_forward(
    const torch::Tensor& x,
    const torch::Tensor& delta,
    const torch::Tensor& weight,
    double eps,
    torch::Dtype out);
// From dy and the normalised input x (the sum, with a residual): dx = the input's gradient plus
// grad_sum (undefined: none), in x's dtype; the same in bf16 with bf16_delta_gradient (else
// undefined); and dweight (fp32).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> rms_norm_backward(
    const torch::Tensor& dy,
    const torch::Tensor& x,
    const torch::Tensor& grad_sum,
    const torch::Tensor& weight,
    const torch::Tensor& rstd,
    bool bf16_delta_gradient);

bool attention_inputs_supported(const torch::Tensor& qkv,
                                const torch::Tensor& gate_logits,
                                const torch::Tensor& value_embedding,
                                int64_t head_dim);
// q, k, v (batch, seq, heads, head_dim) bf16, contiguous.
std::vector<torch::Tensor> attention_inputs_forward(const torch::Tensor& qkv,
                                                    const torch::Tensor& gate_logits,
                                                    const torch::Tensor& value_embedding,
                                                    const torch::Tensor& cos,
                                                    const torch::Tensor& sin,
                                                    int64_t heads,
                                                    int64_t head_dim,
                                                    double eps);
// d_qkv (batch, seq, 3 W) bf16, and with a gate d_gate_logits and d_value_embedding.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> attention_inputs_backward(
    const torch::Tensor& d_q,
    const torch::Tensor& d_k,
    const torch::Tensor& d_v,
    const torch::Tensor& qkv,
    const torch::Tensor& gate_logits,
    const torch::Tensor& value_embedding,
    const torch::Tensor& cos,
    const torch::Tensor& sin,
    int64_t heads,
    int64_t head_dim,
    double eps);

bool relu_squared_supported(const torch::Tensor& u);
torch::Tensor relu_squared_forward(const torch::Tensor& u);
torch::Tensor relu_squared_backward(const torch::Tensor& dy, const torch::Tensor& u);

bool cross_entropy_supported(const torch::Tensor& features, const torch::Tensor& weight);
// Runs the kernel on bf16 logits and returns true; returns false (nothing done) for other dtypes.
bool softmax_cross_entropy(const torch::Tensor& logits,
                           const torch::Tensor& targets,
                           const torch::Tensor& losses,
                           double scale,
                           bool write_gradient);

// Muon's weight update (kernels::muon_update) over `weights`, fp32 CUDA tensors of x's matrix
// shape; x (n, rows, cols) bf16 or fp32, factor (n, rows, 1) or (n, 1, cols) fp32; `apply`
// undefined or a one-element fp32 tensor on the GPU (0: leave the weights). `table` keeps the
// weights' device addresses between calls. Returns false, having done nothing, where the kernel
// does not take these tensors.
bool muon_update(const std::vector<torch::Tensor>& weights,
                 const torch::Tensor& x,
                 const torch::Tensor& factor,
                 double eta,
                 double eta_decay,
                 const torch::Tensor& apply,
                 WeightTable& table);

// The gradient of an embedding lookup of a (rows, dim) table by `ids` (n, int64) with output
// gradient g (n, dim) fp32 or bf16, as a (rows, dim) fp32 table (kernels::embedding_backward).
// Undefined, having done nothing, where the kernel does not take these tensors.
torch::Tensor embedding_backward(const torch::Tensor& ids, const torch::Tensor& g, int64_t rows);

}  // namespace parcae::trainer::cuda_ops
