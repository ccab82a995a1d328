// What every fit shares (scaling-laws.md §1, §6): status names, the error type and its message,
// coefficient lookup, the one-line and full reports, the Huber loss and the held-out error.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

TEST(FitStatusNames, EveryStatusHasTheSpellingOfTheSpec) {
  EXPECT_STREQ(to_string(FitStatus::kOk), "ok");
  EXPECT_STREQ(to_string(FitStatus::kNoMinimum), "no_minimum");
  EXPECT_STREQ(to_string(FitStatus::kExtrapolated), "extrapolated");
  EXPECT_STREQ(to_string(FitStatus::kFlat), "flat");
  EXPECT_STREQ(to_string(FitStatus::kFailed), "failed");
  EXPECT_STREQ(to_string(FitStatus::kUnphysical), "unphysical");
}

TEST(InputErrors, MessageNamesTheInputTheValueAndWhatWasExpected) {
  const InputError error("loss[17]", -0.5, "expected a positive, finite loss in nats");
  EXPECT_STREQ(error.what(), "loss[17] = -0.5: expected a positive, finite loss in nats");
  EXPECT_EQ(error.input(), "loss[17]");
  const std::invalid_argument& base = error;  // callers may catch the standard type
  EXPECT_NE(std::string(base.what()).find("loss[17]"), std::string::npos);
}

TEST(Reports, SummaryAndReportShowStatusCountsAndEveryCoefficient) {
  const PowerLawFit fit = fit_power_law({1, 2, 4, 8}, {1.0, 1.5, 2.2, 3.4});
  const std::string summary = fit.summary();
  EXPECT_EQ(summary.find('\n'), std::string::npos);
  EXPECT_NE(summary.find("power: ok, n = 4"), std::string::npos) << summary;
  EXPECT_NE(summary.find("a = "), std::string::npos) << summary;
  const std::string report = fit.report();
  for (const char* name : {"a", "k", "ln_k", "usable: yes"}) {
    EXPECT_NE(report.find(name), std::string::npos) << name << "\n" << report;
  }
  EXPECT_TRUE(fit.is_usable());
}

TEST(Reports, AskingForAnUnknownCoefficientNamesTheOnesThatExist) {
  const PowerLawFit fit = fit_power_law({1, 2, 4}, {1, 2, 4});
  try {
    fit.coefficient("alpha");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.input(), "alpha");
    EXPECT_NE(std::string(e.what()).find("a, k, ln_k"), std::string::npos) << e.what();
  }
}

TEST(Reports, AFailedFitIsNeverUsable) {
  Fit fit;
  fit.coefficients = {{"a", 1.0}};
  EXPECT_FALSE(fit.is_usable());
  fit.status = FitStatus::kOk;
  EXPECT_TRUE(fit.is_usable());
  fit.coefficients[0].value = std::nan("");
  EXPECT_FALSE(fit.is_usable());
}

// §1: H(r) = r^2/2 for |r| <= delta, else delta (|r| - delta/2); continuous at the threshold.
TEST(Huber, QuadraticInsideTheThresholdAndLinearOutside) {
  EXPECT_DOUBLE_EQ(huber(5e-4), 0.5 * 5e-4 * 5e-4);
  EXPECT_DOUBLE_EQ(huber(-3e-3), 1e-3 * (3e-3 - 0.5e-3));
  EXPECT_DOUBLE_EQ(huber(1e-3), 0.5e-6);
  EXPECT_DOUBLE_EQ(huber(2.0, 1.0), 1.5);
}

// §6: err = (1/m) sum |Lhat - L| / L x 100%.
TEST(HeldOutError, IsTheMeanAbsoluteRelativeErrorInPercent) {
  EXPECT_NEAR(heldout_relative_error_percent({3.03, 2.97}, {3.0, 3.0}), 1.0, 1e-12);
  EXPECT_THROW(heldout_relative_error_percent({}, {}), InputError);
  EXPECT_THROW(heldout_relative_error_percent({1.0}, {0.0}), InputError);
  EXPECT_THROW(heldout_relative_error_percent({1.0, 2.0}, {1.0}), InputError);
  EXPECT_THROW(heldout_relative_error_percent({NAN}, {1.0}), InputError);
}

}  // namespace
}  // namespace parcae::fitting
