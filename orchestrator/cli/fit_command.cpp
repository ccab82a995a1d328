// `parcae-scale fit LAW (--sweep NAME | --csv FILE)`: scaling laws with intervals, from a sweep in
// the database or from any CSV. The arithmetic is in fitting/; the sweep-to-input rules are in
// orchestrator/analysis.h; this file maps flags and prints. A sweep offers its runs as a table with
// the columns of analysis.h's runs_table(), so the column flags of a CSV work on a sweep too.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fitting/fitting.h"
#include "orchestrator/analysis.h"
#include "orchestrator/cli/cli_context.h"
#include "orchestrator/csv_table.h"
#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

using orchestrator::NumericColumnSpec;
using Json = nlohmann::ordered_json;

struct FitOptions {
  std::string law;
  std::string sweep;
  std::string csv;
  int bootstrap = -1;  // -1: the law's default
  double ci = 0.95;
  uint64_t seed = 42;
  bool save = false;
  bool skip_bad_rows = false;
  std::string x_col, y_col, weight_col, budget_col, loss_col, params_col, tokens_col, flops_col,
      mu_col, test_time_col, run_col;
  bool x_is_tokens = false;
  double params_noncore = 0, params_core = 0;
  std::vector<double> predict_budgets;
  int drop_top_losses = 0;
  std::string variant = "gamma-one";
  bool floor_fixed = false;
};

void require(bool ok, const std::string& flag, const std::string& why) {
  if (!ok)
    throw InputError("", flag, "(missing)", why);
}

// The rows a law reads: a CSV file, or a sweep's runs (or evaluations) as a table.
struct Source {
  orchestrator::CsvTable table;
  const orchestrator::SweepRuns* runs = nullptr;  // set for a sweep; rows follow runs->runs
};

orchestrator::NumericColumns read_columns(const FitOptions& o,
                                          const Source& source,
                                          const std::vector<NumericColumnSpec>& specs) {
  auto columns = orchestrator::read_numeric_columns(source.table, specs, o.skip_bad_rows);
  for (const auto& skipped : columns.skipped)
    std::cerr << "fit: skipped " << source.table.file << ": " << skipped << "\n";
  if (!columns.skipped.empty()) {
    std::cerr << "fit: skipped " << columns.skipped.size() << " of " << source.table.rows.size()
              << " rows of " << source.table.file << "\n";
  }
  return columns;
}

