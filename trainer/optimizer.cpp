// Muon + AdamW updates, schedules and clipping (parcae.md §8).
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "trainer/model.h"
#if PARCAE_WITH_CUDA
#include "trainer/fused_ops_cuda.h"
#endif
#include "trainer/torch_compat.h"

namespace parcae::trainer {

double Schedule::lr_multiplier(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const auto cooldown =
      static_cast<int64_t>(std::floor(cooldown_fraction * static_cast<double>(max_steps)));
  if (cooldown <= 0)
    return 1.0;
  return std::min(1.0, static_cast<double>(max_steps - step) / static_cast<double>(cooldown));
}

double Schedule::muon_momentum(int64_t step) {
  const double fraction =
      std::min(static_cast<double>(step) / static_cast<double>(kMuonMomentumRampSteps), 1.0);
  return (1.0 - fraction) * kMuonMomentumStart + fraction * kMuonMomentumEnd;
}

double Schedule::muon_weight_decay(double base, int64_t step) const {
  return base * (1.0 - static_cast<double>(step) / static_cast<double>(max_steps));
}

torch::Tensor polar_express(const torch::Tensor& g, torch::Dtype dtype, int iterations) {
  TORCH_CHECK(g.dim() == 2 || g.dim() == 3, "polar_express needs a matrix or a stack of them");
  if (g.dim() == 2)
    return polar_express(g.unsqueeze(0), dtype, iterations).squeeze(0);
  torch::Tensor x = g.to(dtype);
  x = x / (at::linalg_vector_norm(x, 2, {1, 2}, /*keepdim=*/true) * 1.02 + 1e-6);
  const bool tall = x.size(1) > x.size(2);
  // Three products an iteration and nothing else: the scalings and sums ride in the products'
  // epilogues (beta * self + alpha * product), not in element-wise passes over the matrices.
  for (int i = 0; i < iterations; ++i) {
    const auto& [a, b, c] = kPolarExpressCoefficients[static_cast<size_t>(i)];
    if (tall) {
      const torch::Tensor gram = torch::bmm(x.transpose(1, 2), x);
      const torch::Tensor poly = torch::baddbmm(gram, gram, gram, /*beta=*/b, /*alpha=*/c);
      x = torch::baddbmm(x, x, poly, /*beta=*/a, /*alpha=*/1.0);
    } else {
      const torch::Tensor gram = torch::bmm(x, x.transpose(1, 2));
      const torch::Tensor poly = torch::baddbmm(gram, gram, gram, /*beta=*/b, /*alpha=*/c);
      x = torch::baddbmm(x, poly, x, /*beta=*/a, /*alpha=*/1.0);
    }
  }
  return x;
}

torch::Tensor clip_gradient_norm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.grad().defined())
      grads.push_back(p.grad());
  }
  if (grads.empty())
    return torch::zeros({}, torch::kFloat);
  torch::NoGradGuard no_grad;
  // One multi-tensor launch for the norms and one reduction; the clipping factor is computed
  // where the norm is, so nothing waits for it.
  const std::vector<torch::Tensor> norms = at::_foreach_norm(grads, 2);
  const torch::Tensor norm = at::linalg_vector_norm(torch::stack(norms).to(torch::kFloat), 2);
  if (max_norm > 0) {
    const torch::Tensor clipped = torch::isfinite(norm).logical_and(norm > max_norm);
    const torch::Tensor factor =
        torch::where(clipped, max_norm / (norm + 1e-6), torch::ones_like(norm));
    compat::foreach_mul_(grads, factor);
  }
  return norm;
}

