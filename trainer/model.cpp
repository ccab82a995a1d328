// The model modules, their forward passes (parcae.md §2, §3, §5, §6) and initialisation (§4).
#include "trainer/model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "trainer/torch_compat.h"

namespace parcae::trainer {
namespace {

using sweeps::Injection;

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

// Samples TruncNormal(0, sigma^2) cut at +-3 sigma by inverting the normal CDF on a uniform
// draw restricted to [Phi(-3), Phi(3)], as torch.nn.init.trunc_normal_ does.
torch::Tensor truncated_normal(const torch::Tensor& uniform, double sigma) {
  const double lower = 0.5 * std::erfc(3.0 / std::sqrt(2.0));  // Phi(-3)
  const double upper = 1.0 - lower;
  const torch::Tensor p = uniform * (upper - lower) + lower;
  return (torch::erfinv(2.0 * p - 1.0) * (std::sqrt(2.0) * sigma)).clamp(-3.0 * sigma, 3.0 * sigma);
}

// Ortho(sigma) of parcae.md §4: Q of the QR of a Gaussian matrix (its transpose for a wide
// weight), signs of diag(R) folded in, scaled so that each entry has std sigma.
void init_orthogonal(torch::Tensor& weight, double sigma) {
  const int64_t rows = weight.size(0), cols = weight.size(1);
  const bool wide = rows < cols;
  const torch::Tensor gaussian =
      torch::randn(wide ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows, cols},
                   torch::TensorOptions().dtype(torch::kDouble));
  auto [q, r] = torch::linalg_qr(gaussian, "reduced");
  const torch::Tensor signs = torch::where(
      r.diagonal() >= 0, torch::ones_like(r.diagonal()), -torch::ones_like(r.diagonal()));
  q = q * signs.unsqueeze(0);
  if (wide)
    q = q.t();
  weight.copy_(q * (sigma * std::sqrt(static_cast<double>(std::max(rows, cols)))));
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x,
                                   torch::Dtype out_dtype,
                                   KernelPath path) {
  return rms_norm(x, weight, kNormEps, out_dtype, path);
}

AttentionImpl::AttentionImpl(const sweeps::ModelConfig& config, bool gated)
    : n_heads_(config.n_heads),
      head_dim_(config.head_dim),
      gate_channels_(config.ve_gate_channels) {
  const int64_t d = config.d_model, inner = n_heads_ * head_dim_;
  query = register_module("query", linear(d, inner));
  key = register_module("key", linear(d, inner));
  value = register_module("value", linear(d, inner));
  output = register_module("output", linear(inner, d));
  if (gated)
    value_gate = register_module("value_gate", linear(gate_channels_, n_heads_));
}

torch::Tensor AttentionImpl::qkv_weight() {
  return torch::cat({query->weight, key->weight, value->weight}, 0);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& z,
                                     const torch::Tensor& value_embedding,
                                     const torch::Tensor& qkv_weight,
                                     const RotaryTable& rope,
                                     KernelPath path) {
  const int64_t b = z.size(0), s = z.size(1);
  const torch::Tensor qkv = torch::nn::functional::linear(z, qkv_weight);  // (b, s, 3 H hd)
  torch::Tensor gate_logits;                                               // (b, s, H)
  if (value_gate)
    gate_logits = value_gate(z.narrow(-1, 0, gate_channels_));
  const AttentionInputs in = attention_inputs(
      qkv, gate_logits, value_embedding, rope, n_heads_, head_dim_, kQkNormEps, path);
  const torch::Tensor y = compat::causal_attention(
      in.q.transpose(1, 2), in.k.transpose(1, 2), in.v.transpose(1, 2));  // (b, H, s, hd)
  return output(y.transpose(1, 2).reshape({b, s, n_heads_ * head_dim_}));
}

MlpImpl::MlpImpl(const sweeps::ModelConfig& config) {
  up = register_module("up", linear(config.d_model, config.d_ff));
  down = register_module("down", linear(config.d_ff, config.d_model));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x, KernelPath path) {
  return down(relu_squared_half(up(x), path));
}

BlockImpl::BlockImpl(const sweeps::ModelConfig& config, bool has_value_embedding) {
  attention_norm = register_module("attention_norm", RMSNorm(config.d_model));
  attention = register_module("attention", Attention(config, has_value_embedding));
  mlp_norm = register_module("mlp_norm", RMSNorm(config.d_model));
  mlp = register_module("mlp", Mlp(config));
  if (has_value_embedding) {
    value_embedding = register_module(
        "value_embedding",
        torch::nn::Embedding(config.vocab_size,
                             static_cast<int64_t>(config.n_heads) * config.head_dim));
  }
}

ResidualStream BlockImpl::forward(const ResidualStream& in,
                                  const torch::Tensor& value_embedding_rows,
                                  const torch::Tensor& qkv_weight,
                                  const RotaryTable& rope,
                                  KernelPath path) {
  // The norms feed only matrix products, so they return what those would cast them to.
  const ResidualNorm first =
      add_rms_norm(in.x, in.pending, attention_norm->weight, kNormEps, matmul_dtype(in.x), path);
  const torch::Tensor attended =
      attention(first.normed,
                value_embedding_rows,
                qkv_weight.defined() ? qkv_weight : attention->qkv_weight(),
                rope,
                path);
  const ResidualNorm second =
      add_rms_norm(first.sum, attended, mlp_norm->weight, kNormEps, matmul_dtype(first.sum), path);
  return {second.sum, mlp(second.normed, path)};
}

torch::Tensor BlockImpl::lookup_value_embedding(const torch::Tensor& ids, KernelPath path) {
  return value_embedding ? embedding_lookup(value_embedding->weight, ids, path) : torch::Tensor();
}

LoopInjectionImpl::LoopInjectionImpl(const sweeps::ModelConfig& config, bool unconstrained_decay)
    : kind(config.injection), unconstrained(unconstrained_decay) {
  const int64_t d = config.d_model;
  if (kind == Injection::kDiagonal) {
    if (unconstrained) {
      a_raw = register_parameter("a_raw", torch::ones({d}));
    } else {
      log_a = register_parameter("log_a", torch::zeros({d}));
    }
    dt_bias = register_parameter("dt_bias", torch::zeros({d}));
    input = register_module("input", linear(d, d));
  } else if (kind == Injection::kLinear) {
    adapter = register_module("adapter", linear(2 * d, d));
  }
}

LoopInjectionImpl::Constants LoopInjectionImpl::constants(const torch::Tensor& e) {
  if (kind != Injection::kDiagonal)
    return {torch::Tensor(), e};
  const torch::Tensor delta = torch::softplus(dt_bias);
  const torch::Tensor rate = unconstrained ? a_raw : torch::exp(log_a);
  const torch::Tensor decay = torch::exp(-delta * rate);
  return {decay, delta * input(e)};
}

torch::Tensor LoopInjectionImpl::apply(const torch::Tensor& h, const Constants& constants) {
  switch (kind) {
    case Injection::kDiagonal:
      // One pass over the state (input + decay * h), not a product and then a sum.
      return torch::addcmul(constants.input, constants.decay, h);
    case Injection::kLinear:
      return adapter(torch::cat({h, constants.input.to(h.scalar_type())}, -1));
    case Injection::kAdd:
      return h + constants.input;
  }
  return h;
}

torch::Tensor LoopInjectionImpl::decay() {
  switch (kind) {
    case Injection::kDiagonal:
      return torch::exp(-torch::softplus(dt_bias) * (unconstrained ? a_raw : torch::exp(log_a)));
    case Injection::kAdd:
      return torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat));
    case Injection::kLinear:
      return torch::Tensor();
  }
  return torch::Tensor();
}

