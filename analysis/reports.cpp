// Fits as JSON documents, text tables and the records that `fit --save` stores.
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "analysis/analysis.h"

namespace parcae::analysis {
namespace {

nlohmann::ordered_json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
}

}  // namespace

nlohmann::ordered_json fit_to_json(const fitting::Fit& fit) {
  nlohmann::ordered_json coefficients = nlohmann::ordered_json::object();
  for (const auto& c : fit.coefficients) {
    const bool has_ci = std::isfinite(c.ci_low) && std::isfinite(c.ci_high);
    coefficients[c.name] = {{"value", number_or_null(c.value)},
                            {"se", number_or_null(c.se)},
                            {"ci",
                             has_ci ? nlohmann::ordered_json::array({c.ci_low, c.ci_high})
                                    : nlohmann::ordered_json(nullptr)}};
  }
  double sum_squares = 0.0;
  int finite = 0;
  for (double r : fit.residuals) {
    if (std::isfinite(r)) {
      sum_squares += r * r;
      ++finite;
    }
  }
  const double residual_std = finite > 0 ? std::sqrt(sum_squares / finite) : NAN;
  nlohmann::ordered_json j;
  j["law"] = fit.law;
  j["status"] = fitting::to_string(fit.status);
  j["message"] = fit.message;
  j["warnings"] = fit.warnings;
  j["n"] = fit.n;
  j["coefficients"] = coefficients;
  j["objective"] = number_or_null(fit.objective);
  j["objective_per_point"] = number_or_null(fit.objective_per_point);
  j["residual_std"] = number_or_null(residual_std);
  j["converged"] = fit.successes > 0 && fit.status != fitting::FitStatus::kFailed;
  j["starts"] = fit.starts;
  j["successes"] = fit.successes;
  j["ci_level"] = number_or_null(fit.ci_level);
  j["bootstrap_replicates"] = fit.bootstrap_replicates;
  j["bootstrap_failed"] = fit.bootstrap_failed;
  j["heldout_error_percent"] = number_or_null(fit.heldout_error_percent);
  j["usable"] = fit.is_usable();
  j["usability_problems"] = fit.usability_problems();
  return j;
}

nlohmann::ordered_json isoflop_to_json(const fitting::IsoflopFit& fit) {
  nlohmann::ordered_json j = fit_to_json(fit);
  nlohmann::ordered_json minima = nlohmann::ordered_json::array();
  for (const auto& b : fit.budgets) {
    nlohmann::ordered_json m;
    m["budget"] = b.budget_flops;
    m["budget_id"] = b.budget_id;
    m["status"] = fitting::to_string(b.status);
    m["message"] = b.message;
    m["edge"] = b.status == fitting::FitStatus::kExtrapolated;
    m["used"] = b.used;
    m["runs"] = b.runs;
    m["x_star"] = number_or_null(b.x_star);
    m["x_star_low"] = number_or_null(b.x_star_low);
    m["x_star_high"] = number_or_null(b.x_star_high);
    m["loss_star"] = number_or_null(b.loss_star);
    m["tokens_star"] = number_or_null(b.tokens_star);
    m["c0"] = number_or_null(b.c0);
    m["c1"] = number_or_null(b.c1);
    m["c2"] = number_or_null(b.c2);
    m["x"] = b.x;
    m["loss"] = b.loss;
    m["tokens_check_flagged"] = b.tokens_check_flagged;
    minima.push_back(m);
  }
  j["minima"] = minima;
  nlohmann::ordered_json predictions = nlohmann::ordered_json::array();
  for (const auto& p : fit.predictions) {
    predictions.push_back(
        {{"budget", p.budget_flops},
         {"x_star", number_or_null(p.x_star)},
         {"ci", {number_or_null(p.ci_low), number_or_null(p.ci_high)}},
         {"tokens_star", number_or_null(p.tokens_star)},
         {"tokens_ci", {number_or_null(p.tokens_ci_low), number_or_null(p.tokens_ci_high)}}});
  }
  j["predictions"] = predictions;
  j["laws"] = {{"x_star", fit_to_json(fit.x_star_law)},
               {"tokens_star", fit_to_json(fit.tokens_star_law)},
               {"loss_star", fit_to_json(fit.loss_star_law)}};
  return j;
}

std::string fit_text(const fitting::Fit& fit) {
  std::ostringstream out;
  out << fit.summary() << "\n";
  const std::string level =
      std::isfinite(fit.ci_level) ? fmt::format("{:g}% CI", 100 * fit.ci_level) : "CI";
  out << fmt::format("  {:<12}{:>14}{:>12}   {}\n", "coefficient", "value", "SE", level);
  for (const auto& c : fit.coefficients) {
    const std::string ci = std::isfinite(c.ci_low) && std::isfinite(c.ci_high)
                               ? fmt::format("[{:.4g}, {:.4g}]", c.ci_low, c.ci_high)
                               : "-";
    const std::string se = std::isfinite(c.se) ? fmt::format("{:.3g}", c.se) : "-";
    out << fmt::format("  {:<12}{:>14.6g}{:>12}   {}\n", c.name, c.value, se, ci);
  }
  for (const auto& w : fit.warnings)
    out << "warning: " << w << "\n";
  const auto problems = fit.usability_problems();
  out << "usable: " << (problems.empty() ? "yes" : "no") << "\n";
  for (const auto& p : problems)
    out << "  - " << p << "\n";
  return out.str();
}

results::FitRecord fit_record(const fitting::Fit& fit,
                              const std::string& sweep,
                              const std::vector<std::string>& job_ids,
                              const nlohmann::ordered_json& details) {
  results::FitRecord record;
  record.law = fit.law;
  if (!sweep.empty())
    record.sweep = sweep;
  for (const auto& c : fit.coefficients) {
    record.coefficients[c.name] = number_or_null(c.value);
    record.intervals[c.name] = {{"se", number_or_null(c.se)},
                                {"ci_low", number_or_null(c.ci_low)},
                                {"ci_high", number_or_null(c.ci_high)},
                                {"level", number_or_null(fit.ci_level)}};
  }
  record.job_ids = job_ids;
  record.details = nlohmann::json(details);
  record.details["status"] = fitting::to_string(fit.status);
  return record;
}

}  // namespace parcae::analysis
