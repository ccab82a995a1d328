// parcae-bench-fitting: how long the fitting library takes on the two jobs that dominate a study.
//
// 1. The Chinchilla known answer of scaling-laws.md §7: Epoch's extraction (240 rows after the
//    filter), the 4,500-start grid of §3, Huber (delta = 1e-3) on log residuals, summed, L-BFGS
//    with analytic gradients, as fit_chinchilla runs it by default (every start screened with
//    SciPy's stopping rule, the best five polished with the tight rule of §1). Timed on one
//    thread and on every core, with the optimum printed so that bench/scipy_chinchilla.py's can
//    be checked against it; then once on one thread with the tight rule on every start.
// 2. 1,000 bootstrap replicates of an isoFLOP analysis (§2 step 8) on the S3b design of §8:
//    mu in {2, 4, ..., 12} x C in {1, 2, 4, 8, 16, 64}e18, loss with 0.001 nats of noise.
// Output is one "key value" per line for bench/run-fitting-bench. Nothing is asserted: the
// figures go to docs/benchmarks.md with the machine and the command.
//
// Usage: parcae-bench-fitting CHINCHILLA_CSV [--repeats R]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "analysis/analysis.h"  // read_csv, read_numeric_columns
#include "fitting/fitting.h"    // fit_chinchilla, fit_isoflop, ChinchillaData, IsoflopRun
#include "sweeps/error.h"       // parcae::Error

namespace {

using parcae::fitting::ChinchillaData;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point begin) {
  return std::chrono::duration<double>(Clock::now() - begin).count();
}

// CPU time of the process, all threads together: on a machine shared with other work it moves
// less than the wall time.
double cpu_seconds() {
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

// §7: D = C / (6N), and only the rows whose loss is strictly below the 5th-largest loss.
ChinchillaData load_chinchilla(const std::string& path) {
  const auto table = parcae::analysis::read_csv(path);
  const auto columns = parcae::analysis::read_numeric_columns(
      table, {{"Model Size", true}, {"Training FLOP", true}, {"loss", true}}, false);
  std::vector<double> sorted = columns.values[2];
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  const double threshold = sorted.at(4);
  ChinchillaData data;
  for (size_t i = 0; i < columns.values[0].size(); ++i) {
    if (columns.values[2][i] >= threshold)
      continue;
    data.params.push_back(columns.values[0][i]);
    data.tokens.push_back(columns.values[1][i] / (6 * columns.values[0][i]));
    data.loss.push_back(columns.values[2][i]);
  }
  return data;
}

// one_stage: every start with the tight rule of §1 (polished_optima = 0), the procedure before
// screening, for comparison with SciPy's tight rule.
void bench_chinchilla(const ChinchillaData& data, int threads, int repeats, bool one_stage) {
  parcae::fitting::ChinchillaOptions options;
  options.threads = threads;
  if (one_stage) {
    options.polished_optima = 0;
  }
  double best_time = INFINITY, best_cpu = INFINITY;
  parcae::fitting::ChinchillaFit fit;
  for (int r = 0; r < repeats; ++r) {
    const auto begin = Clock::now();
    const double begin_cpu = cpu_seconds();
    fit = parcae::fitting::fit_chinchilla(data, options);
    best_time = std::min(best_time, seconds_since(begin));
    best_cpu = std::min(best_cpu, cpu_seconds() - begin_cpu);
  }
  const std::string tag = std::string(one_stage ? "chinchilla_one_stage" : "chinchilla") +
                          "_threads_" + std::to_string(threads);
  std::printf("%s_seconds %.3f\n", tag.c_str(), best_time);
  std::printf("%s_cpu_seconds %.3f\n", tag.c_str(), best_cpu);
  std::printf("%s_starts %d\n", tag.c_str(), fit.starts);
  std::printf("%s_successes %d\n", tag.c_str(), fit.successes);
  std::printf("%s_polished %d\n", tag.c_str(), fit.polished);
  std::printf("%s_status %s\n", tag.c_str(), parcae::fitting::to_string(fit.status));
  std::printf("%s_J %.10f\n", tag.c_str(), fit.objective);
  std::printf("%s_A %.4f\n", tag.c_str(), fit.value("A"));
  std::printf("%s_B %.4f\n", tag.c_str(), fit.value("B"));
  std::printf("%s_E %.6f\n", tag.c_str(), fit.value("E"));
  std::printf("%s_alpha %.6f\n", tag.c_str(), fit.value("alpha"));
  std::printf("%s_beta %.6f\n", tag.c_str(), fit.value("beta"));
}

// S3 of §8: L = 3.0 - 0.05 ln(C/1e18) + 0.02 (ln mu - ln mu*(C))^2, mu*(C) = 2.2 (C/1e18)^0.40,
// plus 0.001 nats of Gaussian noise.
std::vector<parcae::fitting::IsoflopRun> s3b_runs(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.001);
  std::vector<parcae::fitting::IsoflopRun> runs;
  for (double c18 : {1.0, 2.0, 4.0, 8.0, 16.0, 64.0}) {
    const double mu_star = 2.2 * std::pow(c18, 0.40);
    for (int mu = 2; mu <= 12; mu += 2) {
      const double d = std::log(mu) - std::log(mu_star);
      const double loss = 3.0 - 0.05 * std::log(c18) + 0.02 * d * d + noise(rng);
      runs.push_back({std::to_string(c18) + "e18", c18 * 1e18, static_cast<double>(mu), loss});
    }
  }
  return runs;
}