torch::Tensor LoopInjectionImpl::log_decay() {
  switch (kind) {
    case Injection::kDiagonal: {
      const torch::Tensor rate =
          unconstrained ? a_raw.to(torch::kDouble) : torch::exp(log_a.to(torch::kDouble));
      return -torch::softplus(dt_bias.to(torch::kDouble)) * rate;
    }
    case Injection::kAdd:
      return torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble));
    case Injection::kLinear:
      return torch::Tensor();
  }
  return torch::Tensor();
}

LanguageModelImpl::LanguageModelImpl(const sweeps::ModelConfig& config, const ModelOptions& options)
    : config_(config), kernels_(options.kernels) {
  TORCH_CHECK(config.validate().empty(), "invalid model config ", config.name);
  embedding = register_module("embedding", torch::nn::Embedding(config.vocab_size, config.d_model));
  auto add_stage = [&](const std::string& name, int first, int count, std::vector<Block>& out) {
    torch::nn::ModuleList list;
    for (int i = first; i < first + count; ++i) {
      out.push_back(Block(config, config.has_value_embedding(i)));
      list->push_back(out.back());
    }
    register_module(name, list);
  };
  if (config.is_looped()) {
    add_stage("prelude", 0, config.n_prelude, prelude);
    if (config.prelude_norm)
      prelude_norm = register_module("prelude_norm", RMSNorm(config.d_model));
    injection = register_module(
        "injection",
        LoopInjection(config,
                      options.unconstrained_decay && config.injection == Injection::kDiagonal));
    add_stage("core", config.n_prelude, config.n_recurrent, core);
    readout = register_module("readout", linear(config.d_model, config.d_model));
    add_stage("coda", config.n_prelude + config.n_recurrent, config.n_coda, coda);
  } else {
    add_stage("blocks", 0, config.n_layers, blocks);
  }
  final_norm = register_module("final_norm", RMSNorm(config.d_model));
  if (options.initialize)
    initialize();
}

