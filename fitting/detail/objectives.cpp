// The log-sum-exp Huber objectives of objectives.h and their analytic gradients.
#include "fitting/detail/objectives.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "fitting/detail/numerics.h"

namespace parcae::fitting::detail {

namespace {

// The blocked kernel of TrainingLawObjective::evaluate, on four rows at a time in AVX2 registers
// where the processor has them (checked once at run time, so the binary still runs on any x86-64
// without them, through the row-by-row loop of rowwise_training_law). It is written with the GCC
// and Clang vector extensions: arithmetic acts per lane, a scalar operand is broadcast,
// comparisons give lane masks of all ones or zeros, and a cast between vectors of one size
// reinterprets the bytes. Two lanes of SSE2, which every x86-64 has, were measured slower than the
// C library's scalar exp and log1p, so there is no SSE2 version.
using Vec4 = double __attribute__((vector_size(32)));
using Bits4 = std::int64_t __attribute__((vector_size(32)));

// GCC warns, at the end of the file, that a 32-byte vector passed by value changes the calling
// convention without AVX. Every function taking one is always inlined into the AVX2 kernel, so
// no call crosses it; the warning stays off for the rest of this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define PARCAE_INLINE inline __attribute__((always_inline))

template <typename V>
struct LanesOf;
template <>
struct LanesOf<Vec4> {
  using Bits = Bits4;
  static constexpr int kCount = 4;
};
static_assert(TrainingLawObjective::kBlockRows % LanesOf<Vec4>::kCount == 0);

template <typename V>
PARCAE_INLINE V load(const double* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename V>
PARCAE_INLINE V broadcast(double value) {
  return V{} + value;
}

template <typename V, typename B = typename LanesOf<V>::Bits>
PARCAE_INLINE V select(B mask, V if_true, V if_false) {
  return reinterpret_cast<V>((mask & reinterpret_cast<B>(if_true)) |
                             (~mask & reinterpret_cast<B>(if_false)));
}

template <typename V>
PARCAE_INLINE V lane_min(V x, V y) {
  return select<V>(x < y, x, y);
}

template <typename V>
PARCAE_INLINE V lane_max(V x, V y) {
  return select<V>(x > y, x, y);
}

// e^d for d <= 0 (d < -700 is taken as -700, about 1e-304, where it only ever adds to a sum of at
// least 1). d = k ln 2 + r with k = round(d / ln 2), |r| <= ln(2)/2, and ln 2 split in two
// (Cody and Waite) so that k ln2_hi is exact; e^r by its Taylor series to r^13, whose remainder is
// below 4e-18 relative; 2^k enters the exponent bits directly.
template <typename V>
PARCAE_INLINE V exp_nonpositive(V d) {
  using B = typename LanesOf<V>::Bits;
  constexpr double kShifter = 0x1.8p52;  // adding it rounds to an integer in the low bits
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  d = lane_max(d, broadcast<V>(-700.0));
  const V shifted = d * 1.4426950408889634074 + kShifter;
  const V k = shifted - kShifter;
  const V r = (d - k * kLn2Hi) - k * kLn2Lo;
  // Horner from 1/13! down to 1/0!, written out so that every coefficient is a constant.
  V p = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const B scale = (reinterpret_cast<B>(shifted) - reinterpret_cast<B>(broadcast<V>(kShifter)))
                  << 52;
  return reinterpret_cast<V>(reinterpret_cast<B>(p) + scale);
}

// ln s for 1 <= s <= 3, the range of a sum of three softmax numerators whose largest is 1:
// s = 2^j f with f in [0.75, 1.5], ln f = 2 atanh(z) = 2 (z + z^3/3 + ... + z^25/25) with
// z = (f - 1)/(f + 1), |z| <= 0.2, remainder below 1e-19.
template <typename V>
PARCAE_INLINE V log_one_to_three(V s) {
  constexpr double kLn2 = 6.93147180559945309417e-01;
  const auto halve = s > 1.5;
  const V f = select<V>(halve, s * 0.5, s);
  const V z = (f - 1.0) / (f + 1.0);
  const V w = z * z;
  V p = w * (1.0 / 25.0) + 1.0 / 23.0;
  p = p * w + 1.0 / 21.0;
  p = p * w + 1.0 / 19.0;
  p = p * w + 1.0 / 17.0;
  p = p * w + 1.0 / 15.0;
  p = p * w + 1.0 / 13.0;
  p = p * w + 1.0 / 11.0;
  p = p * w + 1.0 / 9.0;
  p = p * w + 1.0 / 7.0;
  p = p * w + 1.0 / 5.0;
  p = p * w + 1.0 / 3.0;
  p = p * w + 1.0;
  return select<V>(halve, broadcast<V>(kLn2), broadcast<V>(0.0)) + 2.0 * z * p;
}

// The columns of TrainingLawObjective, padded to a multiple of kBlockRows.
struct Columns {
  const double* log_params;
  const double* log_tokens;
  const double* log_loss;
  const double* weights;
  std::size_t rows;
};

// J into sums[0] and dJ/dx into sums[1..5] (when with_gradient) at x = (a, b, e, alpha, beta),
// each the sum over lanes in lane order, so that the result does not depend on the call.
template <typename V>
PARCAE_INLINE void training_law_kernel(
    const Columns& c, const double* x, double delta, bool with_gradient, double* sums) {
  const double a = x[0], b = x[1], e = x[2], alpha = x[3], beta = x[4];
  constexpr int kLanes = LanesOf<V>::kCount;
  // Per-lane partial sums, reduced once at the end. A padding row (or a row of weight 0) adds
  // 0 * finite: with finite x every term, the maximum m and ln(sum) are finite (the caller
  // refuses a non-finite x, which the lane maximum would pass over).
  const V zero = broadcast<V>(0.0), one = broadcast<V>(1.0);
  V total = zero, g0 = zero, g1 = zero, g2 = zero, g3 = zero, g4 = zero;
  for (std::size_t k = 0; k < c.rows; k += kLanes) {
    const V log_n = load<V>(c.log_params + k);
    const V log_d = load<V>(c.log_tokens + k);
    const V t1 = a - alpha * log_n;
    const V t2 = b - beta * log_d;
    const V t3 = broadcast<V>(e);
    const V m = lane_max(lane_max(t1, t2), t3);
    // LSE = m + ln(sum), sum = sum_j exp(t_j - m) in [1, 3]. The largest term gives exp(0) = 1,
    // so only the smallest and the middle differences are exponentiated, and each term takes the
    // exponential of the difference equal to its own (equal differences have equal exponentials).
    const V d1 = t1 - m, d2 = t2 - m, d3 = t3 - m;
    const V low = lane_min(lane_min(d1, d2), d3);
    const V middle = lane_max(lane_min(d1, d2), lane_min(lane_max(d1, d2), d3));
    const V exp_low = exp_nonpositive(low);
    const V exp_middle = exp_nonpositive(middle);
    const V e1 = select<V>(d1 == 0.0, one, select<V>(d1 == low, exp_low, exp_middle));
    const V e2 = select<V>(d2 == 0.0, one, select<V>(d2 == low, exp_low, exp_middle));
    const V e3 = select<V>(d3 == 0.0, one, select<V>(d3 == low, exp_low, exp_middle));
    const V sum = e1 + e2 + e3;
    const V r = m + log_one_to_three(sum) - load<V>(c.log_loss + k);
    const V w = load<V>(c.weights + k);
    const V magnitude = lane_max(r, -r);
    total += w * select<V>(magnitude <= delta, 0.5 * r * r, delta * (magnitude - 0.5 * delta));
    if (with_gradient) {
      // w psi(r) / sum, then times each softmax numerator.
      const V q = w * lane_min(lane_max(r, broadcast<V>(-delta)), broadcast<V>(delta)) / sum;
      const V q1 = q * e1;
      const V q2 = q * e2;
      g0 += q1;
      g1 += q2;
      g2 += q * e3;
      g3 -= q1 * log_n;
      g4 -= q2 * log_d;
    }
  }
  const V* parts[6] = {&total, &g0, &g1, &g2, &g3, &g4};
  for (int j = 0; j < (with_gradient ? 6 : 1); ++j) {
    double lanes[kLanes];
    std::memcpy(lanes, parts[j], sizeof lanes);
    sums[j] = 0.0;
    for (int l = 0; l < kLanes; ++l) {
      sums[j] += lanes[l];  // in lane order: the same sum on every call and every thread
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define PARCAE_HAS_AVX2_KERNEL 1
__attribute__((target("avx2"))) void training_law_kernel_avx2(
    const Columns& c, const double* x, double delta, bool with_gradient, double* sums) {
  training_law_kernel<Vec4>(c, x, delta, with_gradient, sums);
}

bool has_avx2() {
  static const bool available = __builtin_cpu_supports("avx2");
  return available;
}
#else
#define PARCAE_HAS_AVX2_KERNEL 0
#endif

// J and its gradient row by row with the scalar log_sum_exp of numerics.h (two exp and one
// log1p per row); rows of weight 0 are skipped. weights may be null (all 1). With linear, the
// residual is Lhat - L = exp(LSE) - L, whose derivative in each term t_j is Lhat w_j.
bool rowwise_training_law(
    const Columns& c, double delta, bool linear, const double* x, double* value, double* gradient) {
  const double a = x[0], b = x[1], e = x[2], alpha = x[3], beta = x[4];
  double total = 0.0;
  double g[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (std::size_t i = 0; i < c.rows; ++i) {
    const double w = c.weights != nullptr ? c.weights[i] : 1.0;
    if (w == 0.0) {
      continue;
    }
    const double terms[3] = {a - alpha * c.log_params[i], b - beta * c.log_tokens[i], e};
    double softmax[3];
    const double log_lhat = log_sum_exp(terms, &softmax);
    double r = log_lhat - c.log_loss[i];
    double scale = 1.0;  // d r / d LSE
    if (linear) {
      scale = std::exp(log_lhat);
      r = scale - std::exp(c.log_loss[i]);
    }
    total += w * huber_value(r, delta);
    const double psi = w * huber_derivative(r, delta) * scale;
    g[0] += psi * softmax[0];
    g[1] += psi * softmax[1];
    g[2] += psi * softmax[2];
    g[3] -= psi * softmax[0] * c.log_params[i];
    g[4] -= psi * softmax[1] * c.log_tokens[i];
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

std::vector<double> padded_column(const std::vector<double>& values,
                                  std::size_t rows,
                                  std::size_t padded,
                                  double fill) {
  std::vector<double> column(padded, fill);
  std::copy(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rows), column.begin());
  return column;
}

}  // namespace

TrainingLawObjective::TrainingLawObjective(const TrainingLawRows& rows,
                                           double huber_delta,
                                           ResidualScale residuals)
    : rows_(rows.log_loss.size()),
      delta_(huber_delta),
      linear_(residuals == ResidualScale::kLinear) {
  const std::size_t padded = (rows_ + kBlockRows - 1) / kBlockRows * kBlockRows;
  log_params_ = padded_column(rows.log_params, rows_, padded, 0.0);
  log_tokens_ = padded_column(rows.log_tokens, rows_, padded, 0.0);
  log_loss_ = padded_column(rows.log_loss, rows_, padded, 0.0);
  weights_ = rows.weights.empty() ? std::vector<double>(rows_, 1.0) : rows.weights;
  weights_.resize(padded, 0.0);
}

bool TrainingLawObjective::evaluate(const double* x, double* value, double* gradient) const {
  // The kernel's lane maximum would pass over a NaN entry, so a non-finite point stops here.
  if (!std::all_of(x, x + 5, [](double v) { return std::isfinite(v); })) {
    *value = kNotComputed;
    return false;
  }
  const Columns columns = {
      log_params_.data(), log_tokens_.data(), log_loss_.data(), weights_.data(), padded_rows()};
#if PARCAE_HAS_AVX2_KERNEL
  // The kernel knows log residuals only; linear ones take the row-by-row loop.
  if (has_avx2() && !linear_) {
    double sums[6];
    training_law_kernel_avx2(columns, x, delta_, gradient != nullptr, sums);
    *value = sums[0];
    bool finite = std::isfinite(*value);
    if (gradient != nullptr) {
      for (int j = 0; j < 5; ++j) {
        gradient[j] = sums[j + 1];
        finite = finite && std::isfinite(gradient[j]);
      }
    }
    return finite;
  }
#endif
  return rowwise_training_law(columns, delta_, linear_, x, value, gradient);
}

std::vector<double> TrainingLawObjective::residuals(const double* x) const {
  std::vector<double> r(rows_);
  for (std::size_t i = 0; i < r.size(); ++i) {
    const double terms[3] = {x[0] - x[3] * log_params_[i], x[1] - x[4] * log_tokens_[i], x[2]};
    r[i] = linear_ ? std::exp(log_sum_exp(terms)) - std::exp(log_loss_[i])
                   : log_sum_exp(terms) - log_loss_[i];
  }
  return r;
}

bool training_law_objective_reference(const TrainingLawRows& rows,
                                      double huber_delta,
                                      const double* x,
                                      double* value,
                                      double* gradient) {
  const Columns columns = {rows.log_params.data(),
                           rows.log_tokens.data(),
                           rows.log_loss.data(),
                           rows.weights.empty() ? nullptr : rows.weights.data(),
                           rows.log_loss.size()};
  return rowwise_training_law(columns, huber_delta, /*linear=*/false, x, value, gradient);
}

UnifiedObjective::UnifiedObjective(const UnifiedRows& rows,
                                   UnifiedVariant variant,
                                   double huber_delta,
                                   ResidualScale residuals)
    : rows_(rows),
      variant_(variant),
      delta_(huber_delta),
      linear_(residuals == ResidualScale::kLinear) {}

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
    const double log_lhat = log_sum_exp(terms, gradient != nullptr ? &softmax : nullptr);
    double r = log_lhat - rows_.log_loss[i];
    double scale = 1.0;  // d r / d LSE: Lhat for a linear residual
    if (linear_) {
      scale = std::exp(log_lhat);
      r = scale - std::exp(rows_.log_loss[i]);
    }
    total += w * huber_value(r, delta_);
    if (gradient != nullptr) {
      const double psi = w * huber_derivative(r, delta_) * scale;
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
    r[i] = linear_ ? std::exp(log_sum_exp(terms)) - std::exp(rows_.log_loss[i])
                   : log_sum_exp(terms) - rows_.log_loss[i];
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

double penalty_delta(Penalty penalty, double huber_delta) {
  return penalty == Penalty::kSquares ? std::numeric_limits<double>::infinity() : huber_delta;
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
