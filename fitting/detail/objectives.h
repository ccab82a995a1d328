// The Huber-sum objectives of the parametric laws in log-sum-exp form, with analytic gradients
// (§1, §3, §4.2), and a wrapper that holds some parameters fixed. Row weights are multiplicities,
// so a bootstrap replicate is the same objective with integer weights instead of copied rows.
// Internal to parcae::fitting; tests include it to check every gradient against finite
// differences.
#pragma once

#include <vector>

#include "fitting/fitting.h"

namespace parcae::fitting::detail {

// A smooth objective J(x) for the L-BFGS minimizer.
class Objective {
 public:
  virtual ~Objective() = default;
  virtual int size() const = 0;
  // J at x, and dJ/dx into gradient[0, size()) unless gradient is null. Returns false when J or
  // the gradient is not finite (Ceres must never see a valid value with a NaN gradient).
  virtual bool evaluate(const double* x, double* value, double* gradient) const = 0;
};

// Rows in log space for the training law; weight 1 for every row when weights is empty.
struct TrainingLawRows {
  std::vector<double> log_params;  // ln N (or ln N(mu))
  std::vector<double> log_tokens;  // ln D
  std::vector<double> log_loss;    // ln L
  std::vector<double> weights;     // multiplicity of each row; empty = all 1
};

// x = (a, b, e, alpha, beta):
//   log Lhat_i = LSE(a - alpha ln N_i, b - beta ln D_i, e),  r_i = log Lhat_i - ln L_i,
//   J = sum_i w_i H(r_i), with the gradient of §3.
// This is the innermost loop of every multi-start (4,500 starts x 40 to 100 iterations x 240
// rows for §7), so where the processor has AVX2 (checked once at run time; the build itself
// assumes only x86-64) evaluate() works on four rows at once, with its own exp (for arguments
// <= 0) and log (for [1, 3]), accurate to a few ulp, and two exponentials per row instead of
// three. Elsewhere it runs the row-by-row loop of training_law_objective_reference. The rows are
// copied at construction into contiguous columns padded with weight-0 rows to a multiple of
// kBlockRows, and an evaluation allocates nothing.
class TrainingLawObjective : public Objective {
 public:
  static constexpr int kBlockRows = 16;

  // huber_delta = +infinity gives r^2 / 2 (Penalty::kSquares). Linear residuals (Lhat - L)
  // run row by row, without the AVX2 kernel.
  TrainingLawObjective(const TrainingLawRows& rows,
                       double huber_delta,
                       ResidualScale residuals = ResidualScale::kLog);
  int size() const override { return 5; }
  bool evaluate(const double* x, double* value, double* gradient) const override;
  // r_i for every row (weights ignored).
  std::vector<double> residuals(const double* x) const;

 private:
  std::size_t rows_;  // real rows; the columns below hold padded_rows() entries
  std::size_t padded_rows() const { return log_params_.size(); }
  std::vector<double> log_params_;
  std::vector<double> log_tokens_;
  std::vector<double> log_loss_;
  std::vector<double> weights_;  // 1 (or the row's multiplicity) for real rows, 0 for padding
  double delta_;
  bool linear_;
};

// The same J and gradient row by row with the scalar log_sum_exp of numerics.h (the C library's
// exp and log1p): the reference that tests hold the kernel of TrainingLawObjective to, and what
// TrainingLawObjective runs on a processor without AVX2.
bool training_law_objective_reference(const TrainingLawRows& rows,
                                      double huber_delta,
                                      const double* x,
                                      double* value,
                                      double* gradient);

struct UnifiedRows {
  std::vector<double> log_params;   // ln N(mu)
  std::vector<double> log_tokens;   // ln D
  std::vector<double> log_mu;       // ln mu
  std::vector<double> test_time;    // T
  std::vector<double> time_per_mu;  // T / mu, so the default variant needs no exp per point
  std::vector<double> log_loss;     // ln L
  std::vector<double> weights;      // empty = all 1
};

// x = (ln X, ln Y, e, x, y, zeta, omega[, gamma]) (8 entries for kLearnedGamma, else 7):
//   log Lhat = LSE(ln X - x ln N(mu), ln Y - y ln D, e, zeta - e^omega * s),
//   s = T / mu (gamma = 1), T mu^-gamma (learned), or T (no mu).
class UnifiedObjective : public Objective {
 public:
  UnifiedObjective(const UnifiedRows& rows,
                   UnifiedVariant variant,
                   double huber_delta,
                   ResidualScale residuals = ResidualScale::kLog);
  int size() const override { return variant_ == UnifiedVariant::kLearnedGamma ? 8 : 7; }
  bool evaluate(const double* x, double* value, double* gradient) const override;
  std::vector<double> residuals(const double* x) const;

 private:
  double time_scale(std::size_t i, double gamma) const;
  const UnifiedRows& rows_;
  UnifiedVariant variant_;
  double delta_;
  bool linear_;
};

// The objective of `full` over the entries listed in `free`, the others held at `fixed`.
class SubsetObjective : public Objective {
 public:
  SubsetObjective(const Objective& full, std::vector<double> fixed, std::vector<int> free);
  int size() const override { return static_cast<int>(free_.size()); }
  bool evaluate(const double* x, double* value, double* gradient) const override;
  std::vector<double> expand(const double* x) const;  // the full parameter vector

 private:
  const Objective& full_;
  std::vector<double> fixed_;
  std::vector<int> free_;
};

// The delta the objectives above take for a penalty: delta itself for Huber, +infinity for
// squares (H(r) = r^2 / 2 for every r).
double penalty_delta(Penalty penalty, double huber_delta);

// Central finite-difference gradient, step h * max(1, |x_j|) (for tests and diagnostics).
std::vector<double> numeric_gradient(const Objective& objective,
                                     const std::vector<double>& x,
                                     double h);

}  // namespace parcae::fitting::detail
