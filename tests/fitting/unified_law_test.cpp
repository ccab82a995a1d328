// The unified law of scaling-laws.md §4.2: the synthetic cases S5a and S5b of §8 (S2's 36 runs at
// ten test-time depths), the variants, the floor-fixed fit and the oracle check.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"
#include "test_data.h"

namespace parcae::fitting {
namespace {

constexpr double kZ = 1.0, kRate = 4.0;
const double kTestTimes[] = {1, 2, 4, 6, 8, 10, 12, 16, 20, 24};

UnifiedLawParameters s5_truth() {
  return {testing::paper140m_law(), std::log(kZ), std::log(kRate), 1.0};
}

double s5_loss(double mu, double tokens, double test_time) {
  return predict_unified_law(s5_truth(),
                             UnifiedVariant::kGammaOne,
                             testing::kParcae140mParams.count(mu),
                             mu,
                             tokens,
                             test_time);
}

// S5: every S2 run at every T (360 points); ln L += noise * eps. The training law of §4.1 is
// fitted on the points at T = mu_rec, as a caller would.
struct S5 {
  UnifiedData data;
  ParcaeData at_mu;
};

S5 s5_data(double noise, std::uint64_t seed) {
  detail::Random random(seed, 0);
  S5 s5;
  int run = 0;
  for (const auto& design : testing::parcae140m_design()) {
    for (double t : kTestTimes) {
      double loss = s5_loss(design.mean_recurrence, design.tokens, t);
      if (noise > 0.0) {
        loss *= std::exp(noise * random.normal());
      }
      s5.data.mean_recurrence.push_back(design.mean_recurrence);
      s5.data.tokens.push_back(design.tokens);
      s5.data.test_time.push_back(t);
      s5.data.loss.push_back(loss);
      s5.data.run.push_back(run);
      if (t == design.mean_recurrence) {
        s5.at_mu.mean_recurrence.push_back(design.mean_recurrence);
        s5.at_mu.tokens.push_back(design.tokens);
        s5.at_mu.loss.push_back(loss);
      }
    }
    ++run;
  }
  return s5;
}

TEST(UnifiedLawRecovery, S5aNoiseFreeDataGiveBackAllSevenCoefficientsFromTheStandardStarts) {
  const S5 s5 = s5_data(0.0, 1);
  ASSERT_EQ(s5.data.loss.size(), 360u);
  ASSERT_EQ(s5.at_mu.loss.size(), 36u);
  const ParcaeLawFit training = fit_parcae_law(s5.at_mu, testing::kParcae140mParams);
  ASSERT_EQ(training.status, FitStatus::kOk);
  const UnifiedLawFit fit = fit_unified_law(s5.data, testing::kParcae140mParams, training);
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  EXPECT_EQ(fit.starts, 1030);
  EXPECT_EQ(fit.n, 360);
  EXPECT_NEAR(fit.value("E"), 2.662, 1e-5 * 2.662);
  EXPECT_NEAR(fit.value("X"), 522733.307, 1e-5 * 522733.307);
  EXPECT_NEAR(fit.value("x"), 0.771, 1e-5 * 0.771);
  EXPECT_NEAR(fit.value("Y"), 25420.102, 1e-5 * 25420.102);
  EXPECT_NEAR(fit.value("y"), 0.525, 1e-5 * 0.525);
  EXPECT_NEAR(fit.value("Z"), kZ, 1e-5 * kZ);
  EXPECT_NEAR(fit.value("z"), kRate, 1e-5 * kRate);
}

// §8 S5b: Z within 0.01, z within 0.05, and the held-out curve (N(8), D = 11.2e9, T = 1..16)
// predicted within 0.1% on average.
TEST(UnifiedLawRecovery, S5bNoisyDataRecoverTheTestTimeTermAndPredictAHeldOutCurve) {
  const S5 s5 = s5_data(1e-3, 4242);
  const ParcaeLawFit training = fit_parcae_law(s5.at_mu, testing::kParcae140mParams);
  UnifiedOptions options;
  options.predictions = {{8.0, 11.2e9, 4.0}};
  const UnifiedLawFit fit = fit_unified_law(s5.data, testing::kParcae140mParams, training, options);
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  EXPECT_NEAR(fit.value("Z"), kZ, 0.01);
  EXPECT_NEAR(fit.value("z"), kRate, 0.05);
  std::vector<double> predicted, truth;
  for (int t = 1; t <= 16; ++t) {
    predicted.push_back(fit.predict(8.0, 11.2e9, t));
    truth.push_back(s5_loss(8.0, 11.2e9, t));
  }
  EXPECT_LE(heldout_relative_error_percent(predicted, truth), 0.1);
  EXPECT_NEAR(fit.value("L(mu=8,D=1.12e+10,T=4)"), fit.predict(8.0, 11.2e9, 4.0), 1e-15);
}

// The floor-fixed option fits only (Z, z) with the floor held at the training law, and the
// learned-gamma variant adds gamma; on noise-free gamma = 1 data it finds gamma = 1.
TEST(UnifiedLawVariants, FloorFixedAndLearnedGammaFitTheirOwnParameters) {
  const S5 s5 = s5_data(0.0, 1);
  ParcaeLawFit training;  // the floor as if the §4.1 fit were exact
  training.status = FitStatus::kOk;
  training.theta = testing::paper140m_law();

  UnifiedOptions fixed;
  fixed.floor_fixed = true;
  fixed.random_starts = 50;
  const UnifiedLawFit floor_fixed =
      fit_unified_law(s5.data, testing::kParcae140mParams, training, fixed);
  ASSERT_EQ(floor_fixed.status, FitStatus::kOk) << floor_fixed.report();
  EXPECT_EQ(floor_fixed.value("E"), training.theta.E());
  EXPECT_EQ(floor_fixed.value("x"), training.theta.alpha);
  EXPECT_NEAR(floor_fixed.value("Z"), kZ, 1e-7);
  EXPECT_NEAR(floor_fixed.value("z"), kRate, 1e-7);

  UnifiedOptions learned;
  learned.variant = UnifiedVariant::kLearnedGamma;
  learned.floor_fixed = true;
  learned.random_starts = 50;
  const UnifiedLawFit gamma =
      fit_unified_law(s5.data, testing::kParcae140mParams, training, learned);
  ASSERT_EQ(gamma.status, FitStatus::kOk) << gamma.report();
  EXPECT_EQ(gamma.coefficients.size(), 8u);
  EXPECT_NEAR(gamma.value("gamma"), 1.0, 1e-6);

  // Without mu the term cannot follow T / mu, so the fit is strictly worse.
  UnifiedOptions no_mu;
  no_mu.variant = UnifiedVariant::kNoMu;
  no_mu.floor_fixed = true;
  no_mu.random_starts = 50;
  const UnifiedLawFit ablation =
      fit_unified_law(s5.data, testing::kParcae140mParams, training, no_mu);
  ASSERT_EQ(ablation.status, FitStatus::kOk);
  EXPECT_GT(ablation.objective, 1e3 * std::max(floor_fixed.objective, 1e-12));
}

// §4.2 oracle check: the measured L(T = mu_rec) replaces the floor, (Z, z) are kept.
TEST(UnifiedLawVariants, OracleFloorAddsTheFittedTestTimeTermToTheMeasuredLoss) {
  UnifiedLawFit fit;
  fit.variant = UnifiedVariant::kGammaOne;
  fit.theta = s5_truth();
  EXPECT_NEAR(
      fit.predict_with_oracle_floor(2.9, 8.0, 4.0), 2.9 + kZ * std::exp(-kRate * 0.5), 1e-15);
}

TEST(UnifiedLawErrors, BadInputAndAFailedTrainingLawThrow) {
  const S5 s5 = s5_data(0.0, 1);
  ParcaeLawFit failed;
  EXPECT_THROW(fit_unified_law(s5.data, testing::kParcae140mParams, failed), InputError);
  ParcaeLawFit ok;
  ok.status = FitStatus::kOk;
  ok.theta = testing::paper140m_law();
  UnifiedData bad = s5.data;
  bad.test_time[3] = 0.0;
  try {
    fit_unified_law(bad, testing::kParcae140mParams, ok);
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.input(), "data.test_time[3]");
  }
  bad = s5.data;
  bad.tokens.pop_back();
  EXPECT_THROW(fit_unified_law(bad, testing::kParcae140mParams, ok), InputError);
}

}  // namespace
}  // namespace parcae::fitting