MuonAdamW::MuonAdamW(const std::vector<NamedParameter>& parameters,
                     const sweeps::TrainingConfig& config,
                     int64_t max_steps,
                     torch::Dtype orthogonalization_dtype,
                     KernelPath kernels)
    : config_(config), orthogonalization_dtype_(orthogonalization_dtype), kernels_(kernels) {
  schedule_.max_steps = max_steps;
  schedule_.cooldown_fraction = config.cooldown_fraction;
  schedule_.warmup_steps = config.warmup_steps;
  for (const auto& p : parameters) {
    if (is_muon_parameter(p.name, p.tensor)) {
      muon_.push_back(p);
    } else {
      adamw_.push_back(p);
      adam_state_.push_back({torch::zeros_like(p.tensor), torch::zeros_like(p.tensor)});
    }
  }
  // Same-shape matrices share one stacked state, so that one batched update serves them all.
  std::map<std::vector<int64_t>, size_t> group_of_shape;
  for (size_t i = 0; i < muon_.size(); ++i) {
    const std::vector<int64_t> shape = muon_[i].tensor.sizes().vec();
    const auto [found, added] = group_of_shape.emplace(shape, muon_groups_.size());
    if (added)
      muon_groups_.emplace_back();
    muon_groups_[found->second].members.push_back(i);
  }
  muon_state_.resize(muon_.size());
  for (MuonGroup& group : muon_groups_) {
    const torch::Tensor& first = muon_[group.members.front()].tensor;
    const int64_t n = static_cast<int64_t>(group.members.size());
    const int64_t rows = first.size(0), cols = first.size(1);
    group.momentum = torch::zeros({n, rows, cols}, first.options());
    group.second_moment = torch::zeros(
        rows >= cols ? std::vector<int64_t>{n, rows, 1} : std::vector<int64_t>{n, 1, cols},
        first.options());
    for (int64_t k = 0; k < n; ++k) {
      MuonState& state = muon_state_[group.members[static_cast<size_t>(k)]];
      state.momentum = group.momentum.select(0, k);
      state.second_moment = group.second_moment.select(0, k);
    }
  }
}

StepHyperparameters MuonAdamW::hyperparameters(int64_t step) const {
  const double multiplier = schedule_.lr_multiplier(step);
  return {config_.adamw_lr * multiplier,
          config_.muon_lr * multiplier,
          Schedule::muon_momentum(step),
          schedule_.muon_weight_decay(config_.muon_weight_decay, step)};
}

void MuonAdamW::step(int64_t step, const torch::Tensor& apply) {
  torch::NoGradGuard no_grad;
  torch::Tensor gate = apply;
  // Off the GPU the gate costs nothing to read: the step is then taken or skipped here.
  if (gate.defined() && !gate.is_cuda()) {
    if (gate.item<double>() == 0.0)
      return;
    gate = torch::Tensor();
  }
  const StepHyperparameters hp = hyperparameters(step);
  adamw_step(hp, gate);
  for (MuonGroup& group : muon_groups_)
    muon_step(hp, group, gate);
}

int64_t MuonAdamW::adamw_steps() const {
  if (adamw_step_count_.defined())
    return static_cast<int64_t>(std::llround(adamw_step_count_.item<double>()));
  return adamw_steps_;
}

void MuonAdamW::adamw_step(const StepHyperparameters& hp, const torch::Tensor& apply) {
  const double beta1 = config_.adamw_beta1, beta2 = config_.adamw_beta2;
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  for (size_t i = 0; i < adamw_.size(); ++i) {
    if (!adamw_[i].tensor.grad().defined())
      continue;
    params.push_back(adamw_[i].tensor);
    grads.push_back(adamw_[i].tensor.grad());
    exp_avgs.push_back(adam_state_[i].m);
    exp_avg_sqs.push_back(adam_state_[i].v);
  }
  if (params.empty())
    return;
  if (compat::has_fused_adamw(params.front())) {
    // Every tensor is at the same step t, counted on the GPU, where a skipped step (`apply` 0)
    // leaves it and the kernel its tensors.
    if (!adamw_step_count_.defined()) {
      adamw_step_count_ = torch::full(
          {}, static_cast<double>(adamw_steps_), params.front().options().dtype(torch::kFloat));
    }
    torch::Tensor found_inf;
    if (apply.defined()) {
      adamw_step_count_.add_(apply);
      found_inf = 1.0 - apply;
    } else {
      adamw_step_count_.add_(1.0);
    }
    compat::fused_adamw(params,
                        grads,
                        exp_avgs,
                        exp_avg_sqs,
                        std::vector<torch::Tensor>(params.size(), adamw_step_count_),
                        hp.lr_adamw,
                        beta1,
                        beta2,
                        config_.adamw_weight_decay,
                        config_.adamw_eps,
                        found_inf);
    return;
  }
  if (apply.defined() && apply.item<double>() == 0.0)
    return;
  ++adamw_steps_;
  const double correction1 = 1.0 - std::pow(beta1, static_cast<double>(adamw_steps_));
  const double correction2 = 1.0 - std::pow(beta2, static_cast<double>(adamw_steps_));
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor& p = params[i];
    const torch::Tensor g = grads[i].to(p.scalar_type());
    if (config_.adamw_weight_decay != 0.0)
      p.mul_(1.0 - hp.lr_adamw * config_.adamw_weight_decay);
    exp_avgs[i].lerp_(g, 1.0 - beta1);
    exp_avg_sqs[i].lerp_(g.square(), 1.0 - beta2);
    p.add_(
        (exp_avgs[i] / correction1) / ((exp_avg_sqs[i] / correction2).sqrt() + config_.adamw_eps),
        -hp.lr_adamw);
  }
}