// The ids of the jobs behind the rows kept from a sweep's runs table.
std::vector<std::string> jobs_of_rows(const Source& source,
                                      const orchestrator::NumericColumns& columns) {
  std::vector<std::string> ids;
  if (source.runs == nullptr)
    return ids;
  const size_t id_column = source.table.column("job_id");
  for (size_t row : columns.rows)
    ids.push_back(source.table.rows[row - 1][id_column]);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// The --bootstrap, --seed and --ci flags as the parametric laws' bootstrap settings.
fitting::BootstrapOptions bootstrap_options(const FitOptions& o) {
  fitting::BootstrapOptions bootstrap;
  bootstrap.resamples = o.bootstrap;
  bootstrap.seed = o.seed;
  bootstrap.ci_level = o.ci;
  return bootstrap;
}

void print_fit(const fitting::Fit& fit) {
  std::cout << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
  if (!fit.message.empty())
    std::cout << fit.message << "\n";
  for (const auto& w : fit.warnings)
    std::cout << "warning: " << w << "\n";
}

void print_isoflop(const fitting::IsoflopFit& fit) {
  std::cout << fmt::format("{:<10}{:>12}{:>4}  {:<13}{:>9}{:>22}{:>10}{:>14}\n",
                           "budget",
                           "C",
                           "n",
                           "status",
                           "x*",
                           "1-sigma band",
                           "L*",
                           "D*");
  for (const auto& b : fit.budgets) {
    std::cout << fmt::format("{:<10}{:>12.4g}{:>4}  {:<13}{:>9.4g}{:>22}{:>10.5g}{:>14.4g}{}\n",
                             b.budget_id,
                             b.budget_flops,
                             b.runs,
                             fitting::to_string(b.status),
                             b.x_star,
                             std::isfinite(b.x_star_low)
                                 ? fmt::format("[{:.3g}, {:.3g}]", b.x_star_low, b.x_star_high)
                                 : std::string("-"),
                             b.loss_star,
                             b.tokens_star,
                             b.used ? "" : "  (not in the power law)");
  }
  std::cout << "\n";
  print_fit(fit);
}

fitting::UnifiedVariant unified_variant(const std::string& name) {
  if (name == "learned-gamma")
    return fitting::UnifiedVariant::kLearnedGamma;
  if (name == "no-mu")
    return fitting::UnifiedVariant::kNoMu;
  return fitting::UnifiedVariant::kGammaOne;
}

// What one law produced: the JSON document, the records a --save stores, and whether every fit
// has a status that the exit code calls success.
struct LawOutput {
  Json json;
  std::vector<results::FitRecord> records;
  bool ok = true;
};

LawOutput fit_isoflop(const FitOptions& o, const Source& source, bool human) {
  fitting::IsoflopOptions options;
  options.bootstrap_resamples = o.bootstrap < 0 ? 2000 : o.bootstrap;
  options.seed = o.seed;
  options.ci_level = o.ci;
  options.prediction_budgets = o.predict_budgets;
  fitting::IsoflopFit fit;
  std::vector<std::string> job_ids;
  if (source.runs != nullptr && o.x_col.empty()) {
    fit = orchestrator::fit_sweep_isoflop(*source.runs, options);
    for (const auto& run : source.runs->runs) {
      if (!run.fixed_depth && !run.budget_id.empty())
        job_ids.push_back(run.job_id);
    }
  } else {
    require(!o.x_col.empty() && !o.loss_col.empty() &&
                (!o.budget_col.empty() || source.runs != nullptr),
            "--budget-col/--x-col/--loss-col",
            "isoflop from a CSV needs the budget, x and loss columns");
    const std::string budget_col = o.budget_col.empty() ? "budget_flops" : o.budget_col;
    const auto columns = read_columns(
        o,
        source,
        {{budget_col, true}, {o.x_col, true}, {o.loss_col, true}, {o.tokens_col, true, true}});
    const size_t budget_index = source.table.column(budget_col);
    std::vector<fitting::IsoflopRun> points;
    for (size_t i = 0; i < columns.rows.size(); ++i) {
      // Budgets are grouped by the column's text, so "1e18" and "1.0e18" are two budgets.
      const std::string id = source.table.rows[columns.rows[i] - 1][budget_index];
      points.push_back({id,
                        columns.values[0][i],
                        columns.values[1][i],
                        columns.values[2][i],
                        o.tokens_col.empty() ? fitting::kNotComputed : columns.values[3][i]});
    }
    options.x_is_tokens = o.x_is_tokens;
    fit = fitting::fit_isoflop(points, options);
    job_ids = jobs_of_rows(source, columns);
  }
  LawOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = orchestrator::isoflop_to_json(fit);
  out.records.push_back(orchestrator::fit_record(fit, o.sweep, job_ids, out.json));
  if (human)
    print_isoflop(fit);
  return out;
}

LawOutput fit_power(const FitOptions& o, const Source& source, bool human) {
  require(!o.x_col.empty() && !o.y_col.empty(),
          "--x-col/--y-col",
          source.runs != nullptr ? "power needs the x and y columns of the sweep's runs table "
                                   "(budget_flops, mean_recurrence, tokens, params, "
                                   "params_effective, loss, ...)"
                                 : "power needs the x and y columns");
  const auto columns =
      read_columns(o, source, {{o.x_col, true}, {o.y_col, true}, {o.weight_col, true, true}});
  fitting::PowerLawFit fit =
      fitting::fit_power_law(columns.values[0], columns.values[1], columns.values[2]);
  if (o.bootstrap > 0) {
    fit = fitting::bootstrap_power_law(
        columns.values[0], columns.values[1], columns.values[2], fit, bootstrap_options(o));
  }
  LawOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = orchestrator::fit_to_json(fit);
  out.json["r_squared"] = fit.r_squared;
  out.records.push_back(
      orchestrator::fit_record(fit, o.sweep, jobs_of_rows(source, columns), out.json));
  if (human)
    print_fit(fit);
  return out;
}

LawOutput fit_satexp(const FitOptions& o, const Source& source, bool human) {
  fitting::SatExpOptions options;
  LawOutput out;
  if (source.runs != nullptr && o.x_col.empty()) {
    const auto fits = orchestrator::fit_sweep_satexp(*source.runs, options);
    out.json = {{"law", "satexp"}, {"fits", Json::array()}};
    if (human) {
      std::cout << fmt::format("{:<28}{:>5}  {:<8}{:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {}\n",
                               "cell",
                               "mu",
                               "status",
                               "L_inf",
                               "Z",
                               "z",
                               "T_1/2",
                               "floor gap",
                               "Huber mean",
                               o.bootstrap > 0 ? fmt::format("z {:g}% CI", 100 * o.ci) : "");
    }
    for (size_t i = 0; i < fits.fits.size(); ++i) {
      fitting::SatExpFit fit = fits.fits[i];
      const auto& run = *fits.runs[i];
      if (o.bootstrap > 0 && fit.status == fitting::FitStatus::kOk) {
        std::vector<double> depth, loss;
        for (const auto& [t, l] : run.loss_at_depth) {
          depth.push_back(t);
          loss.push_back(l);
        }
        fitting::SatExpOptions run_options = options;
        run_options.mean_recurrence = run.mean_recurrence;
        fit = fitting::bootstrap_satexp(depth, loss, fit, run_options, bootstrap_options(o));
      }
      Json j = orchestrator::fit_to_json(fit);
      j["job_id"] = run.job_id;
      j["cell"] = run.cell;
      j["mean_recurrence"] = run.mean_recurrence;
      j["floor_gap"] = std::isfinite(fit.floor_gap) ? Json(fit.floor_gap) : Json(nullptr);
      j["huber_mean"] = fit.huber_mean;
      out.json["fits"].push_back(j);
      out.records.push_back(orchestrator::fit_record(fit, o.sweep, {run.job_id}, j));
      out.ok = out.ok && fit.status != fitting::FitStatus::kFailed;
      if (human) {
        std::cout << fmt::format(
            "{:<28}{:>5}  {:<8}{:>10.5f} {:>10.3e} {:>10.3e} {:>10.3e} {:>9.3f}% {:>10.3e}  {}\n",
            run.cell,
            run.mean_recurrence,
            fmt::format("{}{}", fitting::to_string(fit.status), fit.warnings.empty() ? "" : "*"),
            fit.l_inf,
            fit.amplitude,
            fit.rate,
            fit.half_life,
            100 * fit.floor_gap,
            fit.huber_mean,
            std::isfinite(fit.coefficient("z").ci_low)
                ? fmt::format(
                      "[{:.3e}, {:.3e}]", fit.coefficient("z").ci_low, fit.coefficient("z").ci_high)
                : "");
      }
    }
    const auto warned = std::count_if(
        fits.fits.begin(), fits.fits.end(), [](const auto& fit) { return !fit.warnings.empty(); });
    if (human && warned > 0) {
      std::cout << fmt::format(
          "* {} of {} fits have a warning (the \"warnings\" of --json): a decay that is over by "
          "the second sampled T leaves Z and z not separately identified\n",
          warned,
          fits.fits.size());
    }
    return out;
  }
  require(!o.x_col.empty() && !o.y_col.empty(),
          "--x-col/--y-col",
          "satexp needs the T and loss columns");
  const auto columns = read_columns(o, source, {{o.x_col, true}, {o.y_col, true}});
  fitting::SatExpFit fit = fitting::fit_satexp(columns.values[0], columns.values[1], options);
  if (o.bootstrap > 0 && fit.status == fitting::FitStatus::kOk) {
    fit = fitting::bootstrap_satexp(
        columns.values[0], columns.values[1], fit, options, bootstrap_options(o));
  }
  out.ok = fit.status != fitting::FitStatus::kFailed;
  out.json = orchestrator::fit_to_json(fit);
  out.json["half_life"] = std::isfinite(fit.half_life) ? Json(fit.half_life) : Json(nullptr);
  out.json["huber_mean"] = fit.huber_mean;
  out.records.push_back(
      orchestrator::fit_record(fit, o.sweep, jobs_of_rows(source, columns), out.json));
  if (human)
    print_fit(fit);
  return out;
}

// Epoch's filter (scaling-laws.md §7): keep rows whose loss is strictly below the K-th largest
// loss, which drops the K highest-loss runs.
fitting::ChinchillaData drop_top_losses(const fitting::ChinchillaData& data, int count) {
  std::vector<double> sorted = data.loss;
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  const size_t k = std::min(static_cast<size_t>(count), sorted.size());
  const double threshold = sorted[k - 1];
  fitting::ChinchillaData kept;
  for (size_t i = 0; i < data.loss.size(); ++i) {
    if (data.loss[i] >= threshold)
      continue;
    kept.params.push_back(data.params[i]);
    kept.tokens.push_back(data.tokens[i]);
    kept.loss.push_back(data.loss[i]);
  }
  std::cerr << "fit: kept " << kept.loss.size() << " of " << data.loss.size()
            << " rows (loss below the " << k << "-th largest, " << threshold << ")\n";
  return kept;
}

LawOutput fit_chinchilla(const FitOptions& o, const Source& source, bool human) {
  // From a sweep: N(mu_rec) of each run (the total for a Transformer), its realised D, its loss.
  const bool sweep = source.runs != nullptr;
  const std::string params_col =
      !o.params_col.empty() ? o.params_col : (sweep ? "params_effective" : "");
  const std::string loss_col = !o.loss_col.empty() ? o.loss_col : (sweep ? "loss" : "");
  const std::string tokens_col =
      !o.tokens_col.empty() ? o.tokens_col : (sweep && o.flops_col.empty() ? "tokens" : "");
  require(!params_col.empty() && !loss_col.empty() && (tokens_col.empty() != o.flops_col.empty()),
          "--params-col/--tokens-col|--flops-col/--loss-col",
          "chinchilla needs N, one of D or C (then D = C / 6N), and the loss");
  const auto columns = read_columns(o,
                                    source,
                                    {{params_col, true},
                                     {tokens_col.empty() ? o.flops_col : tokens_col, true},
                                     {loss_col, true}});
  fitting::ChinchillaData data;
  data.params = columns.values[0];
  data.loss = columns.values[2];
  for (size_t i = 0; i < data.params.size(); ++i) {
    data.tokens.push_back(tokens_col.empty() ? columns.values[1][i] / (6 * data.params[i])
                                             : columns.values[1][i]);
  }
  if (o.drop_top_losses > 0)
    data = drop_top_losses(data, o.drop_top_losses);
  fitting::ChinchillaOptions options;
  fitting::ChinchillaFit fit = fitting::fit_chinchilla(data, options);
  if (o.bootstrap > 0 && fit.status == fitting::FitStatus::kOk)
    fit = fitting::bootstrap_chinchilla(data, fit, options, bootstrap_options(o));
  LawOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = orchestrator::fit_to_json(fit);
  out.records.push_back(
      orchestrator::fit_record(fit, o.sweep, jobs_of_rows(source, columns), out.json));
  if (human)
    print_fit(fit);
  return out;
}

// N(mu) from the flags, for the Parcae laws from a CSV.
fitting::EffectiveParameters params_from_flags(const FitOptions& o) {
  require(o.params_noncore > 0 && o.params_core > 0,
          "--params-noncore/--params-core",
          "the Parcae laws from a CSV need N(mu) = N_noncore + mu N_core");
  return {o.params_noncore, o.params_core};
}

// The §4.1 training law, from a sweep's runs or from CSV rows of (mu, D, loss).
fitting::ParcaeLawFit fit_training_law(const FitOptions& o,
                                       const fitting::ParcaeData& data,
                                       const fitting::EffectiveParameters& params_of_mu) {
  fitting::ParcaeLawOptions options;
  options.seed = o.seed;
  return fitting::fit_parcae_law(data, params_of_mu, options);
}

std::vector<std::string> looped_job_ids(const orchestrator::SweepRuns& runs) {
  std::vector<std::string> ids;
  for (const auto& run : runs.runs) {
    if (!run.fixed_depth && run.model.is_looped())
      ids.push_back(run.job_id);
  }
  return ids;
}

// §6's largest-budget extrapolation for the training law (DECISION there: always reported): refit
// without the runs of the largest budget and predict them. Null when the data have no budgets,
// a single budget, or too few other runs to fit.
Json largest_budget_heldout(const fitting::ParcaeData& data,
                            const std::vector<double>& budgets,
                            const fitting::EffectiveParameters& params_of_mu,
                            const fitting::ParcaeLawOptions& options,
                            double* error_percent) {
  if (budgets.size() != data.loss.size() || budgets.empty())
    return nullptr;
  const double largest = *std::max_element(budgets.begin(), budgets.end());
  fitting::ParcaeData train;
  std::vector<size_t> held;
  for (size_t i = 0; i < budgets.size(); ++i) {
    if (budgets[i] == largest) {
      held.push_back(i);
      continue;
    }
    train.mean_recurrence.push_back(data.mean_recurrence[i]);
    train.tokens.push_back(data.tokens[i]);
    train.loss.push_back(data.loss[i]);
  }
  if (held.empty() || train.loss.size() < 6)
    return nullptr;
  const fitting::ParcaeLawFit fit = fitting::fit_parcae_law(train, params_of_mu, options);
  Json j = {{"protocol", "refit without the largest budget, predict its runs"},
            {"budget", largest},
            {"runs", held.size()},
            {"status", fitting::to_string(fit.status)}};
  if (fit.status != fitting::FitStatus::kOk) {
    j["error_percent"] = nullptr;
    return j;
  }
  std::vector<double> predicted, measured;
  for (size_t i : held) {
    predicted.push_back(fit.predict(data.mean_recurrence[i], data.tokens[i]));
    measured.push_back(data.loss[i]);
  }
  // A refit without the largest budget can extrapolate to nothing (an exponent driven to a
  // bound); that is a finding about the held-out check, not a reason to fail the fit itself.
  if (!std::all_of(predicted.begin(), predicted.end(), [](double p) { return std::isfinite(p); })) {
    j["status"] = "prediction_not_finite";
    j["error_percent"] = nullptr;
    return j;
  }
  *error_percent = fitting::heldout_relative_error_percent(predicted, measured);
  j["error_percent"] = *error_percent;
  return j;
}

LawOutput fit_parcae(const FitOptions& o, const Source& source, bool human) {
  fitting::EffectiveParameters params_of_mu;
  fitting::ParcaeData data;
  std::vector<double> budgets;  // C of each row, for the held-out check; empty when unknown
  std::vector<std::string> job_ids;
  if (source.runs != nullptr) {
    data = orchestrator::parcae_data(*source.runs, &params_of_mu);
    job_ids = looped_job_ids(*source.runs);
    // The rows of parcae_data(), in its order.
    for (const auto& run : source.runs->runs) {
      if (!run.fixed_depth && run.model.is_looped())
        budgets.push_back(run.budget_flops);
    }
  } else {
    require(!o.mu_col.empty() && !o.tokens_col.empty() && !o.loss_col.empty(),
            "--mu-col/--tokens-col/--loss-col",
            "parcae from a CSV needs mu, D and loss columns");
    params_of_mu = params_from_flags(o);
    const auto columns = read_columns(
        o,
        source,
        {{o.mu_col, true}, {o.tokens_col, true}, {o.loss_col, true}, {o.budget_col, true, true}});
    data.mean_recurrence = columns.values[0];
    data.tokens = columns.values[1];
    data.loss = columns.values[2];
    budgets = columns.values[3];
  }
  fitting::ParcaeLawOptions options;
  options.seed = o.seed;
  fitting::ParcaeLawFit fit = fitting::fit_parcae_law(data, params_of_mu, options);
  if (o.bootstrap > 0 && fit.status == fitting::FitStatus::kOk)
    fit = fitting::bootstrap_parcae_law(data, params_of_mu, fit, options, bootstrap_options(o));
  double error_percent = fitting::kNotComputed;
  const Json heldout =
      fit.status == fitting::FitStatus::kOk
          ? largest_budget_heldout(data, budgets, params_of_mu, options, &error_percent)
          : Json(nullptr);
  fit.heldout_error_percent = error_percent;
  LawOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = orchestrator::fit_to_json(fit);
  out.json["params_noncore"] = params_of_mu.noncore;
  out.json["params_core"] = params_of_mu.core;
  out.json["heldout"] = heldout;
  out.records.push_back(orchestrator::fit_record(fit, o.sweep, job_ids, out.json));
  if (human) {
    print_fit(fit);
    if (std::isfinite(error_percent)) {
      std::cout << fmt::format(
          "held out: the largest budget's runs, predicted by a refit "
          "without them: mean relative error {:.3f}%\n",
          error_percent);
    }
  }
  return out;
}

LawOutput fit_unified(const FitOptions& o, const Source& source, bool human) {
  fitting::EffectiveParameters params_of_mu;
  fitting::UnifiedData data;
  fitting::ParcaeData training;
  std::vector<std::string> job_ids;
  if (source.runs != nullptr) {
    data = orchestrator::unified_data(*source.runs, &params_of_mu);
    training = orchestrator::parcae_data(*source.runs, &params_of_mu);
    job_ids = looped_job_ids(*source.runs);
  } else {
    require(!o.mu_col.empty() && !o.tokens_col.empty() && !o.test_time_col.empty() &&
                !o.loss_col.empty(),
            "--mu-col/--tokens-col/--test-time-col/--loss-col",
            "unified from a CSV needs mu, D, T and loss columns (one row per run and T)");
    params_of_mu = params_from_flags(o);
    const auto columns = read_columns(o,
                                      source,
                                      {{o.mu_col, true},
                                       {o.tokens_col, true},
                                       {o.test_time_col, true},
                                       {o.loss_col, true},
                                       {o.run_col, false, true}});
    data.mean_recurrence = columns.values[0];
    data.tokens = columns.values[1];
    data.test_time = columns.values[2];
    data.loss = columns.values[3];
    if (!o.run_col.empty()) {
      for (double r : columns.values[4])
        data.run.push_back(static_cast<int>(std::lround(r)));
    }
    // The training law's points are the rows at T = mu_rec (§4.1: one point per run).
    for (size_t i = 0; i < data.loss.size(); ++i) {
      if (data.test_time[i] == data.mean_recurrence[i]) {
        training.mean_recurrence.push_back(data.mean_recurrence[i]);
        training.tokens.push_back(data.tokens[i]);
        training.loss.push_back(data.loss[i]);
      }
    }
  }
  if (training.loss.empty()) {
    throw InputError(source.table.file,
                     "rows",
                     "(none at T = mu_rec)",
                     "the unified law starts from the training law, fitted on the rows with "
                     "T = mu_rec; expected at least 6 such rows");
  }
  const fitting::ParcaeLawFit training_fit = fit_training_law(o, training, params_of_mu);
  if (training_fit.status != fitting::FitStatus::kOk) {
    throw Error(
        "the training law (scaling-laws.md §4.1) that the unified law starts from did "
        "not fit: " +
        training_fit.message);
  }
  fitting::UnifiedOptions options;
  options.variant = unified_variant(o.variant);
  options.floor_fixed = o.floor_fixed;
  options.seed = o.seed;
  fitting::UnifiedLawFit fit = fitting::fit_unified_law(data, params_of_mu, training_fit, options);
  if (o.bootstrap > 0 && fit.status == fitting::FitStatus::kOk) {
    fit = fitting::bootstrap_unified_law(
        data, params_of_mu, training_fit, fit, options, bootstrap_options(o));
  }
  LawOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = orchestrator::fit_to_json(fit);
  out.json["variant"] = o.variant;
  out.json["floor_fixed"] = o.floor_fixed;
  out.json["params_noncore"] = params_of_mu.noncore;
  out.json["params_core"] = params_of_mu.core;
  out.json["training_law"] = orchestrator::fit_to_json(training_fit);
  out.records.push_back(orchestrator::fit_record(fit, o.sweep, job_ids, out.json));
  if (human)
    print_fit(fit);
  return out;
}

int run_fit(const FitOptions& o, const CliContext& context) {
  if (o.sweep.empty() == o.csv.empty()) {
    throw InputError("", "--sweep/--csv", "(both or neither)", "expected exactly one data source");
  }
  std::unique_ptr<results::Store> store;
  orchestrator::SweepRuns runs;
  Source source;
  if (!o.sweep.empty()) {
    store = std::make_unique<results::Store>(
        results::Store::open(context.db_path, results::Store::Mode::kExisting));
    runs = orchestrator::collect_runs(*store, o.sweep);
    for (const auto& skipped : runs.not_used)
      std::cerr << "fit: not used: " << skipped << "\n";
    source.runs = &runs;
    source.table = orchestrator::runs_table(runs, o.sweep);
  } else {
    source.table = orchestrator::read_csv(o.csv);
  }

  const bool human = !context.json;
  LawOutput output;
  try {
    if (o.law == "isoflop") {
      output = fit_isoflop(o, source, human);
    } else if (o.law == "power") {
      output = fit_power(o, source, human);
    } else if (o.law == "satexp") {
      output = fit_satexp(o, source, human);
    } else if (o.law == "chinchilla") {
      output = fit_chinchilla(o, source, human);
    } else if (o.law == "parcae") {
      output = fit_parcae(o, source, human);
    } else {
      output = fit_unified(o, source, human);
    }
  } catch (const fitting::InputError& e) {
    // The data cannot be fitted as given: bad input, exit code 2.
    throw InputError(o.sweep.empty() ? o.csv : "sweep " + o.sweep,
                     "",
                     e.what(),
                     "cannot be fitted (docs/fitting.md says what each law needs)");
  }

  if (context.json)
    std::cout << output.json.dump(2) << "\n";
  if (o.save) {
    if (!store) {
      store = std::make_unique<results::Store>(
          results::Store::open(context.db_path, results::Store::Mode::kCreate));
    }
    for (const auto& record : output.records) {
      const int64_t id = store->save_fit(record);
      std::cerr << "fit: saved " << record.law << " fit " << id << " in " << context.db_path
                << "\n";
    }
  }
  return output.ok ? 0 : 1;
}

}  // namespace

