// Stream seeds, splitmix64, the Poisson sampler and depth plans (parcae.md §6).
#include "trainer/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace parcae::trainer {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t stream_seed(std::initializer_list<uint64_t> key) {
  uint64_t seed = 0x5EED5EED5EED5EEDULL;
  for (const uint64_t word : key)
    seed = mix(seed ^ mix(word));
  return seed;
}

uint64_t step_stream_seed(uint64_t run_seed, Stream stream, int64_t step, int64_t micro) {
  // The fifth key word, fixed at 0, is part of the streams' definition: changing it would change
  // every run's draws.
  return stream_seed({run_seed,
                      static_cast<uint64_t>(stream),
                      static_cast<uint64_t>(step),
                      static_cast<uint64_t>(micro),
                      0});
}

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

int sample_poisson(double mean, SplitMix64& rng) {
  const double limit = std::exp(-mean);
  int count = 0;
  double product = rng.uniform();
  while (product > limit) {
    ++count;
    product *= rng.uniform();
  }
  return count;
}

int DepthPlan::max_no_grad() const {
  return no_grad.empty() ? 0 : *std::max_element(no_grad.begin(), no_grad.end());
}

int DepthPlan::max_graded() const {
  return graded.empty() ? 0 : *std::max_element(graded.begin(), graded.end());
}

double DepthPlan::mean_depth() const {
  if (no_grad.empty())
    return 0.0;
  const double total = std::accumulate(no_grad.begin(), no_grad.end(), 0.0) +
                       std::accumulate(graded.begin(), graded.end(), 0.0);
  return total / static_cast<double>(no_grad.size());
}

DepthPlan DepthPlan::uniform(int rows, int no_grad, int graded) {
  DepthPlan plan;
  plan.no_grad.assign(static_cast<size_t>(rows), no_grad);
  plan.graded.assign(static_cast<size_t>(rows), graded);
  return plan;
}

DepthPlan draw_depth_plan(const sweeps::ModelConfig& config, int rows, uint64_t seed) {
  if (!config.is_looped() || config.depth_sampler == sweeps::DepthSampler::kFixed) {
    return DepthPlan::uniform(rows, 0, 1);
  }
  SplitMix64 rng(seed);
  auto draw = [&]() {
    const int depth = std::max(sample_poisson(config.mean_recurrence, rng), 1);
    const int graded = std::min(depth, config.mean_backward);
    return std::pair<int, int>(depth - graded, graded);
  };
  if (config.depth_granularity == sweeps::DepthGranularity::kPerBatch) {
    const auto [no_grad, graded] = draw();
    return DepthPlan::uniform(rows, no_grad, graded);
  }
  DepthPlan plan;
  for (int i = 0; i < rows; ++i) {
    const auto [no_grad, graded] = draw();
    plan.no_grad.push_back(no_grad);
    plan.graded.push_back(graded);
  }
  return plan;
}

DepthPlan concatenate(const std::vector<DepthPlan>& plans) {
  DepthPlan all;
  for (const auto& plan : plans) {
    all.no_grad.insert(all.no_grad.end(), plan.no_grad.begin(), plan.no_grad.end());
    all.graded.insert(all.graded.end(), plan.graded.begin(), plan.graded.end());
  }
  return all;
}

std::vector<int> bucketing_order(const DepthPlan& plan) {
  std::vector<int> order(static_cast<size_t>(plan.rows()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return plan.no_grad[static_cast<size_t>(a)] < plan.no_grad[static_cast<size_t>(b)];
  });
  return order;
}

}  // namespace parcae::trainer
