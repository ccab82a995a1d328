// Every analytic gradient of the parametric objectives (scaling-laws.md §1, §3, §4.2) against
// central finite differences at random parameters, relative error < 1e-6. The step is
// 1e-6 * max(1, |x_j|): the truncation error is O(h^2), about 1e-12 relative, and the rounding
// error about eps * J / h, about 1e-10 of J, so a correct gradient agrees to better than 1e-6 in
// every component that is not itself near the rounding level (see check_gradient).
// The four-lane kernel of the training-law objective is also held to the row-by-row loop.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/detail/numerics.h"
#include "fitting/detail/objectives.h"
#include "fitting/fitting.h"
#include "test_data.h"

namespace parcae::fitting {
namespace {

constexpr double kStep = 1e-6;
// Near an optimum many residuals sit within h * |dr/dx| (up to 20 h: dr/dalpha = -ln N) of the
// Huber kink |r| = delta, where H'' jumps and the central difference is off by O(h); J is small
// there (about 1e-3), so a smaller step keeps the rounding error eps * J / h small as well.
constexpr double kStepNearOptimum = 1e-8;
constexpr double kTolerance = 1e-6;

// The worst of |analytic_j - numeric_j| / max(|analytic_j|, |numeric_j|, 1e-3 * max_k
// |analytic_k|). The floor keeps a component that is tiny at this point (a term whose softmax
// weight is 1e-12) from being judged by the rounding noise of the difference, about eps * J / h;
// checked records the components that were above the floor, and each test requires every component
// to have been checked at full scale in some trial.
struct GradientCheck {
  double worst = 0.0;
  std::vector<bool> checked;
};

GradientCheck check_gradient(const detail::Objective& objective,
                             const std::vector<double>& x,
                             double step) {
  std::vector<double> analytic(x.size());
  double value = 0.0;
  EXPECT_TRUE(objective.evaluate(x.data(), &value, analytic.data()));
  const std::vector<double> numeric = detail::numeric_gradient(objective, x, step);
  double largest = 0.0;
  for (double g : analytic) {
    largest = std::max(largest, std::abs(g));
  }
  GradientCheck check;
  for (std::size_t j = 0; j < x.size(); ++j) {
    const double floor = 1e-3 * largest;
    const double scale = std::max({std::abs(analytic[j]), std::abs(numeric[j]), floor, 1e-300});
    check.worst = std::max(check.worst, std::abs(analytic[j] - numeric[j]) / scale);
    check.checked.push_back(std::abs(analytic[j]) >= floor);
  }
  return check;
}

// Runs check_gradient over points and expects every error below tolerance and every component
// checked at full scale at least once.
template <typename PointSource>
void expect_gradient_matches(const detail::Objective& objective,
                             int trials,
                             PointSource next_point,
                             const std::string& what,
                             double step = kStep) {
  std::vector<bool> ever_checked(objective.size(), false);
  for (int trial = 0; trial < trials; ++trial) {
    const GradientCheck check = check_gradient(objective, next_point(), step);
    EXPECT_LT(check.worst, kTolerance) << what << ", trial " << trial;
    for (std::size_t j = 0; j < check.checked.size(); ++j) {
      ever_checked[j] = ever_checked[j] || check.checked[j];
    }
  }
  for (std::size_t j = 0; j < ever_checked.size(); ++j) {
    EXPECT_TRUE(ever_checked[j]) << what << ": component " << j << " never checked at full scale";
  }
}

std::vector<double> random_point(detail::Random& random,
                                 const std::vector<std::pair<double, double>>& box) {
  std::vector<double> x;
  for (const auto& [low, high] : box) {
    x.push_back(random.uniform(low, high));
  }
  return x;
}

const std::vector<std::pair<double, double>> kTrainingBox = {
    {0.0, 25.0}, {0.0, 25.0}, {-1.0, 1.0}, {0.0, 2.0}, {0.0, 2.0}};

detail::TrainingLawRows chinchilla_rows() {
  const ChinchillaData data =
      testing::chinchilla_data(testing::read_chinchilla_rows(), /*keep_all=*/false);
  detail::TrainingLawRows rows;
  for (std::size_t i = 0; i < data.loss.size(); ++i) {
    rows.log_params.push_back(std::log(data.params[i]));
    rows.log_tokens.push_back(std::log(data.tokens[i]));
    rows.log_loss.push_back(std::log(data.loss[i]));
  }
  return rows;
}

TEST(Gradients, TrainingLawGradientMatchesCentralDifferencesAtRandomParameters) {
  const detail::TrainingLawRows rows = chinchilla_rows();
  const detail::TrainingLawObjective objective(rows, 1e-3);
  detail::Random random(11, 0);
  expect_gradient_matches(
      objective, 50, [&] { return random_point(random, kTrainingBox); }, "random box");
  // Near the optimum most residuals lie inside the quadratic part of the Huber loss.
  const std::vector<double> optimum = {6.1692, 7.6702, 0.59731, 0.34731, 0.36717};
  expect_gradient_matches(
      objective,
      20,
      [&] {
        std::vector<double> x = optimum;
        for (double& v : x) {
          v += random.uniform(-0.01, 0.01);
        }
        return x;
      },
      "near the optimum",
      kStepNearOptimum);
}

TEST(Gradients, WeightedTrainingLawGradientMatchesCentralDifferences) {
  detail::TrainingLawRows rows = chinchilla_rows();
  detail::Random random(12, 0);
  for (std::size_t i = 0; i < rows.log_loss.size(); ++i) {
    rows.weights.push_back(random.index(3));  // 0, 1 or 2: a bootstrap replicate
  }
  const detail::TrainingLawObjective objective(rows, 1e-3);
  expect_gradient_matches(
      objective, 30, [&] { return random_point(random, kTrainingBox); }, "weighted rows");
}

// Linear residuals (Lhat - L) and the squared penalty change the chain rule: dr/dLSE = Lhat, and
// psi(r) = r without a clamp.
// Linear residuals grow with Lhat itself, so far out in the box of §3 (A = e^25) J is so large
// that the central difference loses its digits to rounding; they are checked where losses are
// those of language models (Lhat of order 1 to 100).
TEST(Gradients, LinearResidualsAndSquaresKeepTheGradientsExact) {
  const detail::TrainingLawRows rows = chinchilla_rows();
  detail::Random random(13, 0);
  const std::vector<std::pair<double, double>> box = {
      {2.0, 10.0}, {2.0, 10.0}, {-1.0, 1.0}, {0.2, 0.8}, {0.2, 0.8}};
  for (const double delta : {1e-3, detail::penalty_delta(Penalty::kSquares, 1e-3)}) {
    const detail::TrainingLawObjective objective(rows, delta, ResidualScale::kLinear);
    expect_gradient_matches(
        objective, 30, [&] { return random_point(random, box); }, "linear residuals");
  }
  const detail::TrainingLawObjective squares(
      rows, detail::penalty_delta(Penalty::kSquares, 1e-3), ResidualScale::kLog);
  expect_gradient_matches(
      squares, 30, [&] { return random_point(random, kTrainingBox); }, "log residuals, squares");
}

// The four-lane kernel of TrainingLawObjective (own exp and log, padding rows of weight 0) against
// the row-by-row loop with the C library's exp and log1p: J to 1e-13 relative and every gradient
// component to 1e-11 of the largest, for row counts that leave every possible remainder of a
// block, with and without weights (zeros included), in the start box and near the optimum. Both
// sum the same terms in a different order with functions a few ulp apart, so 240 rows agree to
// about 1e-15 relative; the gradient near the optimum is a sum of terms of both signs that
// nearly cancel, hence the bound relative to its largest component.
TEST(TrainingLawKernel, AgreesWithTheRowByRowReferenceForEveryRowCountAndWeighting) {
  const detail::TrainingLawRows all = chinchilla_rows();
  detail::Random random(14, 0);
  const std::vector<double> optimum = {6.1692, 7.6702, 0.59731, 0.34731, 0.36717};
  for (std::size_t count : {1u, 2u, 3u, 5u, 15u, 16u, 17u, 33u, 240u}) {
    for (bool weighted : {false, true}) {
      detail::TrainingLawRows rows;
      for (std::size_t i = 0; i < count; ++i) {
        rows.log_params.push_back(all.log_params[i]);
        rows.log_tokens.push_back(all.log_tokens[i]);
        rows.log_loss.push_back(all.log_loss[i]);
        if (weighted) {
          rows.weights.push_back(random.index(3));
        }
      }
      const detail::TrainingLawObjective objective(rows, 1e-3);
      for (int trial = 0; trial < 40; ++trial) {
        std::vector<double> x = random_point(random, kTrainingBox);
        if (trial % 2 == 1) {
          x = optimum;
          for (double& v : x) {
            v += random.uniform(-0.01, 0.01);
          }
        }
        double value = 0.0, expected_value = 0.0;
        std::vector<double> gradient(5), expected(5);
        ASSERT_TRUE(objective.evaluate(x.data(), &value, gradient.data()));
        ASSERT_TRUE(detail::training_law_objective_reference(
            rows, 1e-3, x.data(), &expected_value, expected.data()));
        const std::string where = std::to_string(count) + " rows, weighted " +
                                  std::to_string(weighted) + ", trial " + std::to_string(trial);
        EXPECT_NEAR(value, expected_value, 1e-13 * expected_value + 1e-300) << where;
        double value_only = -1.0;
        ASSERT_TRUE(objective.evaluate(x.data(), &value_only, nullptr));
        EXPECT_EQ(value_only, value) << where;
        double largest = 0.0;
        for (double g : expected) {
          largest = std::max(largest, std::abs(g));
        }
        for (int j = 0; j < 5; ++j) {
          EXPECT_NEAR(gradient[j], expected[j], 1e-11 * largest) << where << ", component " << j;
        }
      }
    }
  }
}

TEST(TrainingLawKernel, ANonFinitePointIsRefusedRatherThanPassedOver) {
  const detail::TrainingLawRows rows = chinchilla_rows();
  const detail::TrainingLawObjective objective(rows, 1e-3);
  std::vector<double> gradient(5);
  double value = 0.0;
  for (int j = 0; j < 5; ++j) {
    for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
      std::vector<double> x = {6.1692, 7.6702, 0.59731, 0.34731, 0.36717};
      x[j] = bad;
      EXPECT_FALSE(objective.evaluate(x.data(), &value, gradient.data())) << "entry " << j;
      EXPECT_FALSE(objective.evaluate(x.data(), &value, nullptr)) << "entry " << j;
    }
  }
}

detail::UnifiedRows unified_rows() {
  detail::UnifiedRows rows;
  const double test_times[] = {1, 2, 4, 6, 8, 10, 12, 16, 20, 24};
  detail::Random noise(13, 0);
  for (const auto& run : testing::parcae140m_design()) {
    for (double t : test_times) {
      const double mu = run.mean_recurrence;
      rows.log_params.push_back(std::log(testing::kParcae140mParams.count(mu)));
      rows.log_tokens.push_back(std::log(run.tokens));
      rows.log_mu.push_back(std::log(mu));
      rows.test_time.push_back(t);
      rows.time_per_mu.push_back(t / mu);
      rows.log_loss.push_back(std::log(3.0 + 0.3 * std::exp(-t / mu) + 0.01 * noise.normal()));
    }
  }
  return rows;
}

TEST(Gradients, UnifiedLawGradientMatchesCentralDifferencesForEveryVariant) {
  const detail::UnifiedRows rows = unified_rows();
  std::vector<std::pair<double, double>> box = kTrainingBox;
  box.push_back({-4.0, 1.0});                      // zeta
  box.push_back({std::log(0.1), std::log(16.0)});  // omega
  box.push_back({0.0, 2.0});                       // gamma
  detail::Random random(14, 0);
  for (UnifiedVariant variant :
       {UnifiedVariant::kGammaOne, UnifiedVariant::kLearnedGamma, UnifiedVariant::kNoMu}) {
    const detail::UnifiedObjective objective(rows, variant, 1e-3);
    expect_gradient_matches(
        objective,
        40,
        [&] {
          std::vector<double> x = random_point(random, box);
          x.resize(objective.size());
          // Keep the test-time term visible so its derivatives are exercised.
          x[5] = random.uniform(-2.0, 0.5);
          return x;
        },
        "variant " + std::to_string(static_cast<int>(variant)));
  }
}

TEST(Gradients, UnifiedLawGradientWithLinearResidualsMatchesCentralDifferences) {
  const detail::UnifiedRows rows = unified_rows();
  detail::Random random(14, 0);
  std::vector<std::pair<double, double>> box = kTrainingBox;
  box.push_back({-4.0, 1.0});                      // zeta
  box.push_back({std::log(0.1), std::log(16.0)});  // omega
  box.push_back({0.0, 2.0});                       // gamma
  const detail::UnifiedObjective objective(
      rows, UnifiedVariant::kLearnedGamma, 1e-3, ResidualScale::kLinear);
  expect_gradient_matches(
      objective,
      30,
      [&] {
        std::vector<double> x = random_point(random, box);
        x[5] = random.uniform(-2.0, 0.5);
        return x;
      },
      "unified, linear residuals");
}

TEST(Gradients, FixingParametersKeepsTheGradientOfTheFreeOnes) {
  const detail::UnifiedRows rows = unified_rows();
  const detail::UnifiedObjective full(rows, UnifiedVariant::kLearnedGamma, 1e-3);
  const std::vector<double> fixed = {13.2, 10.1, 0.98, 0.77, 0.52, 0.0, 0.0, 0.0};
  const detail::SubsetObjective subset(full, fixed, {5, 6, 7});
  detail::Random random(15, 0);
  expect_gradient_matches(
      subset,
      20,
      [&] {
        return std::vector<double>{
            random.uniform(-2.0, 0.5), random.uniform(-1.0, 2.0), random.uniform(0.0, 2.0)};
      },
      "subset");
}

}  // namespace
}  // namespace parcae::fitting
