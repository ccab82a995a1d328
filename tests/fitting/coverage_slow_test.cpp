// The slow statistical check of scaling-laws.md §8 S3b: over 300 synthetic isoFLOP data sets
// (S3a's design, L += 0.001 eps nats), the 95% residual-bootstrap interval of the exponent covers
// the true a = 0.40 in 85-97% of them (the spec measured 91%). Labelled "slow": scripts/test runs
// it only with PARCAE_SLOW_TESTS=1.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"
#include "test_data.h"

namespace parcae::fitting {
namespace {

TEST(IsoflopCoverage, NinetyFivePercentIntervalCoversTheTrueExponentEightyFiveToNinetySeven) {
  constexpr int kDatasets = 300;
  int covered = 0, fitted = 0;
  for (int d = 0; d < kDatasets; ++d) {
    detail::Random random(1000 + d, 0);
    std::vector<IsoflopRun> runs;
    for (const auto& design : testing::parcae140m_design()) {
      const double c = design.budget_flops / 1e18;
      const double gap = std::log(design.mean_recurrence) - std::log(2.2 * std::pow(c, 0.40));
      runs.push_back({detail::format_number(design.budget_flops),
                      design.budget_flops,
                      design.mean_recurrence,
                      3.0 - 0.05 * std::log(c) + 0.02 * gap * gap + 0.001 * random.normal()});
    }
    IsoflopOptions options;
    options.bootstrap_resamples = 2000;
    options.seed = 77 + d;
    const IsoflopFit fit = fit_isoflop(runs, options);
    if (fit.status != FitStatus::kOk) {
      continue;
    }
    ++fitted;
    const Coefficient& a = fit.coefficient("a");
    covered += (a.ci_low <= 0.40 && 0.40 <= a.ci_high) ? 1 : 0;
  }
  EXPECT_GE(fitted, 290);
  const double coverage = static_cast<double>(covered) / fitted;
  EXPECT_GE(coverage, 0.85) << covered << " of " << fitted;
  EXPECT_LE(coverage, 0.97) << covered << " of " << fitted;
  RecordProperty("coverage", std::to_string(coverage));
}

}  // namespace
}  // namespace parcae::fitting
