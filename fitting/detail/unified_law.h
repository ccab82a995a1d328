// Shared machinery of the unified law (§4.2) that the bootstrap reuses: validated rows, the run
// of each point, the structured starts and the coefficient list computed from a parameter vector.
#pragma once

#include <vector>

#include "fitting/detail/objectives.h"
#include "fitting/fitting.h"

namespace parcae::fitting::detail {

// (ln X, ln Y, e, x, y, zeta, omega[, gamma]) as the objective's vector.
std::vector<double> to_vector(const UnifiedLawParameters& theta, UnifiedVariant variant);
UnifiedLawParameters to_unified_parameters(const std::vector<double>& x, UnifiedVariant variant);

UnifiedRows unified_rows(const UnifiedData& data, const EffectiveParameters& params_of_mu);

// A run index per point, numbered from 0: data.run renumbered, or one run per distinct (mu, D).
std::vector<int> unified_runs(const UnifiedData& data, int* run_count);

void validate_unified_options(const UnifiedOptions& options);

// The training-law optimum with zeta in {-3, ..., 1} x z in {0.5, ..., 16} (x gamma in
// {0, 0.5, 1, 1.5, 2} when learned), as full vectors.
std::vector<std::vector<double>> unified_structured_starts(const TrainingLawParameters& floor,
                                                           UnifiedVariant variant);

// Indices of the free parameters: all, or (zeta, omega[, gamma]) with the floor fixed.
std::vector<int> unified_free_indices(UnifiedVariant variant, bool floor_fixed);

std::vector<Coefficient> unified_coefficients(const UnifiedLawParameters& theta,
                                              const EffectiveParameters& params_of_mu,
                                              const UnifiedOptions& options);

}  // namespace parcae::fitting::detail
