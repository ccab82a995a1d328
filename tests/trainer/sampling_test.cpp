// The depth sampler of parcae.md §6 and the seeded streams: draws follow the clamped Poisson
// law, each granularity gives its shape of plan, and the same key always gives the same draws.
#include "trainer/sampling.h"

#include <cmath>
#include <set>

#include <gtest/gtest.h>

namespace parcae::trainer {
namespace {

// Sample mean and variance of max(Poisson(mu), 1) against the exact values
//   E[T] = mu + e^-mu,   E[T^2] = mu + mu^2 + e^-mu.
// With 200,000 draws the standard error of the mean is sqrt(Var/n) and of the variance about
// sqrt((mu + 2 mu^2) / n); five standard errors make a false failure a one-in-a-million event.
void expect_clamped_poisson(int mu, int mu_bwd) {
  sweeps::ModelConfig config = sweeps::preset("parcae-tiny");
  config.mean_recurrence = mu;
  config.mean_backward = mu_bwd;
  const int rows = 1000, batches = 200;
  double sum = 0.0, sum_squares = 0.0;
  for (int i = 0; i < batches; ++i) {
    const DepthPlan plan =
        draw_depth_plan(config, rows, stream_seed({42, static_cast<uint64_t>(i)}));
    ASSERT_EQ(plan.rows(), rows);
    for (int r = 0; r < rows; ++r) {
      const int n = plan.no_grad[static_cast<size_t>(r)], k = plan.graded[static_cast<size_t>(r)];
      const int depth = n + k;
      ASSERT_GE(depth, 1);
      ASSERT_EQ(k, std::min(depth, mu_bwd));
      sum += depth;
      sum_squares += static_cast<double>(depth) * depth;
    }
  }
  const double n = static_cast<double>(rows) * batches;
  const double mean = sum / n, variance = sum_squares / n - mean * mean;
  const double exact_mean = mu + std::exp(-mu);
  const double exact_variance = mu + mu * mu + std::exp(-mu) - exact_mean * exact_mean;
  EXPECT_NEAR(mean, exact_mean, 5 * std::sqrt(exact_variance / n)) << "mu = " << mu;
  EXPECT_NEAR(variance, exact_variance, 5 * std::sqrt((mu + 2.0 * mu * mu) / n)) << "mu = " << mu;
}

TEST(DepthSampler, PerSequenceDepthsFollowTheClampedPoissonLaw) {
  expect_clamped_poisson(2, 1);
  expect_clamped_poisson(8, 4);
}

// The `1-poisson` control of a sweep (the paper code's "mu_rec = 1"): T = max(Poisson(1), 1)
// with every loop graded (mu_bwd = 1), mean 1 + 1/e = 1.37 and T = 1 for 2/e = 74% of the rows
// (parcae.md §6), although the budget charges it one loop as it does the fixed control.
TEST(DepthSampler, ThePoissonControlLoopsOnAverageOnePlusOneOverETimes) {
  expect_clamped_poisson(1, 1);
}

TEST(DepthSampler, PoissonDrawsMatchTheirMeanAndVariance) {
  SplitMix64 rng(7);
  const int n = 200000;
  double sum = 0.0, sum_squares = 0.0;
  for (int i = 0; i < n; ++i) {
    const int x = sample_poisson(4.0, rng);
    sum += x;
    sum_squares += static_cast<double>(x) * x;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 4.0, 5 * std::sqrt(4.0 / n));
  EXPECT_NEAR(sum_squares / n - mean * mean, 4.0, 5 * std::sqrt((4.0 + 2 * 16.0) / n));
}

TEST(DepthSampler, PerBatchGranularityGivesEveryRowTheSameDepth) {
  const sweeps::ModelConfig config = sweeps::preset("rdm-tiny");
  std::set<int> depths;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const DepthPlan plan = draw_depth_plan(config, 16, seed);
    for (int r = 1; r < 16; ++r) {
      EXPECT_EQ(plan.no_grad[static_cast<size_t>(r)], plan.no_grad[0]);
      EXPECT_EQ(plan.graded[static_cast<size_t>(r)], plan.graded[0]);
    }
    depths.insert(plan.no_grad[0] + plan.graded[0]);
  }
  EXPECT_GT(depths.size(), 3u);  // but it does vary between micro-batches
}

TEST(DepthSampler, TheFixedControlAndTheTransformerRunExactlyOneGradedIteration) {
  sweeps::ModelConfig fixed = sweeps::preset("parcae-tiny");
  fixed.depth_sampler = sweeps::DepthSampler::kFixed;
  fixed.mean_recurrence = fixed.mean_backward = 1;
  for (const auto& config : {fixed, sweeps::preset("transformer-tiny")}) {
    const DepthPlan plan = draw_depth_plan(config, 8, 123);
    EXPECT_EQ(plan.max_no_grad(), 0);
    EXPECT_EQ(plan.max_graded(), 1);
    EXPECT_EQ(plan.mean_depth(), 1.0);
  }
}

TEST(SeededStreams, TheSameKeyGivesTheSameDrawsAndAnotherKeyOthers) {
  const sweeps::ModelConfig config = sweeps::preset("parcae-tiny");
  const uint64_t seed = step_stream_seed(5, Stream::kDepth, 100, 2);
  const DepthPlan a = draw_depth_plan(config, 64, seed);
  const DepthPlan b = draw_depth_plan(config, 64, step_stream_seed(5, Stream::kDepth, 100, 2));
  EXPECT_EQ(a.no_grad, b.no_grad);
  EXPECT_EQ(a.graded, b.graded);
  EXPECT_NE(seed, step_stream_seed(5, Stream::kDepth, 101, 2));
  EXPECT_NE(seed, step_stream_seed(5, Stream::kDepth, 100, 3));
  EXPECT_NE(seed, step_stream_seed(5, Stream::kInitialState, 100, 2));
  EXPECT_NE(seed, step_stream_seed(6, Stream::kDepth, 100, 2));
}

// The key of a step stream is (seed, purpose, step, global micro-batch, 0): the same for every
// world size, and the same key that seeded every run so far, so their draws do not move.
TEST(SeededStreams, AStepStreamIsKeyedByItsGlobalMicroBatchAndAFixedZero) {
  EXPECT_EQ(step_stream_seed(5, Stream::kDepth, 100, 2), stream_seed({5, 1, 100, 2, 0}));
  EXPECT_EQ(step_stream_seed(7, Stream::kInitialState, 3, 9), stream_seed({7, 2, 3, 9, 0}));
}

TEST(DepthBucketing, OrderSortsRowsByFrozenIterationsAndKeepsTies) {
  DepthPlan plan;
  plan.no_grad = {3, 0, 2, 0, 3, 1};
  plan.graded = {4, 1, 4, 2, 4, 4};
  EXPECT_EQ(bucketing_order(plan), (std::vector<int>{1, 3, 5, 2, 0, 4}));
  const DepthPlan joined = concatenate({plan, DepthPlan::uniform(2, 5, 4)});
  EXPECT_EQ(joined.rows(), 8);
  EXPECT_EQ(joined.max_no_grad(), 5);
  EXPECT_NEAR(joined.mean_depth(), (7 + 1 + 6 + 2 + 7 + 5 + 9 + 9) / 8.0, 1e-15);
}

}  // namespace
}  // namespace parcae::trainer