void bench_isoflop_bootstrap(int resamples, int threads, int repeats) {
  const auto runs = s3b_runs(7);
  parcae::fitting::IsoflopOptions options;
  options.bootstrap_resamples = resamples;
  options.threads = threads;
  // The Parcae-140M FLOP line of parcae.md §11, F(mu, mu/2), so that D* is bootstrapped too.
  options.flops_per_token = [](double mu) {
    return 705487104.0 + 40900992.0 * mu + 81801984.0 * mu / 2;
  };
  for (auto scheme :
       {parcae::fitting::BootstrapScheme::kResidual, parcae::fitting::BootstrapScheme::kCase}) {
    options.bootstrap_scheme = scheme;
    double best_time = INFINITY;
    parcae::fitting::IsoflopFit fit;
    for (int r = 0; r < repeats; ++r) {
      const auto begin = Clock::now();
      fit = parcae::fitting::fit_isoflop(runs, options);
      best_time = std::min(best_time, seconds_since(begin));
    }
    const std::string tag =
        std::string("isoflop_bootstrap_") +
        (scheme == parcae::fitting::BootstrapScheme::kResidual ? "residual" : "case") +
        "_threads_" + std::to_string(threads);
    const auto& a = fit.coefficient("a");
    std::printf("%s_seconds %.4f\n", tag.c_str(), best_time);
    std::printf("%s_replicates %d\n", tag.c_str(), fit.bootstrap_replicates);
    std::printf("%s_discarded %d\n", tag.c_str(), fit.bootstrap_failed);
    std::printf("%s_a %.4f [%.4f, %.4f]\n", tag.c_str(), a.value, a.ci_low, a.ci_high);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: parcae-bench-fitting CHINCHILLA_CSV [--repeats R]\n");
    return 2;
  }
  int repeats = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--repeats")
      repeats = std::max(1, std::atoi(argv[i + 1]));
  }
  try {
    const ChinchillaData data = load_chinchilla(argv[1]);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::printf("rows %zu\n", data.loss.size());
    std::printf("cores %d\n", cores);
    bench_chinchilla(data, 1, repeats, false);
    if (cores > 1)
      bench_chinchilla(data, cores, repeats, false);
    bench_chinchilla(data, 1, 1, true);
    bench_isoflop_bootstrap(1000, 1, std::max(repeats, 3));
    if (cores > 1)
      bench_isoflop_bootstrap(1000, cores, std::max(repeats, 3));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parcae-bench-fitting: %s\n", e.what());
    return 2;
  }
  return 0;
}
