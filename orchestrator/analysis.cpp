// Sweep rows to fitting inputs; fit results to JSON and tables.
#include "orchestrator/analysis.h"

#include <cmath>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/suggest.h"

namespace parcae::orchestrator {
namespace {

nlohmann::ordered_json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
}

// Shortest text that reads back as the same double.
std::string exact_text(double value) {
  return nlohmann::json(value).dump();
}

std::vector<std::string> run_row(const RunResult& run) {
  return {run.job_id,
          run.cell,
          run.budget_id,
          run.budget_flops > 0 ? exact_text(run.budget_flops) : "",
          std::to_string(run.mean_recurrence),
          run.fixed_depth ? "1" : "0",
          exact_text(run.realised_tokens),
          exact_text(run.params),
          exact_text(run.params_noncore),
          exact_text(run.params_core),
          exact_text(run.params_noncore + run.mean_recurrence * run.params_core),
          exact_text(run.loss)};
}

const std::vector<std::string> kRunColumns = {"job_id",
                                              "cell",
                                              "budget_id",
                                              "budget_flops",
                                              "mean_recurrence",
                                              "fixed_depth",
                                              "tokens",
                                              "params",
                                              "params_noncore",
                                              "params_core",
                                              "params_effective",
                                              "loss"};

std::string shape_key(const sweeps::ModelConfig& model) {
  sweeps::ModelConfig shape = model;
  shape.mean_recurrence = shape.mean_backward = 1;
  shape.depth_sampler = sweeps::DepthSampler::kPoisson;
  shape.name = "";
  return sweeps::to_json(shape).dump();
}

}  // namespace

SweepRuns collect_runs(const results::Store& store, const std::string& sweep) {
  if (!store.find_sweep(sweep)) {
    std::vector<std::string> names;
    for (const auto& s : store.sweeps())
      names.push_back(s.name);
    throw InputError(
        store.path(),
        "sweep",
        "'" + sweep + "'",
        "no such sweep in the database",
        names.empty() ? "the database holds no sweeps" : sweeps::suggestion_hint(sweep, names));
  }
  SweepRuns out;
  for (const auto& job : store.jobs(sweep)) {
    if (job.state != results::JobState::kDone || !job.loss_val || !std::isfinite(*job.loss_val)) {
      out.not_used.push_back(job.cell + ": " + results::to_string(job.state));
      continue;
    }
    const sweeps::JobConfig config =
        sweeps::job_config_from_json(job.config, job.out_dir + "/job.json");
    RunResult run;
    run.job_id = job.id;
    run.cell = job.cell;
    run.budget_id = job.budget_id.value_or("");
    run.budget_flops = job.budget_flops.value_or(0.0);
    run.mean_recurrence = job.mean_recurrence;
    run.fixed_depth = job.fixed_depth;
    run.realised_tokens = static_cast<double>(config.max_steps() * config.training.batch_tokens);
    run.loss = *job.loss_val;
    run.model = config.model;
    const sweeps::ParameterCounts counts = sweeps::count_parameters(config.model);
    run.params = static_cast<double>(counts.total);
    run.params_noncore = static_cast<double>(counts.noncore);
    run.params_core = static_cast<double>(counts.per_loop);
    int64_t last_step = -1;
    for (const auto& e : store.evaluations(job.id))
      last_step = std::max(last_step, e.step);
    for (const auto& e : store.evaluations(job.id)) {
      if (e.step == last_step && e.loss)
        run.loss_at_depth[e.depth] = *e.loss;
    }
    out.runs.push_back(run);
  }
  return out;
}

