// Input checks shared by the laws. Each throws InputError naming the offending input and, for a
// vector, the index of the first bad entry ("loss[17] = -0.5: expected ...").
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fitting/fitting.h"

namespace parcae::fitting::detail {

inline void check_same_size(const std::string& name,
                            std::size_t size,
                            const std::string& reference_name,
                            std::size_t reference_size) {
  if (size != reference_size) {
    throw InputError(name,
                     "has " + std::to_string(size) + " entries but " + reference_name + " has " +
                         std::to_string(reference_size) + "; expected one entry per point");
  }
}

// Every entry finite and > 0; `what` completes "expected a positive, finite ...".
inline void check_positive(const std::vector<double>& values,
                           const std::string& name,
                           const std::string& what) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!(values[i] > 0.0) || !std::isfinite(values[i])) {
      throw InputError(
          name + "[" + std::to_string(i) + "]", values[i], "expected a positive, finite " + what);
    }
  }
}

// Every entry finite and >= minimum.
inline void check_at_least(const std::vector<double>& values,
                           double minimum,
                           const std::string& name,
                           const std::string& what) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!(values[i] >= minimum) || !std::isfinite(values[i])) {
      throw InputError(name + "[" + std::to_string(i) + "]", values[i], "expected " + what);
    }
  }
}

inline void check_ci_level(double level, const std::string& name) {
  if (!(level > 0.0 && level < 1.0)) {
    throw InputError(name, level, "expected a level in (0, 1), such as 0.95");
  }
}

}  // namespace parcae::fitting::detail
