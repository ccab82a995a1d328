// What every fit shares (§1): the error type, status names, coefficient lookup, the one-line and
// full reports, the usability rule of §6, and the held-out relative error.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "fitting/detail/checks.h"
#include "fitting/detail/numerics.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace {

std::string format_value(double value) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.10g", value);
  return buffer;
}

std::string format_cell(double value) {
  if (std::isnan(value)) {
    return "-";
  }
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

}  // namespace

InputError::InputError(std::string input, std::string problem)
    : std::invalid_argument(input + ": " + problem), input_(std::move(input)) {}

InputError::InputError(std::string input, double value, std::string expected)
    : std::invalid_argument(input + " = " + format_value(value) + ": " + expected),
      input_(std::move(input)) {}

const char* to_string(FitStatus status) {
  switch (status) {
    case FitStatus::kOk:
      return "ok";
    case FitStatus::kNoMinimum:
      return "no_minimum";
    case FitStatus::kExtrapolated:
      return "extrapolated";
    case FitStatus::kFlat:
      return "flat";
    case FitStatus::kUnphysical:
      return "unphysical";
    case FitStatus::kFailed:
      break;
  }
  return "failed";
}

const char* to_string(ResidualScale scale) {
  return scale == ResidualScale::kLinear ? "linear" : "log";
}

const char* to_string(Penalty penalty) {
  return penalty == Penalty::kSquares ? "l2" : "huber";
}

const Coefficient& Fit::coefficient(std::string_view name) const {
  for (const Coefficient& c : coefficients) {
    if (c.name == name) {
      return c;
    }
  }
  std::string known;
  for (const Coefficient& c : coefficients) {
    known += (known.empty() ? "" : ", ") + c.name;
  }
  throw InputError(std::string(name),
                   "no such coefficient in a " + law + " fit; it has " +
                       (known.empty() ? std::string("none") : known));
}

std::string Fit::summary() const {
  std::string line = law + ": " + to_string(status) + ", n = " + std::to_string(n);
  if (!std::isnan(objective)) {
    char buffer[96];
    std::snprintf(buffer, sizeof buffer, ", J = %.8g (J/n = %.4g)", objective, objective_per_point);
    line += buffer;
  }
  if (starts > 1) {
    line += ", " + std::to_string(successes) + " of " + std::to_string(starts) + " starts ok";
  }
  std::string values;
  for (const Coefficient& c : coefficients) {
    if (c.name.find('(') != std::string::npos) {
      continue;  // predictions belong to the full report
    }
    values += (values.empty() ? "" : ", ") + c.name + " = " + format_cell(c.value);
  }
  if (!values.empty()) {
    line += "; " + values;
  }
  if (!message.empty()) {
    line += " (" + message + ")";
  }
  return line;
}

std::string Fit::report() const {
  std::string text = summary() + "\n";
  char buffer[256];
  const bool has_ci = std::any_of(coefficients.begin(), coefficients.end(), [](const auto& c) {
    return !std::isnan(c.ci_low);
  });
  std::string ci_header = "ci";
  if (has_ci && !std::isnan(ci_level)) {
    std::snprintf(buffer, sizeof buffer, "%g%% ci", 100.0 * ci_level);
    ci_header = buffer;
  }
  std::snprintf(buffer,
                sizeof buffer,
                "  %-22s %14s %14s   %s\n",
                "coefficient",
                "value",
                "se",
                ci_header.c_str());
  text += buffer;
  for (const Coefficient& c : coefficients) {
    const std::string ci = std::isnan(c.ci_low)
                               ? "-"
                               : "[" + format_cell(c.ci_low) + ", " + format_cell(c.ci_high) + "]";
    std::snprintf(buffer,
                  sizeof buffer,
                  "  %-22s %14s %14s   %s\n",
                  c.name.c_str(),
                  format_cell(c.value).c_str(),
                  format_cell(c.se).c_str(),
                  ci.c_str());
    text += buffer;
  }
  if (bootstrap_replicates > 0) {
    text += "  bootstrap: " + std::to_string(bootstrap_replicates) + " replicates, " +
            std::to_string(bootstrap_failed) + " failed or discarded\n";
  }
  if (!std::isnan(heldout_error_percent)) {
    std::snprintf(buffer, sizeof buffer, "  held-out error: %.4g%%\n", heldout_error_percent);
    text += buffer;
  } else if (requires_validation) {
    text += "  held-out error: not reported\n";
  }
  for (const std::string& warning : warnings) {
    text += "  warning: " + warning + "\n";
  }
  const std::vector<std::string> problems = usability_problems();
  text += std::string("  usable: ") + (problems.empty() ? "yes" : "no") + "\n";
  for (const std::string& problem : problems) {
    text += "    " + problem + "\n";
  }
  return text;
}

std::vector<std::string> Fit::usability_problems() const {
  std::vector<std::string> problems;
  if (status != FitStatus::kOk) {
    problems.push_back(std::string("status ") + to_string(status) +
                       (message.empty() ? "" : ": " + message));
  }
  if (coefficients.empty() && status == FitStatus::kOk) {
    problems.push_back("no coefficients");
  }
  std::string not_finite;
  for (const Coefficient& c : coefficients) {
    if (!std::isfinite(c.value)) {
      not_finite += (not_finite.empty() ? "" : ", ") + c.name;
    }
  }
  if (!not_finite.empty() && status != FitStatus::kFailed && status != FitStatus::kUnphysical) {
    problems.push_back("not finite: " + not_finite);
  }
  if (bootstrap_replicates > 0 && bootstrap_failed > 0.05 * bootstrap_replicates) {
    problems.push_back(std::to_string(bootstrap_failed) + " of " +
                       std::to_string(bootstrap_replicates) +
                       " bootstrap replicates failed, more than 5%");
  }
  if (requires_validation && bootstrap_replicates == 0) {
    problems.push_back("no bootstrap over runs (a parametric law needs its intervals, §6)");
  }
  if (requires_validation && !std::isfinite(heldout_error_percent)) {
    problems.push_back("no held-out error on record (§6)");
  }
  return problems;
}

double heldout_relative_error_percent(const std::vector<double>& predicted,
                                      const std::vector<double>& measured) {
  detail::check_same_size("predicted", predicted.size(), "measured", measured.size());
  if (measured.empty()) {
    throw InputError("measured", "is empty; expected at least one held-out point");
  }
  detail::check_positive(measured, "measured", "loss");
  double sum = 0.0;
  for (std::size_t i = 0; i < measured.size(); ++i) {
    if (!std::isfinite(predicted[i])) {
      throw InputError(
          "predicted[" + std::to_string(i) + "]", predicted[i], "expected a finite prediction");
    }
    sum += std::abs(predicted[i] - measured[i]) / measured[i];
  }
  return 100.0 * sum / static_cast<double>(measured.size());
}

double huber(double residual, double delta) {
  return detail::huber_value(residual, delta);
}

}  // namespace parcae::fitting
