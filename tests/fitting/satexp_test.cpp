// The test-time law L(T) = L_inf + Z e^(-z T) of scaling-laws.md §5: the synthetic cases S4a-S4d
// of §8, the standard errors, the extrapolation protocol, [P]'s comparison forms and the errors.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

constexpr double kLInf = 2.95, kZ = 0.85, kRate = 0.9;

struct Curve {
  std::vector<double> t, loss;
};

// S4: T = 1..24, L = 2.95 + 0.85 e^(-0.9 T), ln L += noise * eps.
Curve s4_curve(double noise, std::uint64_t seed) {
  detail::Random random(seed, 0);
  Curve c;
  for (int t = 1; t <= 24; ++t) {
    c.t.push_back(t);
    const double loss = kLInf + kZ * std::exp(-kRate * t);
    c.loss.push_back(noise > 0.0 ? loss * std::exp(noise * random.normal()) : loss);
  }
  return c;
}

TEST(SatExpRecovery, S4aNoiseFreeCurveGivesBackTheTruthToOnePartInTenToTheEight) {
  const Curve c = s4_curve(0.0, 1);
  for (SatExpObjective objective : {SatExpObjective::kLeastSquares, SatExpObjective::kHuberSum}) {
    SatExpOptions options;
    options.objective = objective;
    const SatExpFit fit = fit_satexp(c.t, c.loss, options);
    ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
    EXPECT_NEAR(fit.value("y_inf"), kLInf, 1e-8 * kLInf);
    EXPECT_NEAR(fit.value("Z"), kZ, 1e-8 * kZ);
    EXPECT_NEAR(fit.value("z"), kRate, 1e-8 * kRate);
    EXPECT_NEAR(fit.half_life, std::log(2.0) / kRate, 1e-8);
    EXPECT_LT(fit.objective, 1e-20);
    EXPECT_EQ(fit.starts, 7);
  }
}

// §8 S4b tolerances: L_inf 0.0015, Z 0.04, z 0.04 (measured SD 3.3e-4, 0.0093, 0.0086).
// The S4a curve fitted on linear residuals (Lhat - L, as curve_fit does) gives back the same truth.
TEST(SatExpRecovery, LinearResidualsRecoverTheNoiseFreeCurveToo) {
  std::vector<double> t, loss;
  for (int k = 1; k <= 24; ++k) {
    t.push_back(k);
    loss.push_back(2.95 + 0.85 * std::exp(-0.9 * k));
  }
  SatExpOptions options;
  options.residuals = ResidualScale::kLinear;
  const SatExpFit fit = fit_satexp(t, loss, options);
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  EXPECT_NEAR(fit.l_inf, 2.95, 1e-8 * 2.95);
  EXPECT_NEAR(fit.amplitude, 0.85, 1e-8 * 0.85);
  EXPECT_NEAR(fit.rate, 0.9, 1e-8 * 0.9);
  EXPECT_LT(fit.objective, 1e-20);
}

TEST(SatExpRecovery, S4bNoisyCurveRecoversTheCoefficientsWithHonestStandardErrors) {
  const Curve c = s4_curve(5e-4, 99);
  SatExpOptions options;
  options.mean_recurrence = 8.0;
  const SatExpFit fit = fit_satexp(c.t, c.loss, options);
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  EXPECT_NEAR(fit.value("y_inf"), kLInf, 0.0015);
  EXPECT_NEAR(fit.value("Z"), kZ, 0.04);
  EXPECT_NEAR(fit.value("z"), kRate, 0.04);
  // (J'J)^-1 s^2 standard errors against the measured SDs of the estimator, within a factor 2.
  const double measured_sd[] = {3.3e-4, 0.0093, 0.0086};
  const char* names[] = {"y_inf", "Z", "z"};
  for (int k = 0; k < 3; ++k) {
    const double se = fit.coefficient(names[k]).se;
    EXPECT_GT(se, 0.5 * measured_sd[k]) << names[k];
    EXPECT_LT(se, 2.0 * measured_sd[k]) << names[k];
  }
  EXPECT_NEAR(fit.floor_gap, std::abs(fit.l_inf - c.loss[7]) / c.loss[7], 1e-15);
  double huber_sum = 0.0;
  for (double r : fit.residuals) {
    huber_sum += huber(r);
  }
  EXPECT_NEAR(fit.huber_sum, huber_sum, 1e-18);
  EXPECT_NEAR(fit.huber_mean, huber_sum / 24.0, 1e-18);
}