void add_fit_commands(CLI::App& app, CliContext& context) {
  auto o = std::make_shared<FitOptions>();
  CLI::App* cmd =
      app.add_subcommand("fit", "Fit a scaling law, with intervals, to a sweep or a CSV");
  cmd->add_option("law", o->law, "isoflop, power, satexp, chinchilla, parcae or unified")
      ->required()
      ->check(CLI::IsMember({"isoflop", "power", "satexp", "chinchilla", "parcae", "unified"}));
  cmd->add_option("--sweep", o->sweep, "sweep name in the database");
  cmd->add_option("--csv", o->csv, "CSV file with a header row");
  cmd->add_option("--bootstrap",
                  o->bootstrap,
                  "bootstrap resamples (isoflop default 2000 within budgets; others 0: none)");
  cmd->add_option("--ci", o->ci, "confidence level of the percentile intervals")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the bootstrap and random starts")
      ->capture_default_str();
  cmd->add_flag("--json", context.json, "print one JSON document");
  cmd->add_flag(
      "--save", o->save, "store the fit (with the ids of the jobs it used) in the database");
  cmd->add_flag("--skip-bad-rows", o->skip_bad_rows, "skip and report rows with bad values");
  cmd->add_option(
      "--x-col", o->x_col, "column of x (power; satexp: T; isoflop: the swept variable)");
  cmd->add_option("--y-col", o->y_col, "column of y (power; satexp: the loss)");
  cmd->add_option("--weight-col", o->weight_col, "column of weights (power)");
  cmd->add_option("--budget-col",
                  o->budget_col,
                  "column of the FLOP budget C (isoflop; parcae: the held-out largest budget)");
  cmd->add_option(
      "--loss-col", o->loss_col, "column of the loss (isoflop, chinchilla, parcae, unified)");
  cmd->add_option("--params-col", o->params_col, "column of N (chinchilla)");
  cmd->add_option("--tokens-col",
                  o->tokens_col,
                  "column of D (chinchilla, parcae, unified; isoflop: the ln-D check)");
  cmd->add_option("--flops-col", o->flops_col, "column of C, for D = C / 6N (chinchilla)");
  cmd->add_option("--mu-col", o->mu_col, "column of mu_rec (parcae, unified)");
  cmd->add_option("--test-time-col", o->test_time_col, "column of the test-time depth T (unified)");
  cmd->add_option(
      "--run-col", o->run_col, "column numbering the runs, for the bootstrap (unified)");
  cmd->add_option(
      "--params-noncore", o->params_noncore, "N_noncore of N(mu) (parcae, unified from a CSV)");
  cmd->add_option("--params-core", o->params_core, "N_core of N(mu) (parcae, unified from a CSV)");
  cmd->add_option("--drop-top-losses",
                  o->drop_top_losses,
                  "chinchilla: keep rows with loss strictly below the K-th largest (Epoch: 5)");
  cmd->add_flag("--x-is-tokens", o->x_is_tokens, "isoflop: x is D, so D* = x*");
  cmd->add_option(
      "--predict", o->predict_budgets, "isoflop: budgets C at which to predict x* with CIs");
  cmd->add_option("--variant",
                  o->variant,
                  "unified: the test-time term Z exp(-z T/mu) (gamma-one), Z exp(-z T mu^-gamma) "
                  "(learned-gamma) or Z exp(-z T) (no-mu)")
      ->check(CLI::IsMember({"gamma-one", "learned-gamma", "no-mu"}))
      ->capture_default_str();
  cmd->add_flag("--floor-fixed",
                o->floor_fixed,
                "unified: hold E, X, x, Y, y at the training-law fit and fit Z, z only");
  cmd->callback([o, &context] { context.run = [o, &context] { return run_fit(*o, context); }; });
}

}  // namespace parcae::cli
