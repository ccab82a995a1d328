// Data for the fitting tests: the Chinchilla file of scaling-laws.md §7 read from
// tests/testdata (with its SHA-256, so a changed copy cannot pass silently), and the designs of
// the synthetic cases of §8 (Parcae-140M's N(mu) and FLOP line from parcae.md §11).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fitting/fitting.h"

namespace parcae::fitting::testing {

// One row of chinchilla_epoch_svg_extracted.csv: N = "Model Size", C = "Training FLOP", L = "loss".
struct ChinchillaRow {
  double params = 0.0;
  double flops = 0.0;
  double loss = 0.0;
};

inline constexpr const char* kChinchillaSha256 =
    "193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30";

std::string chinchilla_csv_path();
std::string read_file(const std::string& path);
std::string sha256_hex(const std::string& bytes);

// Every data row of the file (245), in file order.
std::vector<ChinchillaRow> read_chinchilla_rows();

// Rows as law input with D = C / (6N) (§7 "Tokens"); keep_all false applies the §7 filter (loss
// strictly below the 5th-largest loss, 240 rows).
ChinchillaData chinchilla_data(const std::vector<ChinchillaRow>& rows, bool keep_all);

// parcae.md §11, Parcae-140M: F(mu, mu_bwd) = c0 + c1 mu + c2 mu_bwd.
inline double parcae140m_flops(double mu, double mu_bwd) {
  return 705487104.0 + 40900992.0 * mu + 81801984.0 * mu_bwd;
}
// N(mu) of §4.1 for 140M and 370M.
inline const EffectiveParameters kParcae140mParams{104998272.0, 14159040.0};
inline const EffectiveParameters kParcae370mParams{304108544.0, 50340352.0};

// [P]'s 140M training law (scaling-laws.md §4.1, §9): E 2.662, A 522733.307, a 0.771,
// B 25420.102, b 0.525.
inline TrainingLawParameters paper140m_law() {
  return TrainingLawParameters::from_coefficients(522733.307, 25420.102, 2.662, 0.771, 0.525);
}

// The S2 design of §8: mu in {2, ..., 12} x C in {1, 2, 4, 8, 16, 64}e18,
// D = floor(C / F(mu, ceil(mu / 2))). 36 runs, C varying slowest.
struct DesignRun {
  double mean_recurrence = 0.0;
  double budget_flops = 0.0;
  double tokens = 0.0;
};
std::vector<DesignRun> parcae140m_design();

}  // namespace parcae::fitting::testing
