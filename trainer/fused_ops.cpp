// The reference compositions and the fused operations of fused_ops.h: autograd functions whose
// forward and backward run the CUDA kernels (fused_ops_cuda.h) on GPU tensors and the same
// formulas written in ATen elsewhere.
#include "trainer/fused_ops.h"

#include <algorithm>
#include <vector>

#include "trainer/torch_compat.h"

#if PARCAE_WITH_CUDA
#include "trainer/fused_ops_cuda.h"
#endif

namespace parcae::trainer {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Logit elements held at once by the fused cross-entropy: 2^28 (512 MiB in bf16), 8,192 rows of
// a 32,768-token vocabulary, enough for the chunk's matrix products to run at full speed.
constexpr int64_t kCrossEntropyChunkElements = int64_t{1} << 28;

#if PARCAE_WITH_CUDA
bool on_gpu(const torch::Tensor& x) {
  return x.is_cuda();
}
#endif

// Rotates adjacent pairs (2i, 2i+1) of the last dim by the table's angles; with `inverse`, by
// their negatives (the transpose, for the backward). x: (batch, seq, heads, hd), compute dtype.
torch::Tensor rotate_pairs(const torch::Tensor& x, const RotaryTable& rope, bool inverse) {
  const auto b = x.size(0), s = x.size(1), h = x.size(2), hd = x.size(3);
  const torch::Tensor pairs = x.reshape({b, s, h, hd / 2, 2});
  const torch::Tensor x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);
  const torch::Tensor cos = rope.cos.narrow(0, 0, s).view({1, s, 1, hd / 2});
  torch::Tensor sin = rope.sin.narrow(0, 0, s).view({1, s, 1, hd / 2});
  if (inverse)
    sin = -sin;
  return torch::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).reshape({b, s, h, hd});
}

// d/dx of rms_normalize at x (no weight) applied to dn: r (dn - n mean(dn n)), n = x r. All in
// the compute dtype; `r` broadcasts over the last dim.
torch::Tensor rms_normalize_backward(const torch::Tensor& x,
                                     const torch::Tensor& r,
                                     const torch::Tensor& dn) {
  const torch::Tensor n = x * r;
  return r * (dn - n * (dn * n).mean(-1, /*keepdim=*/true));
}

torch::Tensor gate_of(const torch::Tensor& gate_logits) {
  return 2.0 * torch::sigmoid(gate_logits);
}

// ---- RMSNorm --------------------------------------------------------------------------------