void MuonAdamW::muon_step(const StepHyperparameters& hp,
                          MuonGroup& group,
                          const torch::Tensor& apply) {
  std::vector<torch::Tensor> params, grads;
  for (const size_t i : group.members) {
    params.push_back(muon_[i].tensor);
    grads.push_back(muon_[i].tensor.grad());
  }
  // A parameter without a gradient has none of its group's either (they are used alike); the
  // whole group then waits, as each of them would alone.
  for (const auto& g : grads) {
    if (!g.defined())
      return;
  }
  torch::Tensor g = torch::stack(grads).to(group.momentum.scalar_type());  // (n, r, c)
  // 1. Nesterov momentum: m <- lerp(m, g, 1 - mu); update direction lerp(g, m, mu). A step the
  //    GPU skips moves m by 0 * (g - m), which needs g finite.
  if (apply.defined()) {
    g.nan_to_num_(0.0, 0.0, 0.0);
    group.momentum.lerp_(g, apply * (1.0 - hp.muon_momentum));
  } else {
    group.momentum.lerp_(g, 1.0 - hp.muon_momentum);
  }
  const torch::Tensor nesterov = g.lerp(group.momentum, hp.muon_momentum);
  // 2. Orthogonalise each matrix (kept in the orthogonalisation dtype: the statistics below
  //    accumulate it in fp32, and the update reads it once).
  const torch::Tensor x = polar_express(nesterov, orthogonalization_dtype_);
  // 3. Factored second moment along the smaller dimension (along columns when square),
  //    rescaled so that each matrix keeps its Frobenius norm. Both scalings are constant along
  //    the reduced dimension, so they fold into one factor per kept row (or column), computed
  //    from the per-row norms alone: ||x * s||^2 = sum over rows of s^2 ||x_row||^2.
  const int64_t rows = x.size(1), cols = x.size(2);
  const int64_t reduce_dim = rows >= cols ? 2 : 1;
  const torch::Tensor row_square =
      at::linalg_vector_norm(
          x, 2, {reduce_dim}, /*keepdim=*/true, at::promote_types(x.scalar_type(), torch::kFloat))
          .square();
  const torch::Tensor norm = row_square.sum({1, 2}, /*keepdim=*/true).sqrt();
  const torch::Tensor mean_square = row_square / static_cast<double>(x.size(reduce_dim));
  if (apply.defined()) {
    group.second_moment.copy_(torch::where(apply.to(torch::kBool),
                                           group.second_moment.lerp(mean_square, 1.0 - kMuonBeta2),
                                           group.second_moment));
  } else {
    group.second_moment.lerp_(mean_square, 1.0 - kMuonBeta2);
  }
  const torch::Tensor scale = group.second_moment.clamp_min(1e-10).rsqrt();
  const torch::Tensor scaled_norm = (scale.square() * row_square).sum({1, 2}, true).sqrt();
  const torch::Tensor factor = scale * (norm / scaled_norm.clamp_min(1e-10));
  // 4. Cautious decoupled weight decay: only where the update and the weight agree in sign.
  const double eta = hp.lr_muon * std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
  apply_muon_update(
      params, x, factor, eta, eta * hp.muon_weight_decay, kernels_, apply, &group.weight_table);
}

