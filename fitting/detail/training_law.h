// Shared machinery of the training-law fits (Chinchilla §3, Parcae §4.1) that the bootstrap
// reuses: rows in log space, the multi-start, and the coefficient lists computed from a parameter
// vector, so that a replicate reports exactly the quantities of the full-sample fit.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "fitting/detail/minimize.h"
#include "fitting/detail/objectives.h"
#include "fitting/fitting.h"

namespace parcae::fitting::detail {

inline std::vector<double> to_vector(const TrainingLawParameters& theta) {
  return {theta.log_A, theta.log_B, theta.log_E, theta.alpha, theta.beta};
}
inline TrainingLawParameters to_parameters(const std::vector<double>& x) {
  return {x[0], x[1], x[2], x[3], x[4]};
}

// Validated rows: ln N (or ln N(mu)), ln D, ln L.
TrainingLawRows chinchilla_rows(const ChinchillaData& data);
TrainingLawRows parcae_rows(const ParcaeData& data, const EffectiveParameters& params_of_mu);

void validate_parcae_options(const ParcaeLawOptions& options);

// An E below this share of the smallest fitted loss counts as "E about 0" (DECISION): an
// irreducible loss of 0.1% of what the runs reach is a floor the data never saw.
inline constexpr double kIrreducibleShare = 1e-3;

// Sets status unphysical, with a message naming each problem, when an ok fit has an exponent
// that is not positive, E <= kIrreducibleShare * smallest_loss, or a coefficient that is not
// finite (derived ones included: G, predictions). A fit that is not ok is left as it is.
void check_physical_range(Fit& fit,
                          const std::vector<std::pair<std::string, double>>& exponents,
                          double irreducible,
                          double smallest_loss);

// The starts of fit_parcae_law in order: grid, random, extra.
std::vector<std::vector<double>> parcae_starts(const ParcaeLawOptions& options);

// Coefficient lists with values only (documented on ChinchillaFit and ParcaeLawFit).
std::vector<Coefficient> chinchilla_coefficients(const TrainingLawParameters& theta,
                                                 const ChinchillaOptions& options);
std::vector<Coefficient> parcae_coefficients(const TrainingLawParameters& theta,
                                             const EffectiveParameters& params_of_mu,
                                             const ParcaeLawOptions& options,
                                             Frontier* frontier);

}  // namespace parcae::fitting::detail
