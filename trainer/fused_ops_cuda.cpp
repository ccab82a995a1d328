// LibTorch glue of the fused CUDA kernels: checks, allocation and launch on the current stream.
#include "trainer/fused_ops_cuda.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAStream.h>

#include "trainer/kernels/fused_kernels.h"
#include "trainer/torch_compat.h"

namespace parcae::trainer::cuda_ops {
namespace {

namespace k = parcae::trainer::kernels;

void check(cudaError_t status, const char* what) {
  TORCH_CHECK(status == cudaSuccess, what, ": ", cudaGetErrorString(status));
}

cudaStream_t stream() {
  return c10::cuda::getCurrentCUDAStream().stream();
}

bool is_bf16(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16;
}

std::optional<k::Dtype> kernel_dtype(torch::Dtype dtype) {
  if (dtype == torch::kFloat)
    return k::Dtype::kFloat;
  if (dtype == torch::kBFloat16)
    return k::Dtype::kBFloat16;
  return std::nullopt;
}

const uint16_t* bits(const torch::Tensor& t) {
  return t.defined() ? static_cast<const uint16_t*>(t.data_ptr()) : nullptr;
}
uint16_t* mutable_bits(const torch::Tensor& t) {
  return t.defined() ? static_cast<uint16_t*>(t.data_ptr()) : nullptr;
}
const float* floats(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

int multiprocessors() {
  return at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
}

}  // namespace

bool rms_norm_supported(const torch::Tensor& x,
                        const torch::Tensor& delta,
                        const torch::Tensor& weight,
                        torch::Dtype out) {
  const bool plain_ok = x.is_cuda() && kernel_dtype(x.scalar_type()) && kernel_dtype(out) &&
                        weight.defined() && weight.is_cuda() &&
                        weight.scalar_type() == torch::kFloat && weight.dim() == 1 &&
                        x.dim() >= 1 && x.size(-1) == weight.size(0) &&
                        x.size(-1) <= k::rms_norm_max_dim() && x.size(-1) > 0;
  if (!plain_ok || !delta.defined())
    return plain_ok;
  return is_bf16(delta) && delta.is_cuda() && delta.sizes() == x.sizes();
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> rms_norm_forward(
    const torch::Tensor& x,
    const torch::Tensor& delta,
    const torch::Tensor& weight,
    double eps,
    torch::Dtype out) {
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const torch::Tensor input = x.contiguous();
  const torch::Tensor addend = delta.defined() ? delta.contiguous() : torch::Tensor();
  torch::Tensor sum = delta.defined() ? torch::empty_like(input) : torch::Tensor();
  torch::Tensor y = torch::empty(x.sizes(), x.options().dtype(out));
  torch::Tensor rstd = torch::empty({rows}, x.options().dtype(torch::kFloat));
  const torch::Tensor w = weight.contiguous();
  check(k::rms_norm_forward(input.data_ptr(),
                            *kernel_dtype(x.scalar_type()),
                            bits(addend),
                            sum.defined() ? sum.data_ptr() : nullptr,
                            w.data_ptr<float>(),
                            y.data_ptr(),
                            *kernel_dtype(out),
                            rstd.data_ptr<float>(),
                            rows,
                            static_cast<int>(dim),
                            static_cast<float>(eps),
                            stream()),
        "rms_norm_forward");
  return {sum, y, rstd};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> rms_norm_backward(
    const torch::Tensor& dy,
    const torch::Tensor& x,
    const torch::Tensor& grad_sum,
    const torch::Tensor& weight,
    const torch::Tensor& rstd,
    bool bf16_delta_gradient) {
  TORCH_CHECK(kernel_dtype(dy.scalar_type()), "rms_norm_backward: unsupported gradient dtype");
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const torch::Tensor g = dy.contiguous();
  const torch::Tensor g_sum =
      grad_sum.defined() ? grad_sum.to(x.scalar_type()).contiguous() : torch::Tensor();
  torch::Tensor dx = torch::empty_like(x);
  torch::Tensor d_delta = bf16_delta_gradient
                              ? torch::empty(x.sizes(), x.options().dtype(torch::kBFloat16))
                              : torch::Tensor();
  // Enough blocks to fill the GPU a few times over; each sums its rows' weight gradient.
  const int64_t wanted = std::max<int64_t>(1, std::min<int64_t>(rows / 8, 4 * multiprocessors()));
  const int blocks = static_cast<int>(std::max<int64_t>(1, wanted));
  torch::Tensor partial = torch::empty({blocks, dim}, x.options().dtype(torch::kFloat));
  const torch::Tensor w = weight.contiguous();
  check(k::rms_norm_backward(g.data_ptr(),
                             *kernel_dtype(g.scalar_type()),
                             x.data_ptr(),
                             *kernel_dtype(x.scalar_type()),
                             g_sum.defined() ? g_sum.data_ptr() : nullptr,
                             w.data_ptr<float>(),
                             rstd.data_ptr<float>(),
                             dx.data_ptr(),
                             mutable_bits(d_delta),
                             partial.data_ptr<float>(),
                             rows,
                             static_cast<int>(dim),
                             blocks,
                             stream()),
        "rms_norm_backward");
  return {dx, d_delta, partial.sum(0)};
}

bool attention_inputs_supported(const torch::Tensor& qkv,
                                const torch::Tensor& gate_logits,
                                const torch::Tensor& value_embedding,
                                int64_t head_dim) {
  if (!qkv.is_cuda() || !is_bf16(qkv) || qkv.dim() != 3 || qkv.stride(2) != 1 ||
      qkv.stride(0) != qkv.size(1) * qkv.stride(1) || qkv.stride(1) % 2 != 0 || head_dim % 2 != 0 ||
      head_dim > 256 || reinterpret_cast<uintptr_t>(qkv.data_ptr()) % 4 != 0) {
    return false;
  }
  if (gate_logits.defined()) {
    return is_bf16(gate_logits) && gate_logits.is_contiguous() &&
           value_embedding.scalar_type() == torch::kFloat && value_embedding.is_contiguous();
  }
  return true;
}

std::vector<torch::Tensor> attention_inputs_forward(const torch::Tensor& qkv,
                                                    const torch::Tensor& gate_logits,
                                                    const torch::Tensor& value_embedding,
                                                    const torch::Tensor& cos,
                                                    const torch::Tensor& sin,
                                                    int64_t heads,
                                                    int64_t head_dim,
                                                    double eps) {
  const int64_t b = qkv.size(0), s = qkv.size(1);
  const auto options = qkv.options();
  torch::Tensor q = torch::empty({b, s, heads, head_dim}, options);
  torch::Tensor key = torch::empty({b, s, heads, head_dim}, options);
  torch::Tensor v = torch::empty({b, s, heads, head_dim}, options);
  const torch::Tensor c = cos.to(torch::kFloat).contiguous(),
                      sn = sin.to(torch::kFloat).contiguous();
  check(k::attention_inputs_forward(bits(qkv),
                                    qkv.stride(1),
                                    bits(gate_logits),
                                    floats(value_embedding),
                                    c.data_ptr<float>(),
                                    sn.data_ptr<float>(),
                                    mutable_bits(q),
                                    mutable_bits(key),
                                    mutable_bits(v),
                                    b * s,
                                    static_cast<int>(heads),
                                    static_cast<int>(head_dim),
                                    static_cast<int>(s),
                                    static_cast<float>(eps),
                                    stream()),
        "attention_inputs_forward");
  return {q, key, v};
}

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
    double eps) {
  const int64_t b = qkv.size(0), s = qkv.size(1), width = heads * head_dim;
  const torch::Tensor gq = d_q.to(torch::kBFloat16).contiguous();
  const torch::Tensor gk = d_k.to(torch::kBFloat16).contiguous();
  const torch::Tensor gv = d_v.to(torch::kBFloat16).contiguous();
  torch::Tensor d_qkv = torch::empty({b, s, 3 * width}, qkv.options());
  torch::Tensor d_gate, d_value_embedding;
  if (gate_logits.defined()) {
    d_gate = torch::empty_like(gate_logits);
    d_value_embedding = torch::empty_like(value_embedding);
  }
  const torch::Tensor c = cos.to(torch::kFloat).contiguous(),
                      sn = sin.to(torch::kFloat).contiguous();
  check(k::attention_inputs_backward(
            bits(gq),
            bits(gk),
            bits(gv),
            bits(qkv),
            qkv.stride(1),
            bits(gate_logits),
            floats(value_embedding),
            c.data_ptr<float>(),
            sn.data_ptr<float>(),
            mutable_bits(d_qkv),
            mutable_bits(d_gate),
            d_value_embedding.defined() ? d_value_embedding.data_ptr<float>() : nullptr,
            b * s,
            static_cast<int>(heads),
            static_cast<int>(head_dim),
            static_cast<int>(s),
            static_cast<float>(eps),
            stream()),
        "attention_inputs_backward");
  return {d_qkv, d_gate, d_value_embedding};
}

bool relu_squared_supported(const torch::Tensor& u) {
  return u.is_cuda() && is_bf16(u) && reinterpret_cast<uintptr_t>(u.data_ptr()) % 16 == 0;
}

torch::Tensor relu_squared_forward(const torch::Tensor& u) {
  torch::Tensor y = torch::empty_like(u, torch::MemoryFormat::Contiguous);
  check(k::relu_squared_forward(bits(u), mutable_bits(y), u.numel(), stream()),
        "relu_squared_forward");
  return y;
}

torch::Tensor relu_squared_backward(const torch::Tensor& dy, const torch::Tensor& u) {
  const torch::Tensor g = dy.to(torch::kBFloat16).contiguous();
  torch::Tensor du = torch::empty_like(u, torch::MemoryFormat::Contiguous);
  check(k::relu_squared_backward(bits(g), bits(u), mutable_bits(du), u.numel(), stream()),
        "relu_squared_backward");
  return du;
}

bool cross_entropy_supported(const torch::Tensor& features, const torch::Tensor& weight) {
  return features.is_cuda() && is_bf16(features) && weight.is_cuda() &&
         (weight.scalar_type() == torch::kFloat || is_bf16(weight));
}

bool softmax_cross_entropy(const torch::Tensor& logits,
                           const torch::Tensor& targets,
                           const torch::Tensor& losses,
                           double scale,
                           bool write_gradient) {
  if (!is_bf16(logits) || !logits.is_contiguous() || losses.scalar_type() != torch::kFloat ||
      targets.scalar_type() != torch::kLong) {
    return false;
  }
  const torch::Tensor ids = targets.contiguous();
  check(k::softmax_cross_entropy(mutable_bits(logits),
                                 ids.data_ptr<int64_t>(),
                                 losses.data_ptr<float>(),
                                 logits.size(0),
                                 logits.size(1),
                                 static_cast<float>(scale),
                                 write_gradient,
                                 stream()),
        "softmax_cross_entropy");
  return true;
}

bool muon_update(const std::vector<torch::Tensor>& weights,
                 const torch::Tensor& x,
                 const torch::Tensor& factor,
                 double eta,
                 double eta_decay,
                 const torch::Tensor& apply,
                 WeightTable& table) {
  const auto x_dtype = kernel_dtype(x.scalar_type());
  const int64_t n = static_cast<int64_t>(weights.size());
  if (!x_dtype || !x.is_cuda() || !x.is_contiguous() || x.dim() != 3 || x.size(0) != n ||
      n > 65535 || !factor.is_cuda() || factor.scalar_type() != torch::kFloat ||
      !factor.is_contiguous() || factor.dim() != 3 || factor.size(0) != n)
    return false;
  const int64_t rows = x.size(1), cols = x.size(2);
  const bool per_row = factor.size(1) == rows && factor.size(2) == 1;
  if (!per_row && !(factor.size(1) == 1 && factor.size(2) == cols))
    return false;
  if (apply.defined() && (!apply.is_cuda() || apply.scalar_type() != torch::kFloat ||
                          apply.numel() != 1 || apply.get_device() != x.get_device()))
    return false;
  std::vector<int64_t> addresses;
  for (const torch::Tensor& w : weights) {
    if (!w.is_cuda() || w.get_device() != x.get_device() || w.scalar_type() != torch::kFloat ||
        !w.is_contiguous() || w.dim() != 2 || w.size(0) != rows || w.size(1) != cols)
      return false;
    addresses.push_back(reinterpret_cast<int64_t>(w.data_ptr<float>()));
  }
  // The table of weight addresses, copied to the device without waiting, once while the weights
  // stay put: building it took about 0.1 ms of host time a call.
  if (!table.device.defined() || table.addresses != addresses ||
      table.device.device() != x.device()) {
    table.device = compat::to_device(addresses, x.device());
    table.addresses = std::move(addresses);
  }
  check(k::muon_update(reinterpret_cast<float* const*>(table.device.data_ptr<int64_t>()),
                       n,
                       x.data_ptr(),
                       *x_dtype,
                       factor.data_ptr<float>(),
                       per_row,
                       rows,
                       cols,
                       static_cast<float>(eta),
                       static_cast<float>(eta_decay),
                       apply.defined() ? apply.data_ptr<float>() : nullptr,
                       multiprocessors(),
                       stream()),
        "muon_update");
  return true;
}

torch::Tensor embedding_backward(const torch::Tensor& ids, const torch::Tensor& g, int64_t rows) {
  const auto g_dtype = kernel_dtype(g.scalar_type());
  if (!g_dtype || !g.is_cuda() || !g.is_contiguous() || g.dim() != 2 || !ids.is_cuda() ||
      ids.scalar_type() != torch::kLong || ids.dim() != 1 || ids.size(0) != g.size(0) ||
      ids.get_device() != g.get_device() || g.size(1) > std::numeric_limits<int>::max())
    return {};
  // Stable: within a tile, a run of equal ids is summed in the order of g's rows.
  const auto [sorted_ids, order] = ids.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  torch::Tensor d_weight = torch::zeros({rows, g.size(1)}, g.options().dtype(torch::kFloat));
  check(k::embedding_backward(sorted_ids.data_ptr<int64_t>(),
                              order.data_ptr<int64_t>(),
                              ids.size(0),
                              g.data_ptr(),
                              *g_dtype,
                              d_weight.data_ptr<float>(),
                              rows,
                              static_cast<int>(g.size(1)),
                              stream()),
        "embedding_backward");
  return d_weight;
}

}  // namespace parcae::trainer::cuda_ops
