// Muon + AdamW updates, schedules and clipping (parcae.md §8).
#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>

#include "trainer/model.h"

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
  TORCH_CHECK(g.dim() == 2, "polar_express needs a matrix");
  torch::Tensor x = g.to(dtype);
  x = x / (x.norm() * 1.02 + 1e-6);
  const bool tall = x.size(0) > x.size(1);
  for (int i = 0; i < iterations; ++i) {
    const auto& [a, b, c] = kPolarExpressCoefficients[static_cast<size_t>(i)];
    if (tall) {
      const torch::Tensor gram = torch::matmul(x.t(), x);
      x = a * x + torch::matmul(x, b * gram + c * torch::matmul(gram, gram));
    } else {
      const torch::Tensor gram = torch::matmul(x, x.t());
      x = a * x + torch::matmul(b * gram + c * torch::matmul(gram, gram), x);
    }
  }
  return x;
}

double clip_gradient_norm(const std::vector<torch::Tensor>& parameters, double max_norm) {
  std::vector<torch::Tensor> squares;
  for (const auto& p : parameters) {
    if (p.grad().defined())
      squares.push_back(p.grad().to(torch::kFloat).square().sum());
  }
  if (squares.empty())
    return 0.0;
  const double norm = torch::stack(squares).sum().sqrt().item<double>();
  if (std::isfinite(norm) && max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    torch::NoGradGuard no_grad;
    for (const auto& p : parameters) {
      if (p.grad().defined())
        p.grad().mul_(scale);
    }
  }
  return norm;
}

MuonAdamW::MuonAdamW(const std::vector<NamedParameter>& parameters,
                     const sweeps::TrainingConfig& config,
                     int64_t max_steps,
                     torch::Dtype orthogonalization_dtype)
    : config_(config), orthogonalization_dtype_(orthogonalization_dtype) {
  schedule_.max_steps = max_steps;
  schedule_.cooldown_fraction = config.cooldown_fraction;
  schedule_.warmup_steps = config.warmup_steps;
  for (const auto& p : parameters) {
    if (is_muon_parameter(p.name, p.tensor)) {
      muon_.push_back(p);
      const bool reduce_columns = p.tensor.size(0) >= p.tensor.size(1);
      muon_state_.push_back(
          {torch::zeros_like(p.tensor),
           torch::zeros(reduce_columns ? std::vector<int64_t>{p.tensor.size(0), 1}
                                       : std::vector<int64_t>{1, p.tensor.size(1)},
                        p.tensor.options())});
    } else {
      adamw_.push_back(p);
      adam_state_.push_back({torch::zeros_like(p.tensor), torch::zeros_like(p.tensor)});
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

void MuonAdamW::step(int64_t step) {
  torch::NoGradGuard no_grad;
  const StepHyperparameters hp = hyperparameters(step);

  ++adamw_steps_;
  const double beta1 = config_.adamw_beta1, beta2 = config_.adamw_beta2;
  const double correction1 = 1.0 - std::pow(beta1, static_cast<double>(adamw_steps_));
  const double correction2 = 1.0 - std::pow(beta2, static_cast<double>(adamw_steps_));
  for (size_t i = 0; i < adamw_.size(); ++i) {
    torch::Tensor& p = adamw_[i].tensor;
    if (!p.grad().defined())
      continue;
    const torch::Tensor g = p.grad().to(p.scalar_type());
    AdamState& s = adam_state_[i];
    if (config_.adamw_weight_decay != 0.0)
      p.mul_(1.0 - hp.lr_adamw * config_.adamw_weight_decay);
    s.m.lerp_(g, 1.0 - beta1);
    s.v.lerp_(g.square(), 1.0 - beta2);
    p.add_((s.m / correction1) / ((s.v / correction2).sqrt() + config_.adamw_eps), -hp.lr_adamw);
  }

  for (size_t i = 0; i < muon_.size(); ++i) {
    torch::Tensor& p = muon_[i].tensor;
    if (!p.grad().defined())
      continue;
    MuonState& s = muon_state_[i];
    const torch::Tensor g = p.grad().to(p.scalar_type());
    // 1. Nesterov momentum: m <- lerp(m, g, 1 - mu); update direction lerp(g, m, mu).
    s.momentum.lerp_(g, 1.0 - hp.muon_momentum);
    const torch::Tensor nesterov = g.lerp(s.momentum, hp.muon_momentum);
    // 2. Orthogonalise.
    torch::Tensor x = polar_express(nesterov, orthogonalization_dtype_).to(p.scalar_type());
    // 3. Factored second moment along the smaller dimension (along columns when square),
    //    rescaled so that the Frobenius norm is unchanged.
    const int64_t rows = x.size(0), cols = x.size(1);
    const int64_t reduce_dim = rows >= cols ? 1 : 0;
    const torch::Tensor mean_square = x.square().mean(reduce_dim, /*keepdim=*/true);
    const torch::Tensor norm = x.norm();
    s.second_moment.lerp_(mean_square, 1.0 - kMuonBeta2);
    const torch::Tensor scaled = x * s.second_moment.clamp_min(1e-10).rsqrt();
    x = scaled * (norm / scaled.norm().clamp_min(1e-10));
    // 4. Cautious decoupled weight decay: only where the update and the weight agree in sign.
    const double eta = hp.lr_muon * std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
    const torch::Tensor agree = (x * p >= 0).to(p.scalar_type());
    p.sub_(eta * x + (eta * hp.muon_weight_decay) * p * agree);
  }
}

void MuonAdamW::save(torch::serialize::OutputArchive& archive) const {
  archive.write("adamw_steps", c10::IValue(adamw_steps_));
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
    torch::NoGradGuard no_grad;
    entry.read(first, first_tensor, /*is_buffer=*/true);
    entry.read(second, second_tensor, /*is_buffer=*/true);
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