// §8 S4c: fitted on T <= 8, the mean relative error on T = 9..24 is at most 0.1%.
TEST(SatExpRecovery, S4cFitOnTUpToMuRecExtrapolatesWithinOneTenthOfAPercent) {
  const Curve c = s4_curve(5e-4, 99);
  const SatExpExtrapolation result = satexp_extrapolation(c.t, c.loss, 8.0);
  ASSERT_EQ(result.fit.status, FitStatus::kOk) << result.fit.report();
  EXPECT_EQ(result.fit.n, 8);
  EXPECT_EQ(result.scored_points, 16);
  EXPECT_LE(result.mean_relative_error_percent, 0.1);
  EXPECT_GT(result.huber_mean, 0.0);
}

// §8 S4d: a constant curve and a rising one are flat or ok, never an exception or a NaN.
TEST(SatExpRecovery, S4dConstantAndRisingCurvesAreFlatWithoutNaN) {
  std::vector<double> t, constant, rising;
  for (int i = 1; i <= 24; ++i) {
    t.push_back(i);
    constant.push_back(3.0);
    rising.push_back(3.0 + 0.01 * i);
  }
  for (const auto& loss : {constant, rising}) {
    const SatExpFit fit = fit_satexp(t, loss);
    EXPECT_TRUE(fit.status == FitStatus::kFlat || fit.status == FitStatus::kOk) << fit.report();
    for (const Coefficient& c : fit.coefficients) {
      EXPECT_FALSE(std::isnan(c.value)) << c.name;
      EXPECT_FALSE(std::isnan(c.se)) << c.name;
    }
    EXPECT_FALSE(std::isnan(fit.objective));
    for (double ti : t) {
      EXPECT_TRUE(std::isfinite(fit.predict(ti)));
    }
  }
  const SatExpFit flat = fit_satexp(t, constant);
  EXPECT_EQ(flat.status, FitStatus::kFlat);
  EXPECT_NEAR(flat.predict(1.0), 3.0, 1e-9);
  EXPECT_NEAR(flat.predict(24.0), 3.0, 1e-9);
  EXPECT_FALSE(flat.is_usable());
}

// [P]'s table of forms: on data made by the exponential law, the exponential has the lowest
// average Huber, and each form is fitted with the same objective.
TEST(SatExpForms, TheExponentialWinsOnExponentialData) {
  const Curve c = s4_curve(5e-4, 3);
  const TestTimeFormComparison comparison = compare_test_time_forms(c.t, c.loss);
  ASSERT_EQ(comparison.fits.size(), 4u);
  EXPECT_EQ(comparison.best, 0);
  EXPECT_EQ(comparison.fits[0].form, TestTimeForm::kExponential);
  EXPECT_EQ(comparison.fits[3].form, TestTimeForm::kPowerNoFloor);
  EXPECT_EQ(comparison.fits[3].coefficients.size(), 2u);  // Z and z: no floor
  for (const SatExpFit& fit : comparison.fits) {
    EXPECT_NE(fit.status, FitStatus::kFailed) << to_string(fit.form);
    EXPECT_GE(fit.huber_mean, comparison.fits[0].huber_mean) << to_string(fit.form);
  }
}

