// The log-sum-exp Huber objectives of objectives.h and their analytic gradients.
#include "fitting/detail/objectives.h"

#include <cmath>

#include "fitting/detail/numerics.h"

namespace parcae::fitting::detail {

TrainingLawObjective::TrainingLawObjective(const TrainingLawRows& rows, double huber_delta)
    : rows_(rows), delta_(huber_delta) {}

bool TrainingLawObjective::evaluate(const double* x, double* value, double* gradient) const {
  const double a = x[0], b = x[1], e = x[2], alpha = x[3], beta = x[4];
  double total = 0.0;
  double g[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  const bool weighted = !rows_.weights.empty();
  const std::size_t n = rows_.log_loss.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double w = weighted ? rows_.weights[i] : 1.0;
    if (w == 0.0) {
      continue;
    }
    const double terms[3] = {a - alpha * rows_.log_params[i], b - beta * rows_.log_tokens[i], e};
    double softmax[3];
    const double r =
        log_sum_exp(terms, gradient != nullptr ? &softmax : nullptr) - rows_.log_loss[i];
    total += w * huber_value(r, delta_);
    if (gradient != nullptr) {
      const double psi = w * huber_derivative(r, delta_);
      g[0] += psi * softmax[0];
      g[1] += psi * softmax[1];
      g[2] += psi * softmax[2];
      g[3] -= psi * softmax[0] * rows_.log_params[i];
      g[4] -= psi * softmax[1] * rows_.log_tokens[i];
    }
  }
  *value = total;
  bool finite = std::isfinite(total);
  if (gradient != nullptr) {
    for (int j = 0; j < 5; ++j) {
      gradient[j] = g[j];
      finite = finite && std::isfinite(g[j]);
    }
  }
  return finite;
}

std::vector<double> TrainingLawObjective::residuals(const double* x) const {
  std::vector<double> r(rows_.log_loss.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    const double terms[3] = {
        x[0] - x[3] * rows_.log_params[i], x[1] - x[4] * rows_.log_tokens[i], x[2]};
    r[i] = log_sum_exp(terms) - rows_.log_loss[i];
  }
  return r;
}

UnifiedObjective::UnifiedObjective(const UnifiedRows& rows,
                                   UnifiedVariant variant,
                                   double huber_delta)
    : rows_(rows), variant_(variant), delta_(huber_delta) {}

double UnifiedObjective::time_scale(std::size_t i, double gamma) const {
  switch (variant_) {
    case UnifiedVariant::kGammaOne:
      return rows_.time_per_mu[i];
    case UnifiedVariant::kLearnedGamma:
      return rows_.test_time[i] * std::exp(-gamma * rows_.log_mu[i]);
    case UnifiedVariant::kNoMu:
      break;
  }
  return rows_.test_time[i];
}

bool UnifiedObjective::evaluate(const double* x, double* value, double* gradient) const {
  const double gamma = variant_ == UnifiedVariant::kLearnedGamma ? x[7] : 1.0;
  const double rate = std::exp(x[6]);
  double total = 0.0;
  double g[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const bool weighted = !rows_.weights.empty();
  const std::size_t n = rows_.log_loss.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double w = weighted ? rows_.weights[i] : 1.0;
    if (w == 0.0) {
      continue;
    }
    const double s = time_scale(i, gamma);
    const double terms[4] = {x[0] - x[3] * rows_.log_params[i],
                             x[1] - x[4] * rows_.log_tokens[i],
                             x[2],
                             x[5] - rate * s};
    double softmax[4];
    const double r =
        log_sum_exp(terms, gradient != nullptr ? &softmax : nullptr) - rows_.log_loss[i];
    total += w * huber_value(r, delta_);
    if (gradient != nullptr) {
      const double psi = w * huber_derivative(r, delta_);
      g[0] += psi * softmax[0];
      g[1] += psi * softmax[1];
      g[2] += psi * softmax[2];
      g[3] -= psi * softmax[0] * rows_.log_params[i];
      g[4] -= psi * softmax[1] * rows_.log_tokens[i];
      g[5] += psi * softmax[3];
      g[6] -= psi * softmax[3] * rate * s;  // d(term 4)/d(omega) = -z s
      // d s / d gamma = -s ln mu, so d(term 4)/d(gamma) = z s ln mu.
      g[7] += psi * softmax[3] * rate * s * rows_.log_mu[i];
    }
  }
  *value = total;
  // A point far out (z = e^omega overflowing) can give a finite J with an inf * 0 gradient;
  // reporting it as invalid makes the line search step back instead of failing.
  bool finite = std::isfinite(total);
  if (gradient != nullptr) {
    for (int j = 0; j < size(); ++j) {
      gradient[j] = g[j];
      finite = finite && std::isfinite(g[j]);
    }
  }
  return finite;
}

std::vector<double> UnifiedObjective::residuals(const double* x) const {
  const double gamma = variant_ == UnifiedVariant::kLearnedGamma ? x[7] : 1.0;
  const double rate = std::exp(x[6]);
  std::vector<double> r(rows_.log_loss.size());
  for (std::size_t i = 0; i < r.size(); ++i) {
    const double s = time_scale(i, gamma);
    const double terms[4] = {x[0] - x[3] * rows_.log_params[i],
                             x[1] - x[4] * rows_.log_tokens[i],
                             x[2],
                             x[5] - rate * s};
    r[i] = log_sum_exp(terms) - rows_.log_loss[i];
  }
  return r;
}

SubsetObjective::SubsetObjective(const Objective& full,
                                 std::vector<double> fixed,
                                 std::vector<int> free)
    : full_(full), fixed_(std::move(fixed)), free_(std::move(free)) {}

std::vector<double> SubsetObjective::expand(const double* x) const {
  std::vector<double> full = fixed_;
  for (std::size_t k = 0; k < free_.size(); ++k) {
    full[free_[k]] = x[k];
  }
  return full;
}

bool SubsetObjective::evaluate(const double* x, double* value, double* gradient) const {
  const std::vector<double> full = expand(x);
  if (gradient == nullptr) {
    return full_.evaluate(full.data(), value, nullptr);
  }
  std::vector<double> full_gradient(full.size());
  const bool ok = full_.evaluate(full.data(), value, full_gradient.data());
  for (std::size_t k = 0; k < free_.size(); ++k) {
    gradient[k] = full_gradient[free_[k]];
  }
  return ok;
}

std::vector<double> numeric_gradient(const Objective& objective,
                                     const std::vector<double>& x,
                                     double h) {
  std::vector<double> g(x.size());
  std::vector<double> probe = x;
  for (std::size_t j = 0; j < x.size(); ++j) {
    const double step = h * std::max(1.0, std::abs(x[j]));
    double plus = 0.0, minus = 0.0;
    probe[j] = x[j] + step;
    objective.evaluate(probe.data(), &plus, nullptr);
    probe[j] = x[j] - step;
    objective.evaluate(probe.data(), &minus, nullptr);
    probe[j] = x[j];
    g[j] = (plus - minus) / (2.0 * step);
  }
  return g;
}

}  // namespace parcae::fitting::detail