// RMSNorm of x, or of the residual sum x + delta, which it also returns. Without a residual,
// delta is an empty placeholder (`residual` false) and so is the first output.
class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx,
                               const torch::Tensor& x,
                               const torch::Tensor& delta_input,
                               const torch::Tensor& weight,
                               double eps,
                               int64_t out_dtype,
                               bool residual) {
    const auto dtype = static_cast<torch::Dtype>(out_dtype);
    const torch::Tensor delta = residual ? delta_input : torch::Tensor();
    torch::Tensor sum, y, rstd;
#if PARCAE_WITH_CUDA
    if (on_gpu(x)) {
      std::tie(sum, y, rstd) = cuda_ops::rms_norm_forward(x, delta, weight, eps, dtype);
    }
#endif
    if (!y.defined()) {
      if (residual)
        sum = x + delta;
      const torch::Tensor input = residual ? sum : x;
      const torch::Tensor wide = input.to(compute_dtype(input));
      rstd = torch::rsqrt(wide.pow(2).mean(-1, /*keepdim=*/true) + eps);
      y = ((wide * rstd).to(input.scalar_type()) * weight.to(input.scalar_type())).to(dtype);
    }
    const torch::Tensor normalized = residual ? sum : x.contiguous();
    ctx->save_for_backward({normalized, weight, rstd});
    ctx->saved_data["residual"] = residual;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["delta_dtype"] =
        static_cast<int64_t>(residual ? delta.scalar_type() : x.scalar_type());
    ctx->set_materialize_grads(false);
    // Autograd functions return no undefined outputs: an empty one stands for the missing sum.
    return {residual ? sum : torch::empty({0}, y.options()), y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& input = saved[0];
    const torch::Tensor& weight = saved[1];
    const torch::Tensor& rstd = saved[2];
    const bool residual = ctx->saved_data["residual"].toBool();
    const auto x_dtype = static_cast<torch::Dtype>(ctx->saved_data["x_dtype"].toInt());
    const auto delta_dtype = static_cast<torch::Dtype>(ctx->saved_data["delta_dtype"].toInt());
    const torch::Tensor& g_sum = grads[0];
    const torch::Tensor dy =
        grads[1].defined() ? grads[1] : torch::zeros(input.sizes(), input.options());
    torch::Tensor dx, d_delta, dw;
#if PARCAE_WITH_CUDA
    if (on_gpu(input)) {
      const bool bf16_delta = residual && delta_dtype == torch::kBFloat16 && x_dtype != delta_dtype;
      std::tie(dx, d_delta, dw) = cuda_ops::rms_norm_backward(
          dy, input, residual ? g_sum : torch::Tensor(), weight, rstd, bf16_delta);
    }
#endif
    if (!dx.defined()) {
      const torch::Tensor wide = input.to(compute_dtype(input));
      const torch::Tensor g = dy.to(compute_dtype(input));
      const torch::Tensor w = weight.to(compute_dtype(input));
      torch::Tensor d_input = rms_normalize_backward(wide, rstd, g * w);
      if (residual && g_sum.defined())
        d_input = d_input + g_sum.to(compute_dtype(input));
      dx = d_input.to(input.scalar_type());
      dw = (g * (wide * rstd)).reshape({-1, input.size(-1)}).sum(0).to(weight.scalar_type());
    }
    if (residual && !d_delta.defined())
      d_delta = dx.to(delta_dtype);
    return {dx.to(x_dtype),
            residual ? d_delta : torch::Tensor(),
            dw,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

// ---- attention inputs ------------------------------------------------------------------------

class AttentionInputsFunction : public torch::autograd::Function<AttentionInputsFunction> {
 public:
  // qkv (b, s, 3 W), W = heads * head_dim; returns q, k, v (b, s, heads, head_dim).
  // Without a gate, gate_logits and value_embedding are empty placeholders (`gated` false):
  // autograd functions take no undefined inputs.
  static variable_list forward(AutogradContext* ctx,
                               const torch::Tensor& qkv,
                               const torch::Tensor& gate_input,
                               const torch::Tensor& value_input,
                               const torch::Tensor& cos,
                               const torch::Tensor& sin,
                               int64_t heads,
                               int64_t head_dim,
                               double eps,
                               bool gated) {
    const torch::Tensor gate_logits = gated ? gate_input : torch::Tensor();
    const torch::Tensor value_embedding = gated ? value_input : torch::Tensor();
    ctx->save_for_backward({qkv, gate_logits, value_embedding, cos, sin});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["head_dim"] = head_dim;
    ctx->saved_data["eps"] = eps;
#if PARCAE_WITH_CUDA
    if (on_gpu(qkv)) {
      return cuda_ops::attention_inputs_forward(
          qkv, gate_logits, value_embedding, cos, sin, heads, head_dim, eps);
    }
#endif
    const int64_t b = qkv.size(0), s = qkv.size(1), width = heads * head_dim;
    const RotaryTable rope{cos, sin};
    auto rotated_normed = [&](int64_t part) {
      const torch::Tensor x = qkv.narrow(-1, part * width, width).reshape({b, s, heads, head_dim});
      return rms_normalize(rotate_pairs(x.to(compute_dtype(x)), rope, false), eps)
          .to(qkv.scalar_type());
    };
    torch::Tensor v = qkv.narrow(-1, 2 * width, width).reshape({b, s, heads, head_dim});
    if (gate_logits.defined()) {
      const torch::Tensor added =
          gate_of(gate_logits).unsqueeze(-1) * value_embedding.view({b, s, heads, head_dim});
      v = v + added.to(v.scalar_type());
    }
    return {rotated_normed(0), rotated_normed(1), v.contiguous()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& qkv = saved[0];
    const torch::Tensor& gate_logits = saved[1];
    const torch::Tensor& value_embedding = saved[2];
    const torch::Tensor& cos = saved[3];
    const torch::Tensor& sin = saved[4];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const int64_t head_dim = ctx->saved_data["head_dim"].toInt();
    const double eps = ctx->saved_data["eps"].toDouble();
    const int64_t b = qkv.size(0), s = qkv.size(1), width = heads * head_dim;
    std::vector<torch::Tensor> d_out(3);
    for (size_t i = 0; i < 3; ++i) {
      d_out[i] = grads[i].defined() ? grads[i].contiguous()
                                    : torch::zeros({b, s, heads, head_dim}, qkv.options());
    }
    torch::Tensor d_qkv, d_gate, d_value_embedding;
#if PARCAE_WITH_CUDA
    if (on_gpu(qkv)) {
      std::tie(d_qkv, d_gate, d_value_embedding) =
          cuda_ops::attention_inputs_backward(d_out[0],
                                              d_out[1],
                                              d_out[2],
                                              qkv,
                                              gate_logits,
                                              value_embedding,
                                              cos,
                                              sin,
                                              heads,
                                              head_dim,
                                              eps);
    }
#endif
    if (!d_qkv.defined()) {
      const RotaryTable rope{cos, sin};
      const torch::Dtype wide = compute_dtype(qkv);
      auto through_norm_and_rope = [&](int64_t part) {
        const torch::Tensor x =
            qkv.narrow(-1, part * width, width).reshape({b, s, heads, head_dim}).to(wide);
        const torch::Tensor rotated = rotate_pairs(x, rope, false);
        const torch::Tensor r = torch::rsqrt(rotated.pow(2).mean(-1, /*keepdim=*/true) + eps);
        const torch::Tensor d_rotated =
            rms_normalize_backward(rotated, r, d_out[static_cast<size_t>(part)].to(wide));
        return rotate_pairs(d_rotated, rope, true).to(qkv.scalar_type());
      };
      d_qkv = torch::cat({through_norm_and_rope(0).reshape({b, s, width}),
                          through_norm_and_rope(1).reshape({b, s, width}),
                          d_out[2].reshape({b, s, width})},
                         -1);
      if (gate_logits.defined()) {
        const torch::Tensor gate = gate_of(gate_logits);  // (b, s, heads), gate_logits' dtype
        const torch::Tensor ve = value_embedding.view({b, s, heads, head_dim});
        const torch::Tensor d_added = d_out[2].to(ve.scalar_type());
        d_value_embedding = (d_added * gate.unsqueeze(-1)).reshape(value_embedding.sizes());
        const torch::Tensor d_gate_value = (d_added * ve).sum(-1).to(compute_dtype(gate_logits));
        const torch::Tensor sigmoid = torch::sigmoid(gate_logits.to(compute_dtype(gate_logits)));
        d_gate = (2.0 * d_gate_value * sigmoid * (1.0 - sigmoid)).to(gate_logits.scalar_type());
      }
    }
    return {d_qkv,
            d_gate,
            d_value_embedding,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

// ---- ReLU^2 ------------------------------------------------------------------------------

class ReluSquaredFunction : public torch::autograd::Function<ReluSquaredFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& u) {
    const torch::Tensor input = u.contiguous();
    ctx->save_for_backward({input});
#if PARCAE_WITH_CUDA
    if (on_gpu(input))
      return cuda_ops::relu_squared_forward(input);
#endif
    const torch::Tensor r = torch::relu(input.to(compute_dtype(input)));
    return (0.5 * r * r).to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor u = ctx->get_saved_variables()[0];
    const torch::Tensor dy = grads[0].contiguous();
#if PARCAE_WITH_CUDA
    if (on_gpu(u))
      return {cuda_ops::relu_squared_backward(dy, u)};
#endif
    const torch::Dtype wide = compute_dtype(u);
    return {(dy.to(wide) * torch::relu(u.to(wide))).to(u.scalar_type())};
  }
};

// ---- embedding lookup ----------------------------------------------------------------------

class EmbeddingFunction : public torch::autograd::Function<EmbeddingFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx,
                               const torch::Tensor& weight,
                               const torch::Tensor& ids) {
    const torch::Tensor flat = ids.reshape({-1});
    ctx->save_for_backward({flat});
    ctx->saved_data["rows"] = weight.size(0);
    std::vector<int64_t> shape = ids.sizes().vec();
    shape.push_back(weight.size(1));
    return weight.index_select(0, flat).view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor flat = ctx->get_saved_variables()[0];
    const torch::Tensor g = grads[0].reshape({flat.size(0), -1});
    const int64_t rows = ctx->saved_data["rows"].toInt();
#if PARCAE_WITH_CUDA
    // fp32 gradients only, so that the table's gradient keeps g's dtype on either path.
    if (on_gpu(g) && g.scalar_type() == torch::kFloat) {
      torch::Tensor d_weight = cuda_ops::embedding_backward(flat, g.contiguous(), rows);
      if (d_weight.defined())
        return {d_weight, torch::Tensor()};
    }
#endif
    torch::Tensor d_weight = torch::zeros({rows, g.size(1)}, g.options());
    d_weight.index_add_(0, flat, g);
    return {d_weight, torch::Tensor()};
  }
};

// ---- a permutation of rows ----------------------------------------------------------------------

class ReorderRowsFunction : public torch::autograd::Function<ReorderRowsFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx,
                               const torch::Tensor& x,
                               const torch::Tensor& order,
                               const torch::Tensor& inverse) {
    ctx->save_for_backward({inverse});
    return x.index_select(0, order);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor inverse = ctx->get_saved_variables()[0];
    return {grads[0].index_select(0, inverse), torch::Tensor(), torch::Tensor()};
  }
};

// ---- tied head and cross-entropy ---------------------------------------------------------------

// Over one chunk: losses (rows) of the logits (rows, vocab) against targets; with
// `write_gradient`, the logits are overwritten by scale * (softmax - onehot).
void softmax_cross_entropy(torch::Tensor& logits,
                           const torch::Tensor& targets,
                           torch::Tensor losses,
                           double scale,
                           bool write_gradient) {
#if PARCAE_WITH_CUDA
  if (on_gpu(logits) &&
      cuda_ops::softmax_cross_entropy(logits, targets, losses, scale, write_gradient)) {
    return;
  }
#endif
  const torch::Tensor wide = logits.to(compute_dtype(logits));
  const torch::Tensor lse = torch::logsumexp(wide, -1, /*keepdim=*/true);
  const torch::Tensor index = targets.unsqueeze(1);
  losses.copy_((lse - wide.gather(1, index)).squeeze(1));
  if (write_gradient) {
    torch::Tensor gradient = torch::exp(wide - lse);
    gradient.scatter_add_(1, index, torch::full_like(index, -1.0, gradient.options()));
    logits.copy_(gradient * scale);
  }
}

class TiedHeadCrossEntropyFunction
    : public torch::autograd::Function<TiedHeadCrossEntropyFunction> {
 public:
  // features (rows, d), weight (vocab, d), targets (rows) int64.
  static torch::Tensor forward(AutogradContext* ctx,
                               const torch::Tensor& features,
                               const torch::Tensor& weight,
                               const torch::Tensor& targets,
                               bool sum,
                               bool want_gradient,
                               int64_t chunk_rows) {
    const int64_t rows = features.size(0), vocab = weight.size(0);
    const torch::Tensor head = weight.to(features.scalar_type());
    const double scale = sum ? 1.0 : 1.0 / static_cast<double>(std::max<int64_t>(rows, 1));
    torch::Tensor losses = torch::empty({rows}, features.options().dtype(compute_dtype(features)));
    torch::Tensor d_features, d_weight;
    if (want_gradient) {
      d_features = torch::empty_like(features);
      d_weight = torch::zeros_like(weight);
    }
    const int64_t chunk =
        chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, kCrossEntropyChunkElements / vocab);
    for (int64_t first = 0; first < rows; first += chunk) {
      const int64_t n = std::min(chunk, rows - first);
      const torch::Tensor part = features.narrow(0, first, n);
      torch::Tensor logits = torch::mm(part, head.t());  // (n, vocab), features' dtype
      softmax_cross_entropy(
          logits, targets.narrow(0, first, n), losses.narrow(0, first, n), scale, want_gradient);
      if (want_gradient) {
        torch::Tensor d_part = d_features.narrow(0, first, n);
        torch::mm_out(d_part, logits, head);
        d_weight.add_(torch::mm(logits.t(), part));
      }
    }
    ctx->save_for_backward({d_features, d_weight});
    return sum ? losses.sum() : losses.sum() * scale;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& g = grads[0];
    torch::Tensor d_features, d_weight;
    if (saved[0].defined())
      d_features = saved[0] * g.to(saved[0].scalar_type());
    if (saved[1].defined())
      d_weight = saved[1] * g.to(saved[1].scalar_type());
    return {
        d_features, d_weight, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

RotaryTable make_rotary_table(
    int64_t seq, int64_t head_dim, double theta, torch::Device device, torch::Dtype dtype) {
  const auto options = torch::TensorOptions().dtype(torch::kDouble);
  const torch::Tensor i = torch::arange(head_dim / 2, options);
  const torch::Tensor inverse_frequency =
      torch::pow(theta, -2.0 * i / static_cast<double>(head_dim));
  const torch::Tensor angles = torch::outer(torch::arange(seq, options), inverse_frequency);
  return {angles.cos().to(device, dtype), angles.sin().to(device, dtype)};
}

torch::Tensor rms_normalize(const torch::Tensor& x, double eps) {
  const torch::Tensor wide = x.to(compute_dtype(x));
  return (wide * torch::rsqrt(wide.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
}

torch::Dtype matmul_dtype(const torch::Tensor& x) {
  const torch::Dtype own = x.scalar_type();
  const bool lowerable = own == torch::kFloat || own == torch::kBFloat16 || own == torch::kHalf;
  if (lowerable && compat::autocast_enabled(x.device().type()))
    return compat::autocast_dtype(x.device().type());
  return own;
}

ResidualNorm add_rms_norm(const torch::Tensor& x,
                          const torch::Tensor& delta,
                          const torch::Tensor& weight,
                          double eps,
                          torch::Dtype out_dtype,
                          KernelPath path) {
  bool fused = path == KernelPath::kFused;
#if PARCAE_WITH_CUDA
  if (fused && on_gpu(x))
    fused = cuda_ops::rms_norm_supported(x, delta, weight, out_dtype);
#endif
  if (fused) {
    const bool residual = delta.defined();
    const variable_list out =
        RmsNormFunction::apply(x,
                               residual ? delta : torch::empty({0}, x.options()),
                               weight,
                               eps,
                               static_cast<int64_t>(out_dtype),
                               residual);
    return {residual ? out[0] : x, out[1]};
  }
  const torch::Tensor sum = delta.defined() ? x + delta : x;
  return {sum, (rms_normalize(sum, eps) * weight.to(sum.scalar_type())).to(out_dtype)};
}

torch::Tensor rms_norm(const torch::Tensor& x,
                       const torch::Tensor& weight,
                       double eps,
                       torch::Dtype out_dtype,
                       KernelPath path) {
  return add_rms_norm(x, torch::Tensor(), weight, eps, out_dtype, path).normed;
}

AttentionInputs attention_inputs(const torch::Tensor& qkv,
                                 const torch::Tensor& gate_logits,
                                 const torch::Tensor& value_embedding,
                                 const RotaryTable& rope,
                                 int64_t heads,
                                 int64_t head_dim,
                                 double qk_eps,
                                 KernelPath path) {
  TORCH_CHECK(gate_logits.defined() == value_embedding.defined(),
              "attention_inputs needs both the gate logits and the value embedding, or neither");
  bool fused = path == KernelPath::kFused;
#if PARCAE_WITH_CUDA
  if (fused && on_gpu(qkv))
    fused = cuda_ops::attention_inputs_supported(qkv, gate_logits, value_embedding, head_dim);
#endif
  if (fused) {
    const bool gated = gate_logits.defined();
    const torch::Tensor none = torch::empty({0}, qkv.options());
    const variable_list out = AttentionInputsFunction::apply(qkv,
                                                             gated ? gate_logits : none,
                                                             gated ? value_embedding : none,
                                                             rope.cos,
                                                             rope.sin,
                                                             heads,
                                                             head_dim,
                                                             qk_eps,
                                                             gated);
    return {out[0], out[1], out[2]};
  }
  const int64_t b = qkv.size(0), s = qkv.size(1), width = heads * head_dim;
  const torch::Tensor q = qkv.narrow(-1, 0, width).view({b, s, heads, head_dim});
  const torch::Tensor k = qkv.narrow(-1, width, width).view({b, s, heads, head_dim});
  torch::Tensor v = qkv.narrow(-1, 2 * width, width).view({b, s, heads, head_dim});
  if (gate_logits.defined()) {
    const torch::Tensor added =
        gate_of(gate_logits).unsqueeze(-1) * value_embedding.view({b, s, heads, head_dim});
    v = v + added.to(v.scalar_type());
  }
  // RoPE, then QK-norm, both in fp32 (fp64 for fp64 input); cast back to v's dtype.
  auto rotated_normed = [&](const torch::Tensor& x) {
    return rms_normalize(rotate_pairs(x.to(compute_dtype(x)), rope, false), qk_eps)
        .to(v.scalar_type());
  };
  return {rotated_normed(q), rotated_normed(k), v};
}

torch::Tensor embedding_lookup(const torch::Tensor& weight,
                               const torch::Tensor& ids,
                               KernelPath path) {
  if (path == KernelPath::kFused)
    return EmbeddingFunction::apply(weight, ids);
  return torch::nn::functional::embedding(ids, weight);
}

torch::Tensor reorder_rows(const torch::Tensor& x,
                           const torch::Tensor& order,
                           const torch::Tensor& inverse) {
  return ReorderRowsFunction::apply(x, order, inverse);
}

torch::Tensor relu_squared_half(const torch::Tensor& u, KernelPath path) {
  bool fused = path == KernelPath::kFused;
#if PARCAE_WITH_CUDA
  if (fused && on_gpu(u))
    fused = cuda_ops::relu_squared_supported(u);
#endif
  if (fused)
    return ReluSquaredFunction::apply(u);
  return 0.5 * torch::relu(u).square();
}

torch::Tensor tied_head_cross_entropy(const torch::Tensor& features,
                                      const torch::Tensor& weight,
                                      const torch::Tensor& targets,
                                      LossReduction reduction,
                                      KernelPath path,
                                      int64_t chunk_rows) {
  const torch::Tensor rows = features.reshape({-1, features.size(-1)});
  const torch::Tensor ids = targets.reshape({-1});
  TORCH_CHECK(rows.size(0) == ids.size(0),
              "cross-entropy over ",
              rows.size(0),
              " rows but ",
              ids.size(0),
              " targets");
  bool fused = path == KernelPath::kFused;
#if PARCAE_WITH_CUDA
  if (fused && on_gpu(features))
    fused = cuda_ops::cross_entropy_supported(rows, weight);
#endif
  if (fused) {
    // Gradients are computed in the forward only where a backward can follow.
    const bool want_gradient =
        torch::GradMode::is_enabled() && (rows.requires_grad() || weight.requires_grad());
    return TiedHeadCrossEntropyFunction::apply(rows.contiguous(),
                                               weight,
                                               ids.contiguous(),
                                               reduction == LossReduction::kSum,
                                               want_gradient,
                                               chunk_rows);
  }
  const torch::Tensor logits =
      torch::nn::functional::linear(rows, weight).to(compute_dtype(weight));
  auto options = torch::nn::functional::CrossEntropyFuncOptions();
  if (reduction == LossReduction::kSum)
    options.reduction(torch::kSum);
  return torch::nn::functional::cross_entropy(logits, ids, options);
}

}  // namespace parcae::trainer