void LanguageModelImpl::initialize() {
  torch::NoGradGuard no_grad;
  const double sigma = std::sqrt(2.0 / (5.0 * config_.d_model));
  init_orthogonal(embedding->weight, sigma);
  auto init_block = [&](Block& block) {
    init_orthogonal(block->attention->query->weight, sigma);
    init_orthogonal(block->attention->key->weight, sigma);
    init_orthogonal(block->attention->value->weight, sigma);
    block->attention->output->weight.zero_();
    init_orthogonal(block->mlp->up->weight, sigma);
    block->mlp->down->weight.zero_();
    block->attention_norm->weight.fill_(1.0);
    block->mlp_norm->weight.fill_(1.0);
    if (block->value_embedding)
      block->value_embedding->weight.normal_(0.0, 1.0);
    if (block->attention->value_gate) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(config_.ve_gate_channels));
      block->attention->value_gate->weight.uniform_(-bound, bound);
    }
  };
  for (auto* stage : {&blocks, &prelude, &core, &coda}) {
    for (auto& block : *stage)
      init_block(block);
  }
  if (prelude_norm)
    prelude_norm->weight.fill_(1.0);
  final_norm->weight.fill_(1.0);
  if (injection) {
    if (injection->log_a.defined())
      injection->log_a.zero_();
    if (injection->a_raw.defined())
      injection->a_raw.fill_(1.0);
    if (injection->dt_bias.defined()) {
      // softplus^-1(ln(5)/2) = ln(sqrt(5) - 1), so Delta = 0.804719 and a = 1/sqrt(5).
      injection->dt_bias.fill_(std::log(std::sqrt(5.0) - 1.0));
    }
    if (injection->input) {
      injection->input->weight.copy_(torch::eye(config_.d_model));
    }
    if (injection->adapter) {
      injection->adapter->weight.copy_(
          truncated_normal(torch::rand(injection->adapter->weight.sizes(), torch::kDouble), sigma));
    }
  }
  if (readout)
    init_orthogonal(readout->weight, sigma);
}

KernelPath LanguageModelImpl::kernel_path() const {
  return kernels_.value_or(device().is_cuda() ? KernelPath::kFused : KernelPath::kAten);
}

const RotaryTable& LanguageModelImpl::rotary_table(int64_t seq,
                                                   torch::Device device,
                                                   torch::Dtype dtype) {
  const auto key = std::make_tuple(seq, device.str(), static_cast<int>(dtype));
  auto found = rotary_tables_.find(key);
  if (found == rotary_tables_.end()) {
    found =
        rotary_tables_
            .emplace(key,
                     make_rotary_table(seq, config_.head_dim, config_.rope_theta, device, dtype))
            .first;
  }
  return found->second;
}

torch::Tensor LanguageModelImpl::final_features(const ResidualStream& y) {
  return add_rms_norm(
             y.x, y.pending, final_norm->weight, kNormEps, matmul_dtype(y.x), kernel_path())
      .normed;
}

ModelOutput LanguageModelImpl::forward(const torch::Tensor& ids,
                                       const DepthPlan& plan,
                                       const torch::Tensor& initial_state) {
  const ModelFeatures out = features(ids, plan, initial_state);
  const torch::Tensor logits = torch::nn::functional::linear(out.features, embedding->weight);
  return {logits.to(compute_dtype(embedding->weight)), out.state};
}