void apply_muon_update(const std::vector<torch::Tensor>& weights,
                       const torch::Tensor& x,
                       const torch::Tensor& factor,
                       double eta,
                       double eta_decay,
                       KernelPath path,
                       const torch::Tensor& apply,
                       WeightTable* weight_table) {
  torch::NoGradGuard no_grad;
#if PARCAE_WITH_CUDA
  if (path == KernelPath::kFused && x.is_cuda()) {
    WeightTable local;
    if (cuda_ops::muon_update(
            weights, x, factor, eta, eta_decay, apply, weight_table ? *weight_table : local))
      return;
  }
#else
  (void)path, (void)weight_table;
#endif
  const torch::Tensor p = torch::stack(weights);
  const torch::Tensor u = x.to(p.scalar_type()) * factor;
  const torch::Tensor agree = (u * p >= 0).to(p.scalar_type());
  torch::Tensor update = eta * u + eta_decay * p * agree;
  if (apply.defined())
    update = torch::where(apply.to(torch::kBool), update, torch::zeros({}, update.options()));
  at::_foreach_sub_(weights, update.unbind(0));
}

void MuonAdamW::save(torch::serialize::OutputArchive& archive) const {
  archive.write("adamw_steps", c10::IValue(adamw_steps()));
  torch::serialize::OutputArchive adamw, muon;
  for (size_t i = 0; i < adamw_.size(); ++i) {
    torch::serialize::OutputArchive entry;
    entry.write("name", c10::IValue(adamw_[i].name));
    entry.write("m", adam_state_[i].m, /*is_buffer=*/true);
    entry.write("v", adam_state_[i].v, /*is_buffer=*/true);
    adamw.write(std::to_string(i), entry);
  }
  for (size_t i = 0; i < muon_.size(); ++i) {
    torch::serialize::OutputArchive entry;
    entry.write("name", c10::IValue(muon_[i].name));
    entry.write("momentum", muon_state_[i].momentum, /*is_buffer=*/true);
    entry.write("second_moment", muon_state_[i].second_moment, /*is_buffer=*/true);
    muon.write(std::to_string(i), entry);
  }
  archive.write("adamw", adamw);
  archive.write("muon", muon);
}

void MuonAdamW::load(torch::serialize::InputArchive& archive) {
  c10::IValue steps;
  archive.read("adamw_steps", steps);
  adamw_steps_ = steps.toInt();
  adamw_step_count_ = torch::Tensor();
  auto read_entry = [](torch::serialize::InputArchive& group,
                       size_t index,
                       const std::string& expected_name,
                       const char* first,
                       torch::Tensor& first_tensor,
                       const char* second,
                       torch::Tensor& second_tensor) {
    torch::serialize::InputArchive entry;
    group.read(std::to_string(index), entry);
    c10::IValue name;
    entry.read("name", name);
    TORCH_CHECK(name.toStringRef() == expected_name,
                "optimizer state ",
                index,
                " belongs to ",
                name.toStringRef(),
                ", expected ",
                expected_name);
    // Read aside and copied in: the state tensors are views into stacked storage, which a read
    // into them would replace.
    torch::NoGradGuard no_grad;
    for (const auto& [key, state] :
         {std::pair<const char*, torch::Tensor*>{first, &first_tensor},
          std::pair<const char*, torch::Tensor*>{second, &second_tensor}}) {
      torch::Tensor loaded;
      entry.read(key, loaded, /*is_buffer=*/true);
      TORCH_CHECK(loaded.sizes() == state->sizes(),
                  "optimizer state ",
                  key,
                  " of ",
                  expected_name,
                  " has shape ",
                  loaded.sizes(),
                  ", expected ",
                  state->sizes());
      state->copy_(loaded);
    }
  };
  torch::serialize::InputArchive adamw, muon;
  archive.read("adamw", adamw);
  archive.read("muon", muon);
  for (size_t i = 0; i < adamw_.size(); ++i) {
    read_entry(adamw, i, adamw_[i].name, "m", adam_state_[i].m, "v", adam_state_[i].v);
  }
  for (size_t i = 0; i < muon_.size(); ++i) {
    read_entry(muon,
               i,
               muon_[i].name,
               "momentum",
               muon_state_[i].momentum,
               "second_moment",
               muon_state_[i].second_moment);
  }
}

}  // namespace parcae::trainer