fitting::IsoflopFit fit_sweep_isoflop(const SweepRuns& runs, fitting::IsoflopOptions options) {
  std::vector<fitting::IsoflopRun> points;
  std::set<std::string> shapes;
  const RunResult* first = nullptr;
  for (const auto& run : runs.runs) {
    if (run.fixed_depth || run.budget_id.empty())
      continue;
    if (!run.model.is_looped())
      continue;
    shapes.insert(shape_key(run.model));
    first = first ? first : &run;
    points.push_back({run.budget_id,
                      run.budget_flops,
                      static_cast<double>(run.mean_recurrence),
                      run.loss,
                      run.realised_tokens});
  }
  if (points.empty()) {
    throw InputError("",
                     "sweep",
                     "(runs)",
                     "no finished looped runs with a FLOP budget to fit",
                     "isoflop over mu_rec needs an isoFLOP sweep of a looped model");
  }
  if (shapes.size() > 1) {
    throw InputError("",
                     "sweep",
                     std::to_string(shapes.size()) + " model shapes",
                     "expected one model shape for an isoFLOP fit over mu_rec");
  }
  const sweeps::ModelConfig model = first->model;
  options.flops_per_token = [model](double mu) {
    return sweeps::train_flops_per_token_at(model, mu, mu / 2.0);
  };
  return fitting::fit_isoflop(points, options);
}

TestTimeFits fit_sweep_satexp(const SweepRuns& runs, const fitting::SatExpOptions& options) {
  TestTimeFits out;
  for (const auto& run : runs.runs) {
    if (run.loss_at_depth.size() < 4)
      continue;
    std::vector<double> depth, loss;
    for (const auto& [t, l] : run.loss_at_depth) {
      depth.push_back(t);
      loss.push_back(l);
    }
    fitting::SatExpOptions run_options = options;
    run_options.mean_recurrence = run.mean_recurrence;
    out.runs.push_back(&run);
    out.fits.push_back(fitting::fit_satexp(depth, loss, run_options));
  }
  return out;
}

fitting::ParcaeData parcae_data(const SweepRuns& runs, fitting::EffectiveParameters* params_of_mu) {
  fitting::ParcaeData data;
  std::set<std::string> shapes;
  for (const auto& run : runs.runs) {
    if (run.fixed_depth || !run.model.is_looped())
      continue;
    shapes.insert(shape_key(run.model));
    params_of_mu->noncore = run.params_noncore;
    params_of_mu->core = run.params_core;
    data.mean_recurrence.push_back(run.mean_recurrence);
    data.tokens.push_back(run.realised_tokens);
    data.loss.push_back(run.loss);
  }
  if (shapes.size() > 1) {
    throw InputError("",
                     "sweep",
                     std::to_string(shapes.size()) + " model shapes",
                     "expected one model shape: the training law has one N(mu)");
  }
  return data;
}

fitting::UnifiedData unified_data(const SweepRuns& runs,
                                  fitting::EffectiveParameters* params_of_mu) {
  fitting::UnifiedData data;
  std::set<std::string> shapes;
  int run_index = 0;
  for (const auto& run : runs.runs) {
    if (run.fixed_depth || !run.model.is_looped() || run.loss_at_depth.empty())
      continue;
    shapes.insert(shape_key(run.model));
    params_of_mu->noncore = run.params_noncore;
    params_of_mu->core = run.params_core;
    for (const auto& [depth, loss] : run.loss_at_depth) {
      data.mean_recurrence.push_back(run.mean_recurrence);
      data.tokens.push_back(run.realised_tokens);
      data.test_time.push_back(depth);
      data.loss.push_back(loss);
      data.run.push_back(run_index);
    }
    ++run_index;
  }
  if (shapes.size() > 1) {
    throw InputError("",
                     "sweep",
                     std::to_string(shapes.size()) + " model shapes",
                     "expected one model shape: the unified law has one N(mu)",
                     "fit each model size separately (scaling-laws.md §4.2)");
  }
  return data;
}

CsvTable runs_table(const SweepRuns& runs, const std::string& sweep) {
  CsvTable table;
  table.file = "sweep " + sweep;
  table.header = kRunColumns;
  for (const auto& run : runs.runs)
    table.rows.push_back(run_row(run));
  return table;
}

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

std::string coefficient_table(const fitting::Fit& fit) {
  std::ostringstream out;
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

}  // namespace parcae::orchestrator