TEST(SatExpForms, EachComparisonFormRecoversItsOwnNoiseFreeCurve) {
  for (TestTimeForm form :
       {TestTimeForm::kShiftedPower, TestTimeForm::kPower, TestTimeForm::kPowerNoFloor}) {
    std::vector<double> t, loss;
    const double floor = form == TestTimeForm::kPowerNoFloor ? 0.0 : 2.9;
    for (int i = 1; i <= 24; ++i) {
      t.push_back(i);
      const double base = form == TestTimeForm::kShiftedPower ? 1.0 + i : i;
      loss.push_back(floor + 0.7 * std::pow(base, -0.6));
    }
    SatExpOptions options;
    options.form = form;
    const SatExpFit fit = fit_satexp(t, loss, options);
    ASSERT_EQ(fit.status, FitStatus::kOk) << to_string(form) << "\n" << fit.report();
    EXPECT_NEAR(fit.value("Z"), 0.7, 1e-7) << to_string(form);
    EXPECT_NEAR(fit.value("z"), 0.6, 1e-7) << to_string(form);
    if (form != TestTimeForm::kPowerNoFloor) {
      EXPECT_NEAR(fit.value("y_inf"), 2.9, 1e-7) << to_string(form);
    }
  }
}

TEST(SatExpErrors, TooFewDistinctTOrABadLossThrowsNamingTheInput) {
  auto input_of = [](const std::vector<double>& t, const std::vector<double>& loss) {
    try {
      fit_satexp(t, loss);
    } catch (const InputError& e) {
      return e.input();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(input_of({1, 2, 3, 3}, {3.2, 3.1, 3.0, 3.0}), "test_time");
  EXPECT_EQ(input_of({1, 2, 3, 4}, {3.2, 3.1, -3.0, 3.0}), "loss[2]");
  EXPECT_EQ(input_of({1, 2, 3, 4}, {3.2, 3.1, NAN, 3.0}), "loss[2]");
  EXPECT_EQ(input_of({0, 2, 3, 4}, {3.2, 3.1, 3.0, 3.0}), "test_time[0]");
  EXPECT_EQ(input_of({1, 2, 3, 4}, {3.2, 3.1, 3.0}), "loss");
  EXPECT_THROW(satexp_extrapolation({1, 2, 3, 4, 5}, {3.4, 3.3, 3.2, 3.1, 3.0}, 8.0), InputError);
  EXPECT_THROW(satexp_extrapolation({1, 2, 3, 4, 5}, {3.4, 3.3, 3.2, 3.1, 3.0}, 2.0), InputError);
}

// A step between the first two depths is seen by one point: the fit reproduces the curve, but
// it must say that Z and z are not identified. A decay spread over the grid draws no warning.
TEST(SatExpResolution, ADecayOverBeforeTheSecondDepthIsReportedAsUnresolved) {
  const std::vector<double> t = {1, 2, 4, 6, 8, 12};
  const SatExpFit step = fit_satexp(t, {2.10, 2.00, 2.00, 2.00, 2.00, 2.00});
  ASSERT_EQ(step.status, FitStatus::kOk) << step.report();
  EXPECT_NEAR(step.predict(1.0), 2.10, 1e-6);
  EXPECT_NEAR(step.predict(2.0), 2.00, 1e-6);
  ASSERT_EQ(step.warnings.size(), 1u) << step.report();
  EXPECT_NE(step.warnings[0].find("not separately identified"), std::string::npos)
      << step.warnings[0];
  EXPECT_NE(step.warnings[0].find("T = 2"), std::string::npos) << step.warnings[0];

  std::vector<double> spread;
  for (double ti : t)
    spread.push_back(2.0 + 0.3 * std::exp(-0.5 * ti));
  const SatExpFit resolved = fit_satexp(t, spread);
  ASSERT_EQ(resolved.status, FitStatus::kOk) << resolved.report();
  EXPECT_TRUE(resolved.warnings.empty()) << resolved.report();
  EXPECT_NEAR(resolved.value("z"), 0.5, 1e-6);

  const Curve s4 = s4_curve(0.0, 1);
  EXPECT_TRUE(fit_satexp(s4.t, s4.loss).warnings.empty());
}

}  // namespace
}  // namespace parcae::fitting
