// Power laws y = k x^a (scaling-laws.md §2 step 7): exact recovery, the OLS standard errors against
// their closed form, weights, and the error paths.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

TEST(PowerLaw, NoiseFreeDataGiveBackExponentAndPrefactorExactly) {
  std::vector<double> x, y;
  for (double c : {1e18, 2e18, 4e18, 8e18, 16e18, 64e18}) {
    x.push_back(c);
    y.push_back(2.2 * std::pow(c / 1e18, 0.40));
  }
  const PowerLawFit fit = fit_power_law(x, y);
  ASSERT_EQ(fit.status, FitStatus::kOk);
  EXPECT_NEAR(fit.exponent, 0.40, 1e-12);
  EXPECT_NEAR(fit.prefactor_at(1e18), 2.2, 1e-11);
  EXPECT_NEAR(fit.r_squared, 1.0, 1e-12);
  EXPECT_NEAR(fit.value("a"), 0.40, 1e-12);
  EXPECT_NEAR(fit.predict(32e18), 2.2 * std::pow(32.0, 0.40), 1e-10);
  EXPECT_LT(fit.objective, 1e-24);
}

// Three points with residuals +d, -2d, +d in ln y around a line: RSS = 6 d^2, s^2 = 6 d^2 / 1,
// Sxx = 2 (ln x = -1, 0, 1), so se(a) = sqrt(3) d and se(ln k) = sqrt(2) d at ln x centred on 0.
TEST(PowerLaw, StandardErrorsFollowTheOlsFormulas) {
  const double d = 0.01;
  const std::vector<double> x = {std::exp(-1.0), 1.0, std::exp(1.0)};
  const std::vector<double> y = {
      std::exp(0.5 * -1.0 + d), std::exp(-2.0 * d), std::exp(0.5 * 1.0 + d)};
  const PowerLawFit fit = fit_power_law(x, y);
  EXPECT_NEAR(fit.exponent, 0.5, 1e-12);
  EXPECT_NEAR(fit.exponent_se, std::sqrt(3.0) * d, 1e-12);
  EXPECT_NEAR(fit.log_prefactor_se, std::sqrt(2.0) * d, 1e-12);
  EXPECT_NEAR(fit.covariance, 0.0, 1e-15);
  EXPECT_NEAR(fit.objective, 6.0 * d * d, 1e-15);
  ASSERT_EQ(fit.residuals.size(), 3u);
  EXPECT_NEAR(fit.residuals[1], -2.0 * d, 1e-12);
}

TEST(PowerLaw, WeightsPullTheLineTowardsHeavilyWeightedPoints) {
  const std::vector<double> x = {1.0, 2.0, 4.0, 8.0};
  const std::vector<double> y = {1.0, 2.0, 4.0, 100.0};
  const PowerLawFit plain = fit_power_law(x, y);
  const PowerLawFit weighted = fit_power_law(x, y, {1e6, 1e6, 1e6, 1.0});
  EXPECT_NEAR(weighted.exponent, 1.0, 1e-3);
  EXPECT_GT(plain.exponent, 1.3);
}

TEST(PowerLaw, BadInputThrowsNamingTheEntry) {
  auto input_of =
      [](const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>& w) {
        try {
          fit_power_law(x, y, w);
        } catch (const InputError& e) {
          return e.input();
        }
        return std::string("(no error)");
      };
  EXPECT_EQ(input_of({1, 2, 0}, {1, 2, 3}, {}), "x[2]");
  EXPECT_EQ(input_of({1, 2, 3}, {1, -2, 3}, {}), "y[1]");
  EXPECT_EQ(input_of({1, 2}, {1, 2}, {}), "x");
  EXPECT_EQ(input_of({1, 2, 3}, {1, 2}, {}), "y");
  EXPECT_EQ(input_of({2, 2, 2}, {1, 2, 3}, {}), "x");
  EXPECT_EQ(input_of({1, 2, 3}, {1, 2, 3}, {1, 0, 1}), "weights[1]");
  EXPECT_EQ(input_of({1, 2, NAN}, {1, 2, 3}, {}), "x[2]");
}

}  // namespace
}  // namespace parcae::fitting
