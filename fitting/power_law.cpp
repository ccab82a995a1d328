// y = k * x^a by (weighted) ordinary least squares on ln y against ln x (§2 step 7), in the
// centred closed form, which needs no solver and stays accurate when ln x is far from zero
// (ln C is about 41 for budgets near 1e18).
#include <algorithm>
#include <cmath>
#include <string>

#include "fitting/detail/checks.h"
#include "fitting/fitting.h"

namespace parcae::fitting {

double PowerLawFit::prefactor_at_se(double x_unit) const {
  const double u = std::log(x_unit);
  const double variance = log_prefactor_se * log_prefactor_se + 2.0 * u * covariance +
                          u * u * exponent_se * exponent_se;
  return prefactor_at(x_unit) * std::sqrt(std::max(variance, 0.0));
}

PowerLawFit fit_power_law(const std::vector<double>& x,
                          const std::vector<double>& y,
                          const std::vector<double>& weights) {
  detail::check_same_size("y", y.size(), "x", x.size());
  if (x.size() < 3) {
    throw InputError("x",
                     "has " + std::to_string(x.size()) +
                         " points; a power law with standard errors needs at least 3");
  }
  detail::check_positive(x, "x", "value (a logarithm is taken)");
  detail::check_positive(y, "y", "value (a logarithm is taken)");
  if (!weights.empty()) {
    detail::check_same_size("weights", weights.size(), "x", x.size());
    detail::check_positive(weights, "weights", "weight");
  }

  const std::size_t n = x.size();
  std::vector<double> lx(n), ly(n), w(n, 1.0);
  double sum_w = 0.0, mean_x = 0.0, mean_y = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    lx[i] = std::log(x[i]);
    ly[i] = std::log(y[i]);
    if (!weights.empty()) {
      w[i] = weights[i];
    }
    sum_w += w[i];
    mean_x += w[i] * lx[i];
    mean_y += w[i] * ly[i];
  }
  mean_x /= sum_w;
  mean_y /= sum_w;
  double sxx = 0.0, sxy = 0.0, syy = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    sxx += w[i] * (lx[i] - mean_x) * (lx[i] - mean_x);
    sxy += w[i] * (lx[i] - mean_x) * (ly[i] - mean_y);
    syy += w[i] * (ly[i] - mean_y) * (ly[i] - mean_y);
  }
  if (!(sxx > 0.0)) {
    throw InputError("x", "every x is the same; a power law needs at least two distinct x");
  }

  PowerLawFit fit;
  fit.law = "power";
  fit.exponent = sxy / sxx;
  fit.log_prefactor = mean_y - fit.exponent * mean_x;
  fit.residuals.resize(n);
  double rss = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    fit.residuals[i] = ly[i] - (fit.log_prefactor + fit.exponent * lx[i]);
    rss += w[i] * fit.residuals[i] * fit.residuals[i];
  }
  const double s2 = rss / static_cast<double>(n - 2);
  fit.exponent_se = std::sqrt(s2 / sxx);
  fit.log_prefactor_se = std::sqrt(s2 * (1.0 / sum_w + mean_x * mean_x / sxx));
  fit.covariance = -mean_x * s2 / sxx;
  fit.r_squared = syy > 0.0 ? 1.0 - rss / syy : 1.0;

  fit.status = FitStatus::kOk;
  fit.n = static_cast<int>(n);
  fit.objective = rss;
  fit.objective_per_point = rss / static_cast<double>(n);
  fit.starts = 1;
  fit.successes = 1;
  const double k = std::exp(fit.log_prefactor);
  fit.coefficients = {
      {"a", fit.exponent, fit.exponent_se},
      {"k", k, k * fit.log_prefactor_se},
      {"ln_k", fit.log_prefactor, fit.log_prefactor_se},
  };
  return fit;
}

}  // namespace parcae::fitting
