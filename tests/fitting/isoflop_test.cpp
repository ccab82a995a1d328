// The isoFLOP analysis of scaling-laws.md §2: the synthetic cases S3a-S3c of §8, the window rule,
// D* and its ln-D cross-check, the bootstrap, and the error paths listed at the end of §8.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"
#include "test_data.h"

namespace parcae::fitting {
namespace {

// S3: L = 3.0 - 0.05 ln(C/1e18) + 0.02 (ln mu - ln mu*(C))^2, mu*(C) = k18 (C/1e18)^0.40,
// mu in {2, ..., 12}, C in {1, 2, 4, 8, 16, 64}e18; L += noise * eps (nats).
std::vector<IsoflopRun> s3_runs(double k18, double noise, std::uint64_t seed) {
  detail::Random random(seed, 0);
  std::vector<IsoflopRun> runs;
  for (const auto& design : testing::parcae140m_design()) {
    const double c = design.budget_flops / 1e18;
    const double mu_star = k18 * std::pow(c, 0.40);
    const double gap = std::log(design.mean_recurrence) - std::log(mu_star);
    IsoflopRun run;
    run.budget_id = detail::format_number(design.budget_flops);
    run.budget_flops = design.budget_flops;
    run.x = design.mean_recurrence;
    run.loss = 3.0 - 0.05 * std::log(c) + 0.02 * gap * gap + noise * random.normal();
    run.tokens = design.tokens;
    runs.push_back(run);
  }
  return runs;
}

IsoflopOptions parcae_options(int resamples) {
  IsoflopOptions options;
  options.flops_per_token = [](double mu) { return testing::parcae140m_flops(mu, mu / 2.0); };
  options.bootstrap_resamples = resamples;
  options.seed = 7;
  return options;
}

TEST(IsoflopRecovery, S3aNoiseFreeParabolasGiveTheExactMinimaAndExponent) {
  const IsoflopFit fit = fit_isoflop(s3_runs(2.2, 0.0, 1), parcae_options(0));
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  ASSERT_EQ(fit.budgets.size(), 6u);
  for (const BudgetMinimum& b : fit.budgets) {
    EXPECT_EQ(b.status, FitStatus::kOk) << b.budget_id << ": " << b.message;
    EXPECT_TRUE(b.used);
    const double c = b.budget_flops / 1e18;
    EXPECT_NEAR(b.log_x_star, std::log(2.2 * std::pow(c, 0.40)), 1e-9) << b.budget_id;
    EXPECT_NEAR(b.loss_star, 3.0 - 0.05 * std::log(c), 1e-9) << b.budget_id;
    // D* = C / F(mu*, mu*/2) (§2 step 6).
    EXPECT_NEAR(b.tokens_star,
                b.budget_flops / testing::parcae140m_flops(b.x_star, b.x_star / 2.0),
                1e-6 * b.tokens_star);
    EXPECT_LT(b.rss, 1e-20);
  }
  EXPECT_NEAR(fit.value("a"), 0.40, 1e-9);
  EXPECT_NEAR(fit.value("k18"), 2.2, 1e-8 * 2.2);
  EXPECT_EQ(fit.n, 6);
}

// §8 S3b: a within 0.06 and k18 within 12% (measured SD 0.015 and 3.1%).
TEST(IsoflopRecovery, S3bNoisyParabolasRecoverTheExponentAndPrefactor) {
  IsoflopOptions options = parcae_options(1000);
  options.prediction_budgets = {1e18, 1e20};
  const IsoflopFit fit = fit_isoflop(s3_runs(2.2, 0.001, 31), options);
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  EXPECT_NEAR(fit.value("a"), 0.40, 0.06);
  EXPECT_NEAR(fit.value("k18"), 2.2, 0.12 * 2.2);
  // The bootstrap percentile interval brackets the point estimate, and sigma_u is reported.
  const Coefficient& a = fit.coefficient("a");
  EXPECT_LT(a.ci_low, a.value);
  EXPECT_GT(a.ci_high, a.value);
  EXPECT_EQ(fit.bootstrap_replicates, 1000);
  EXPECT_LE(fit.bootstrap_discarded, 50);
  ASSERT_EQ(fit.predictions.size(), 2u);
  for (const IsoflopPrediction& p : fit.predictions) {
    EXPECT_NEAR(p.x_star, fit.x_star_law.predict(p.budget_flops), 1e-12 * p.x_star);
    EXPECT_LT(p.ci_low, p.x_star);
    EXPECT_GT(p.ci_high, p.x_star);
  }
  for (const BudgetMinimum& b : fit.budgets) {
    EXPECT_GT(b.sigma_log_x, 0.0);
    EXPECT_LT(b.x_star_low, b.x_star);
    EXPECT_GT(b.x_star_high, b.x_star);
    EXPECT_TRUE(std::isfinite(b.tokens_star_check)) << b.budget_id;
    EXPECT_TRUE(std::isfinite(b.tokens_check_log_difference)) << b.budget_id;
  }
}

TEST(IsoflopRecovery, S3cMinimaBelowTheGridAreFlaggedAndLeftOutOfThePowerLaw) {
  const IsoflopFit fit = fit_isoflop(s3_runs(1.5, 0.0, 1), parcae_options(0));
  ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
  ASSERT_EQ(fit.budgets.size(), 6u);
  EXPECT_EQ(fit.budgets[0].status, FitStatus::kExtrapolated);
  EXPECT_EQ(fit.budgets[1].status, FitStatus::kExtrapolated);
  EXPECT_NEAR(fit.budgets[0].x_star, 1.50, 1e-9);
  EXPECT_NEAR(fit.budgets[1].x_star, 1.5 * std::pow(2.0, 0.4), 1e-9);  // 1.98
  EXPECT_FALSE(fit.budgets[0].used);
  EXPECT_FALSE(fit.budgets[1].used);
  EXPECT_NE(fit.budgets[0].message.find("below"), std::string::npos) << fit.budgets[0].message;
  for (int b = 2; b < 6; ++b) {
    EXPECT_EQ(fit.budgets[b].status, FitStatus::kOk);
    EXPECT_TRUE(fit.budgets[b].used);
  }
  EXPECT_EQ(fit.n, 4);
  EXPECT_NEAR(fit.value("a"), 0.40, 1e-9);
  EXPECT_NE(fit.message.find("extrapolated"), std::string::npos) << fit.message;
}

TEST(IsoflopBootstrap, ResultsDependOnTheSeedButNotOnTheThreadCount) {
  IsoflopOptions options = parcae_options(400);
  options.threads = 1;
  const IsoflopFit one = fit_isoflop(s3_runs(2.2, 0.001, 5), options);
  options.threads = 2;
  const IsoflopFit two = fit_isoflop(s3_runs(2.2, 0.001, 5), options);
  options.seed = 8;
  const IsoflopFit other_seed = fit_isoflop(s3_runs(2.2, 0.001, 5), options);
  EXPECT_EQ(one.coefficient("a").ci_low, two.coefficient("a").ci_low);
  EXPECT_EQ(one.coefficient("a").ci_high, two.coefficient("a").ci_high);
  EXPECT_EQ(one.coefficient("k18").ci_high, two.coefficient("k18").ci_high);
  EXPECT_NE(one.coefficient("a").ci_low, other_seed.coefficient("a").ci_low);
}

// The frontier figure's band: D*(C) is predicted beside x*(C), from the D* power law, and both
// intervals bracket their predictions.
TEST(IsoflopBootstrap, PredictionsCarryIntervalsForTheOptimumAndItsTokens) {
  IsoflopOptions options = parcae_options(400);
  options.prediction_budgets = {1e18, 8e18, 1e20};
  const IsoflopFit fit = fit_isoflop(s3_runs(2.2, 0.001, 9), options);
  ASSERT_EQ(fit.status, FitStatus::kOk);
  ASSERT_EQ(fit.predictions.size(), 3u);
  for (const IsoflopPrediction& p : fit.predictions) {
    EXPECT_DOUBLE_EQ(p.x_star, fit.x_star_law.predict(p.budget_flops));
    EXPECT_DOUBLE_EQ(p.tokens_star, fit.tokens_star_law.predict(p.budget_flops));
    EXPECT_LT(p.ci_low, p.x_star);
    EXPECT_GT(p.ci_high, p.x_star);
    EXPECT_LT(p.tokens_ci_low, p.tokens_star);
    EXPECT_GT(p.tokens_ci_high, p.tokens_star);
  }
  // Extrapolating to 1e20 widens the interval relative to the middle of the budgets.
  const auto width = [](const IsoflopPrediction& p) { return std::log(p.ci_high / p.ci_low); };
  EXPECT_GT(width(fit.predictions[2]), width(fit.predictions[1]));
}

TEST(IsoflopBootstrap, CaseResamplingIsAvailableAndCountsItsDiscards) {
  IsoflopOptions options = parcae_options(400);
  options.bootstrap_scheme = BootstrapScheme::kCase;
  const IsoflopFit fit = fit_isoflop(s3_runs(2.2, 0.001, 5), options);
  ASSERT_EQ(fit.status, FitStatus::kOk);
  EXPECT_EQ(fit.bootstrap_replicates, 400);
  EXPECT_GE(fit.bootstrap_discarded, 0);
  EXPECT_LT(fit.bootstrap_discarded, 400);
  EXPECT_LT(fit.coefficient("a").ci_low, fit.coefficient("a").ci_high);
}

// Three x per budget: each parabola passes through its points exactly, so resampling would redraw
// the same losses and give a 0-wide interval whatever the noise. The intervals stay unknown and a
// warning says why; a fourth x per budget gives them a width again.
TEST(IsoflopBootstrap, ThreePointsPerBudgetGiveNoIntervalRatherThanAZeroWideOne) {
  // Each budget's three or four mu nearest (in ln mu) to its mu*(C) = 2.2 (C/1e18)^0.40.
  std::vector<IsoflopRun> three, four;
  const std::vector<IsoflopRun> runs = s3_runs(2.2, 0.001, 11);
  for (const IsoflopRun& run : runs) {
    const double log_star = std::log(2.2 * std::pow(run.budget_flops / 1e18, 0.40));
    int closer = 0;
    for (const IsoflopRun& other : runs) {
      closer += other.budget_flops == run.budget_flops &&
                std::abs(std::log(other.x) - log_star) < std::abs(std::log(run.x) - log_star);
    }
    if (closer < 4)
      four.push_back(run);
    if (closer < 3)
      three.push_back(run);
  }
  for (const BootstrapScheme scheme : {BootstrapScheme::kResidual, BootstrapScheme::kCase}) {
    IsoflopOptions options = parcae_options(400);
    options.bootstrap_scheme = scheme;
    const IsoflopFit fit = fit_isoflop(three, options);
    ASSERT_EQ(fit.status, FitStatus::kOk) << fit.report();
    EXPECT_TRUE(std::isfinite(fit.coefficient("a").value));
    EXPECT_TRUE(std::isnan(fit.coefficient("a").ci_low));
    EXPECT_TRUE(std::isnan(fit.coefficient("a").ci_high));
    EXPECT_TRUE(std::any_of(fit.warnings.begin(), fit.warnings.end(), [](const std::string& w) {
      return w.find("no bootstrap intervals") != std::string::npos &&
             w.find("3 distinct x") != std::string::npos;
    })) << fit.report();

    const IsoflopFit wider = fit_isoflop(four, options);
    ASSERT_EQ(wider.status, FitStatus::kOk) << wider.report();
    EXPECT_LT(wider.coefficient("a").ci_low, wider.coefficient("a").ci_high);
  }
}

// §2 step 2: more than 7 points keeps the argmin and 3 neighbours each side; an option overrides.
TEST(IsoflopWindow, MoreThanSevenPointsKeepTheArgminAndThreeNeighboursEachSide) {
  std::vector<IsoflopRun> runs;
  for (const double budget : {1e18, 2e18, 4e18}) {
    for (int i = 0; i < 12; ++i) {
      const double u = 0.2 * i;
      runs.push_back(
          {detail::format_number(budget), budget, std::exp(u), 3.0 + 0.1 * (u - 1.0) * (u - 1.0)});
    }
  }
  IsoflopOptions options;
  options.bootstrap_resamples = 0;
  const IsoflopFit fit = fit_isoflop(runs, options);
  ASSERT_EQ(fit.budgets.size(), 3u);
  EXPECT_EQ(fit.budgets[0].runs, 12);
  ASSERT_EQ(fit.budgets[0].x.size(), 7u);
  EXPECT_NEAR(std::log(fit.budgets[0].x.front()), 0.4, 1e-12);  // argmin u = 1.0 minus 3 steps
  EXPECT_NEAR(std::log(fit.budgets[0].x.back()), 1.6, 1e-12);
  EXPECT_NEAR(fit.budgets[0].x_star, std::exp(1.0), 1e-9);
  options.window_neighbours = 2;
  EXPECT_EQ(fit_isoflop(runs, options).budgets[0].x.size(), 5u);
}

// The error paths of §8: each gives a status or an InputError, never a silent number.
std::vector<IsoflopRun> three_good_budgets() {
  std::vector<IsoflopRun> runs;
  for (const auto& run : s3_runs(2.2, 0.0, 1)) {
    if (run.budget_flops <= 4e18) {
      runs.push_back(run);
    }
  }
  return runs;
}

TEST(IsoflopErrors, ABudgetWithFewerThanThreePointsIsFlaggedFailed) {
  std::vector<IsoflopRun> runs = three_good_budgets();
  runs.push_back({"tiny", 5e18, 2.0, 3.1});
  runs.push_back({"tiny", 5e18, 4.0, 3.0});
  const IsoflopFit fit = fit_isoflop(runs, parcae_options(0));
  EXPECT_EQ(fit.status, FitStatus::kOk);
  const auto tiny = std::find_if(
      fit.budgets.begin(), fit.budgets.end(), [](const auto& b) { return b.budget_id == "tiny"; });
  ASSERT_NE(tiny, fit.budgets.end());
  EXPECT_EQ(tiny->status, FitStatus::kFailed);
  EXPECT_NE(tiny->message.find("at least 3"), std::string::npos) << tiny->message;
  EXPECT_FALSE(tiny->used);
  EXPECT_TRUE(std::isnan(tiny->x_star));
}

TEST(IsoflopErrors, AParabolaOpeningDownwardsIsNoMinimum) {
  std::vector<IsoflopRun> runs = three_good_budgets();
  for (int mu = 2; mu <= 12; mu += 2) {
    const double u = std::log(mu);
    runs.push_back({"concave", 5e18, static_cast<double>(mu), 3.0 - 0.02 * (u - 1.5) * (u - 1.5)});
  }
  const IsoflopFit fit = fit_isoflop(runs, parcae_options(0));
  const BudgetMinimum& concave = fit.budgets[3];  // sorted by C: 1, 2, 4, 5 (e18)
  ASSERT_EQ(concave.budget_id, "concave");
  EXPECT_EQ(concave.status, FitStatus::kNoMinimum);
  EXPECT_LT(concave.c2, 0.0);
  EXPECT_FALSE(concave.used);
  EXPECT_EQ(fit.status, FitStatus::kOk);
}

// Losses falling in ln mu with a curvature just above rounding: the parabola opens upwards, but
// its vertex lies at exp(2.5e7), which is infinite in double. That budget is an extrapolated
// minimum without D*, and the fit and its bootstrap go on (they used to throw from D*).
TEST(IsoflopErrors, AVertexAtInfinityHasNoTokensAndTheFitGoesOn) {
  std::vector<IsoflopRun> runs = three_good_budgets();
  for (int mu = 2; mu <= 12; mu += 2) {
    const double u = std::log(mu);
    runs.push_back({"far", 5e18, static_cast<double>(mu), 3.0 - 0.05 * u + 1e-9 * u * u});
  }
  IsoflopFit fit;
  ASSERT_NO_THROW(fit = fit_isoflop(runs, parcae_options(200)));
  const BudgetMinimum& far = fit.budgets[3];  // sorted by C: 1, 2, 4, 5 (e18)
  ASSERT_EQ(far.budget_id, "far");
  EXPECT_GT(far.c2, 0.0);
  EXPECT_FALSE(std::isfinite(far.x_star));
  EXPECT_EQ(far.status, FitStatus::kExtrapolated);
  EXPECT_FALSE(std::isfinite(far.tokens_star));
  EXPECT_FALSE(far.used);
  EXPECT_EQ(fit.status, FitStatus::kOk);
}

TEST(IsoflopErrors, EqualLossesAreNoMinimumNotARandomVertex) {
  std::vector<IsoflopRun> runs = three_good_budgets();
  for (int mu = 2; mu <= 12; mu += 2) {
    runs.push_back({"flat", 5e18, static_cast<double>(mu), 3.0});
  }
  const IsoflopFit fit = fit_isoflop(runs, parcae_options(0));
  ASSERT_EQ(fit.budgets[3].budget_id, "flat");
  EXPECT_EQ(fit.budgets[3].status, FitStatus::kNoMinimum);
}

TEST(IsoflopErrors, FewerThanThreeUsableBudgetsIsAFailedFitWithAReason) {
  std::vector<IsoflopRun> runs;
  for (const auto& run : s3_runs(2.2, 0.0, 1)) {
    if (run.budget_flops <= 2e18) {
      runs.push_back(run);
    }
  }
  const IsoflopFit fit = fit_isoflop(runs, parcae_options(100));
  EXPECT_EQ(fit.status, FitStatus::kFailed);
  EXPECT_NE(fit.message.find("at least 3"), std::string::npos) << fit.message;
  EXPECT_EQ(fit.budgets.size(), 2u);
  EXPECT_FALSE(fit.is_usable());
}

TEST(IsoflopErrors, NonPositiveXOrBudgetOrLossThrowsNamingTheRun) {
  auto expect_error = [](std::vector<IsoflopRun> runs, const std::string& input) {
    try {
      fit_isoflop(runs, parcae_options(0));
      ADD_FAILURE() << "expected InputError for " << input;
    } catch (const InputError& e) {
      EXPECT_EQ(e.input(), input) << e.what();
    }
  };
  std::vector<IsoflopRun> runs = three_good_budgets();
  runs[4].x = 0.0;
  expect_error(runs, "runs[4].x");
  runs = three_good_budgets();
  runs[2].budget_flops = -1e18;
  expect_error(runs, "runs[2].budget_flops");
  runs = three_good_budgets();
  runs[7].loss = -0.5;
  expect_error(runs, "runs[7].loss");
  runs = three_good_budgets();
  runs[7].budget_flops = 3e18;  // a different C under the id of the second budget
  expect_error(runs, "runs[7].budget_flops");
  expect_error({}, "runs");
}

TEST(IsoflopErrors, NonFiniteLossesAreDroppedAndCounted) {
  std::vector<IsoflopRun> runs = three_good_budgets();
  runs[5].loss = std::nan("");
  runs[13].loss = INFINITY;
  const IsoflopFit fit = fit_isoflop(runs, parcae_options(0));
  EXPECT_EQ(fit.dropped_runs, 2);
  EXPECT_EQ(fit.budgets[0].dropped_runs, 1);
  EXPECT_EQ(fit.budgets[0].runs, 5);
  EXPECT_EQ(fit.budgets[2].dropped_runs, 1);
  EXPECT_FALSE(fit.warnings.empty());
  EXPECT_EQ(fit.status, FitStatus::kOk);
}

TEST(IsoflopErrors, InvalidOptionsAreAllNamedAtOnce) {
  IsoflopOptions options;
  options.window_neighbours = 0;
  options.ci_level = 1.5;
  try {
    options.validate();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("window_neighbours"), std::string::npos) << what;
    EXPECT_NE(what.find("ci_level"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace parcae::fitting