ModelLoss LanguageModelImpl::loss(const torch::Tensor& ids,
                                  const torch::Tensor& targets,
                                  const DepthPlan& plan,
                                  const torch::Tensor& initial_state,
                                  LossReduction reduction) {
  const ModelFeatures out = features(ids, plan, initial_state);
  return {
      tied_head_cross_entropy(out.features, embedding->weight, targets, reduction, kernel_path()),
      out.state};
}

ModelFeatures LanguageModelImpl::features(const torch::Tensor& ids,
                                          const DepthPlan& plan,
                                          const torch::Tensor& initial_state) {
  const int64_t b = ids.size(0), seq = ids.size(1);
  const KernelPath path = kernel_path();
  const RotaryTable& rope = rotary_table(seq, ids.device(), compute_dtype(embedding->weight));
  if (!config_.is_looped()) {
    ResidualStream x{embedding_lookup(embedding->weight, ids, path),
                     torch::Tensor()};  // (b, seq, d)
    for (auto& block : blocks)
      x = block(x, block->lookup_value_embedding(ids, path), torch::Tensor(), rope, path);
    return {final_features(x), torch::Tensor()};
  }
  TORCH_CHECK(plan.rows() == b && b > 0, "depth plan has ", plan.rows(), " rows, batch has ", b);
  TORCH_CHECK(initial_state.defined() && initial_state.size(0) == b && initial_state.size(1) == seq,
              "initial state must be (batch, seq, d)");

  // Rows in order of decreasing (n_i, k_i), so that the rows still looping at any no-grad
  // iteration are a prefix of the batch. The sampler's plans (k_i = min(T_i, mu_bwd),
  // n_i = T_i - k_i) then have k_i decreasing too, and the graded iterations run prefixes as well;
  // for other plans they mask (run_phase).
  std::vector<int64_t> order(static_cast<size_t>(b));
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int64_t i) {
    return std::make_pair(plan.no_grad[static_cast<size_t>(i)],
                          plan.graded[static_cast<size_t>(i)]);
  };
  std::stable_sort(
      order.begin(), order.end(), [&](int64_t i, int64_t j) { return key(i) > key(j); });
  const bool reordered = !std::is_sorted(order.begin(), order.end());
  std::vector<int> no_grad(static_cast<size_t>(b)), graded(static_cast<size_t>(b));
  for (size_t r = 0; r < order.size(); ++r) {
    no_grad[r] = plan.no_grad[static_cast<size_t>(order[r])];
    graded[r] = plan.graded[static_cast<size_t>(order[r])];
  }
  torch::Tensor sorted_ids = ids, h = initial_state, restore, forward_order;
  if (reordered) {
    std::vector<int64_t> inverse(order.size());
    for (size_t r = 0; r < order.size(); ++r)
      inverse[static_cast<size_t>(order[r])] = static_cast<int64_t>(r);
    forward_order = compat::to_device(order, ids.device());
    restore = compat::to_device(inverse, ids.device());
    sorted_ids = ids.index_select(0, forward_order);
    h = initial_state.index_select(0, forward_order);
  }

  ResidualStream x{embedding_lookup(embedding->weight, sorted_ids, path),
                   torch::Tensor()};  // (b, seq, d)
  for (auto& block : prelude)
    x = block(x, block->lookup_value_embedding(sorted_ids, path), torch::Tensor(), rope, path);
  // e stays in the stream's dtype: the add and linear injections use it as it is.
  const torch::Tensor e =
      prelude_norm
          ? add_rms_norm(x.x, x.pending, prelude_norm->weight, kNormEps, x.x.scalar_type(), path)
                .normed
          : x.value();

  // Looked up once: a core layer's VE is the same on every loop and keeps its graph, so the
  // graded loops send gradient into the tables (parcae.md §6). The stacked qkv weights likewise.
  std::vector<torch::Tensor> core_values, core_qkv;
  for (auto& block : core) {
    core_values.push_back(block->lookup_value_embedding(sorted_ids, path));
    // Cast once for every loop: a stacked weight is no parameter, so autocast would cast it anew
    // at each use.
    const torch::Tensor stacked = block->attention->qkv_weight();
    core_qkv.push_back(stacked.to(matmul_dtype(stacked)));
  }
  const LoopInjectionImpl::Constants constants = injection->constants(e);
  auto first_rows = [](const torch::Tensor& t, int64_t rows) {
    return t.defined() && t.dim() == 3 && rows < t.size(0) ? t.narrow(0, 0, rows) : t;
  };
  // One pass of the core over the first `rows` rows.
  auto recur = [&](const torch::Tensor& state, int64_t rows) {
    const LoopInjectionImpl::Constants part{constants.decay, first_rows(constants.input, rows)};
    ResidualStream u{injection->apply(state, part), torch::Tensor()};
    for (size_t j = 0; j < core.size(); ++j)
      u = core[j](u, first_rows(core_values[j], rows), core_qkv[j], rope, path);
    return u.value();
  };
  // Row i advances while s < counts[i]; a finished row keeps its state (parcae.md §6). With
  // counts non-increasing only the looping prefix is computed; otherwise every row is, and the
  // finished ones are masked back to their state.
  auto run_phase =
      [&](torch::Tensor state, const std::vector<int>& counts, int steps, bool graded_phase) {
        const bool prefix = std::is_sorted(counts.rbegin(), counts.rend());
        torch::Tensor count_rows;
        if (!prefix) {
          count_rows =
              compat::to_device(std::vector<int64_t>(counts.begin(), counts.end()), ids.device())
                  .view({b, 1, 1});
        }
        // Whether `state` is a tensor of this phase's own making, so that the no-grad phase may
        // write into it; the phase's input may be the caller's initial state.
        bool owned = false;
        for (int s = 0; s < steps; ++s) {
          const auto active = static_cast<int64_t>(
              std::count_if(counts.begin(), counts.end(), [s](int count) { return count > s; }));
          const int64_t computed = prefix ? active : b;
          loop_work_.iterations += computed;
          if (graded_phase)
            loop_work_.graded_iterations += computed;
          if (active == b) {
            state = recur(state, b);
            owned = true;
          } else if (prefix && !graded_phase && owned) {
            // No graph to keep: only the looping rows are written, where a concatenation would
            // copy the finished ones on every iteration as well.
            state.narrow(0, 0, active).copy_(recur(state.narrow(0, 0, active), active));
          } else if (prefix) {
            // One split, whose backward is one concatenation of the two gradients; two narrows
            // would each fill a zero tensor of the whole state and then add them.
            const std::vector<torch::Tensor> rows = state.split_with_sizes({active, b - active});
            state = torch::cat({recur(rows[0], active), rows[1]}, 0);
            owned = true;
          } else {
            state = torch::where(count_rows > s, recur(state, b), state);
            owned = true;
          }
        }
        return state;
      };
  const int max_no_grad = *std::max_element(no_grad.begin(), no_grad.end());
  const int max_graded = *std::max_element(graded.begin(), graded.end());
  if (max_no_grad > 0) {
    torch::NoGradGuard no_grad_guard;
    h = run_phase(h, no_grad, max_no_grad, /*graded_phase=*/false);
  }
  compat::clear_autocast_cache();
  h = run_phase(h, graded, max_graded, /*graded_phase=*/true);
  loop_work_.rows += b;
  if (reordered)
    h = reorder_rows(h, restore, forward_order);

  ResidualStream y{readout(h), torch::Tensor()};
  for (auto& block : coda)
    y = block(y, block->lookup_value_embedding(ids, path), torch::Tensor(), rope, path);
  return {final_features(y), h};
}

torch::Tensor LanguageModelImpl::sample_initial_state(int64_t rows,
                                                      int64_t seq,
                                                      at::Generator& generator) const {
  const double sigma = std::sqrt(2.0 / (5.0 * config_.d_model));
  const auto options = torch::TensorOptions().dtype(dtype()).device(device());
  return truncated_normal(torch::rand({rows, seq, config_.d_model}, generator, options), sigma);
}

int64_t LanguageModelImpl::parameter_count() const {
  int64_t total = 0;
  for (const auto& p : parameters())
    total += p.numel();
  return total;
}

bool is_muon_parameter(const std::string& name, const torch::Tensor& parameter) {
  if (parameter.dim() != 2 || name.find("value_embedding") != std::string::npos)
    return false;
  for (const char* stage : {"blocks.", "prelude.", "core.", "coda."}) {
    if (name.rfind(stage, 0) == 0)
      return true;
  }
  return false;
}

}  // namespace parcae::trainer
