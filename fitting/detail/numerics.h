// Small numerical pieces shared by the laws: the Huber loss and its derivative, log-sum-exp with
// its softmax weights (§1), percentiles, a seeded random stream whose numbers are the same on every
// platform, a deterministic parallel loop, and the formatting of numbers in coefficient names.
// Internal to parcae::fitting; tests include it for the gradient checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace parcae::fitting::detail {

// H(r) of §1: r^2/2 for |r| <= delta, else delta * (|r| - delta/2).
inline double huber_value(double residual, double delta) {
  const double magnitude = std::abs(residual);
  return magnitude <= delta ? 0.5 * residual * residual : delta * (magnitude - 0.5 * delta);
}

// psi(r) = dH/dr = clamp(r, -delta, delta).
inline double huber_derivative(double residual, double delta) {
  return std::clamp(residual, -delta, delta);
}

// LSE(t) = m + ln sum_j exp(t_j - m), m = max_j t_j; weights[j] = exp(t_j - LSE) when asked.
// The maximal term contributes exp(0) = 1 exactly, so only the others are exponentiated, and
// ln(1 + rest) is taken by log1p: one exp fewer per row in the innermost loop of every
// multi-start fit, and no accuracy lost when the other terms are small.
template <int M>
double log_sum_exp(const double (&terms)[M], double (*weights)[M] = nullptr) {
  int k = 0;
  for (int j = 1; j < M; ++j) {
    if (terms[j] > terms[k]) {
      k = j;
    }
  }
  const double m = terms[k];
  double e[M];
  double rest = 0.0;
  for (int j = 0; j < M; ++j) {
    e[j] = j == k ? 1.0 : std::exp(terms[j] - m);
    rest += j == k ? 0.0 : e[j];
  }
  if (weights != nullptr) {
    const double inverse = 1.0 / (1.0 + rest);
    for (int j = 0; j < M; ++j) {
      (*weights)[j] = e[j] * inverse;
    }
  }
  return m + std::log1p(rest);
}

// The q-quantile (0 <= q <= 1) by linear interpolation between order statistics (numpy's
// default, "type 7"). Sorts a copy; NaN entries are ignored. NaN when no finite entry remains.
double quantile(std::vector<double> values, double q);

// Sample standard deviation (n - 1) of the finite entries; NaN with fewer than 2.
double standard_deviation(const std::vector<double>& values);

// A random stream: mt19937_64 seeded through splitmix64 from (seed, stream), with our own
// conversions, so a seed gives the same numbers with every standard library. Independent streams
// per replicate make parallel results independent of the thread count.
class Random {
 public:
  Random(std::uint64_t seed, std::uint64_t stream);
  double uniform();                         // [0, 1)
  double uniform(double low, double high);  // [low, high)
  int index(int size);                      // uniform in [0, size)
  double normal();                          // N(0, 1), Marsaglia polar method

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// Calls body(i) for i in [0, count) on up to `threads` threads (0: hardware concurrency). Each i
// must write only its own output slot. The first exception thrown by a body is rethrown here.
void parallel_for(int count, int threads, const std::function<void(int)>& body);

// "%g" formatting, for coefficient names such as "N_opt(C=5.76e+23)".
std::string format_number(double value);

}  // namespace parcae::fitting::detail
