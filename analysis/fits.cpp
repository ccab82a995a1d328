// Every law of `parcae-scale fit`, from a sweep's runs or a CSV's rows to fits, text and records.
// The arithmetic is in fitting/; the rules of which rows enter are in selection.cpp and
// isoflop.cpp; this file maps a FitRequest onto the fitters' options and reports what came back.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "analysis/analysis.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

using Json = nlohmann::ordered_json;

void require(bool ok, const std::string& flag, const std::string& why) {
  if (!ok)
    throw InputError("", flag, "(missing)", why);
}

void note(const FitRequest& r, const std::string& line) {
  if (r.on_note)
    r.on_note(line);
}

// The columns a law reads, over the rows the selection keeps (no grouping outside isoflop).
NumericColumns read_columns(const FitRequest& r,
                            const Source& source,
                            std::vector<NumericColumnSpec> specs,
                            const std::string& x_column = "") {
  for (auto& spec : specs) {
    if (!spec.name.empty())
      spec.name = resolve_column(source.table, spec.name, "--" + spec.name);
  }
  const SelectedRows selected = select_rows(source.table, r.selection, x_column);
  for (const auto& n : selected.notes)
    note(r, n);
  std::vector<size_t> rows;
  for (const auto& g : selected.groups)
    rows.insert(rows.end(), g.rows.begin(), g.rows.end());
  std::sort(rows.begin(), rows.end());
  auto columns = read_numeric_columns(source.table, specs, r.skip_bad_rows, &rows);
  for (const auto& skipped : columns.skipped)
    note(r, "skipped " + source.table.file + ": " + skipped);
  if (!columns.skipped.empty()) {
    note(r,
         "skipped " + std::to_string(columns.skipped.size()) + " of " +
             std::to_string(rows.size()) + " rows of " + source.table.file);
  }
  return columns;
}

// The ids of the jobs behind the rows kept from a sweep's runs table (a CSV with a job_id or id
// column too).
std::vector<std::string> jobs_of_rows(const Source& source, const NumericColumns& columns) {
  std::vector<std::string> ids;
  const RunTable& t = source.table;
  const std::string id_column = t.has_column("job_id") ? "job_id" : t.has_column("id") ? "id" : "";
  if (id_column.empty())
    return ids;
  const size_t index = t.column(id_column);
  for (size_t row : columns.rows)
    ids.push_back(t.rows[row - 1][index]);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

fitting::BootstrapOptions bootstrap_options(const FitRequest& r) {
  fitting::BootstrapOptions bootstrap;
  bootstrap.resamples = r.bootstrap;
  bootstrap.seed = r.seed;
  bootstrap.ci_level = r.ci;
  return bootstrap;
}

// The objective flags of a curve fit, onto the fitter's residual scale, penalty and delta.
struct ObjectiveChoice {
  fitting::ResidualScale residuals = fitting::ResidualScale::kLog;
  fitting::Penalty penalty = fitting::Penalty::kHuber;
  double huber_delta = 1e-3;
};

ObjectiveChoice objective_choice(const FitRequest& r, fitting::Penalty default_penalty) {
  ObjectiveChoice choice;
  choice.penalty = default_penalty;
  if (!r.residuals.empty()) {
    if (r.residuals != "log" && r.residuals != "linear")
      throw InputError("", "--residuals", "'" + r.residuals + "'", "expected log or linear");
    choice.residuals =
        r.residuals == "linear" ? fitting::ResidualScale::kLinear : fitting::ResidualScale::kLog;
  }
  if (!r.loss_function.empty()) {
    const std::string& text = r.loss_function;
    if (text == "l2") {
      choice.penalty = fitting::Penalty::kSquares;
    } else if (text.rfind("huber:", 0) == 0) {
      char* end = nullptr;
      const double delta = std::strtod(text.c_str() + 6, &end);
      if (end == nullptr || *end != '\0' || !(delta > 0.0) || !std::isfinite(delta)) {
        throw InputError("",
                         "--loss",
                         "'" + text + "'",
                         "expected huber:DELTA with a positive DELTA, such as huber:1e-3, or l2");
      }
      choice.penalty = fitting::Penalty::kHuber;
      choice.huber_delta = delta;
    } else {
      throw InputError("", "--loss", "'" + text + "'", "expected huber:DELTA or l2");
    }
  }
  return choice;
}

std::string objective_text(const ObjectiveChoice& c) {
  return std::string(c.penalty == fitting::Penalty::kSquares
                         ? "squares"
                         : "Huber(" + fmt::format("{:g}", c.huber_delta) + ")") +
         " of " + fitting::to_string(c.residuals) + " residuals";
}

Json objective_json(const ObjectiveChoice& c) {
  return {{"residuals", fitting::to_string(c.residuals)},
          {"loss",
           c.penalty == fitting::Penalty::kSquares ? std::string("l2")
                                                   : fmt::format("huber:{:g}", c.huber_delta)}};
}

void refuse_objective(const FitRequest& r, const std::string& why) {
  if (!r.residuals.empty() || !r.loss_function.empty()) {
    throw InputError("",
                     r.residuals.empty() ? "--loss" : "--residuals",
                     r.residuals.empty() ? r.loss_function : r.residuals,
                     "does not apply to " + r.law + ": " + why);
  }
}

// ---- isoflop

std::string isoflop_table(const fitting::IsoflopFit& fit, const std::string& x) {
  std::ostringstream out;
  out << fmt::format("{:<10}{:>12}{:>4}  {:<13}{:>11}{:>24}{:>10}{:>14}\n",
                     "budget",
                     "C",
                     "n",
                     "status",
                     x + "*",
                     "1-sigma band",
                     "L*",
                     "D*");
  for (const auto& b : fit.budgets) {
    out << fmt::format("{:<10}{:>12.4g}{:>4}  {:<13}{:>11.4g}{:>24}{:>10.5g}{:>14.4g}{}\n",
                       b.budget_id,
                       b.budget_flops,
                       b.runs,
                       fitting::to_string(b.status),
                       b.x_star,
                       std::isfinite(b.x_star_low)
                           ? fmt::format("[{:.4g}, {:.4g}]", b.x_star_low, b.x_star_high)
                           : std::string("-"),
                       b.loss_star,
                       b.tokens_star,
                       b.used ? "" : "  (not in the power law)");
  }
  return out.str();
}

FitOutput fit_isoflop(const FitRequest& r, const Source& source) {
  refuse_objective(r, "its parabolas and power laws are closed-form least squares");
  IsoflopRequest request;
  request.x = r.x.empty() ? "mu_rec" : r.x;
  request.loss = r.loss;
  request.budget = r.budget;
  request.tokens = r.tokens;
  request.x_is_tokens = r.x_is_tokens;
  request.selection = r.selection;
  request.skip_bad_rows = r.skip_bad_rows;
  if (r.bootstrap >= 0)
    request.options.bootstrap_resamples = r.bootstrap;
  request.options.seed = r.seed;
  request.options.ci_level = r.ci;
  request.options.prediction_budgets = r.predict_budgets;
  if (!r.flop_convention.empty()) {
    request.flop_convention =
        sweeps::flop_convention_from_json(r.flop_convention, "", "--flop-convention");
  }
  const IsoflopAnalysis analysis = analyse_isoflop(source, request);
  for (const auto& n : analysis.notes)
    note(r, n);

  FitOutput out;
  std::ostringstream text;
  Json groups = Json::array();
  for (const auto& g : analysis.groups) {
    Json j = isoflop_to_json(g.fit);
    j["x"] = analysis.x_column;
    j["tokens_rule"] = to_string(g.tokens_rule);
    j["flop_convention"] = sweeps::to_string(g.flop_convention);
    j["recosted"] = g.recosted;
    j["job_ids"] = g.job_ids;
    if (!g.group.key.empty()) {
      Json key = Json::object();
      for (const auto& [column, value] : g.group.key)
        key[column] = value;
      j["group"] = key;
      text << "== " << g.group.label() << "\n";
    }
    Json details = j;
    details["selection"] = {{"where", r.selection.where}, {"group_by", r.selection.group_by}};
    out.records.push_back(fit_record(g.fit, r.sweep, g.job_ids, details));
    out.ok = out.ok && g.fit.status == fitting::FitStatus::kOk;
    text << "x = " << analysis.x_column << "; " << to_string(g.tokens_rule) << "\n";
    if (g.recosted) {
      text << "C under the " << sweeps::to_string(g.flop_convention)
           << " FLOP convention, re-costed at each budget's optimum: C' = C * F'(x*) / F(x*)\n";
    }
    text << isoflop_table(g.fit, r.x.empty() ? "mu_rec" : r.x) << "\n" << fit_text(g.fit);
    if (analysis.groups.size() > 1)
      text << "\n";
    groups.push_back(j);
  }
  if (r.selection.group_by.empty()) {
    out.json = groups.front();
  } else {
    out.json = {{"law", "isoflop"},
                {"x", analysis.x_column},
                {"group_by", r.selection.group_by},
                {"groups", groups}};
  }
  out.text = text.str();
  return out;
}

// ---- power

FitOutput fit_power(const FitRequest& r, const Source& source) {
  refuse_objective(r, "the power law is ordinary least squares in log-log space");
  require(!r.x.empty() && !r.y.empty(),
          "--x/--y",
          source.runs != nullptr ? "power needs the x and y columns of the sweep's runs table "
                                   "(budget_flops, mean_recurrence, tokens, params, "
                                   "params_effective, loss, ...)"
                                 : "power needs the x and y columns");
  const auto columns =
      read_columns(r, source, {{r.x, true}, {r.y, true}, {r.weight, true, true}}, r.x);
  fitting::PowerLawFit fit =
      fitting::fit_power_law(columns.values[0], columns.values[1], columns.values[2]);
  if (r.bootstrap > 0) {
    fit = fitting::bootstrap_power_law(
        columns.values[0], columns.values[1], columns.values[2], fit, bootstrap_options(r));
  }
  FitOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = fit_to_json(fit);
  out.json["r_squared"] = fit.r_squared;
  out.records.push_back(fit_record(fit, r.sweep, jobs_of_rows(source, columns), out.json));
  out.text = fit_text(fit);
  return out;
}

// ---- satexp

FitOutput fit_satexp(const FitRequest& r, const Source& source) {
  fitting::SatExpOptions options;
  const ObjectiveChoice choice = objective_choice(r, fitting::Penalty::kSquares);
  options.residuals = choice.residuals;
  options.objective = choice.penalty == fitting::Penalty::kSquares
                          ? fitting::SatExpObjective::kLeastSquares
                          : fitting::SatExpObjective::kHuberSum;
  if (choice.penalty == fitting::Penalty::kHuber)
    options.huber_delta = choice.huber_delta;
  FitOutput out;
  std::ostringstream text;
  if (source.runs != nullptr && r.x.empty()) {
    // One curve per run, over its final-step evaluations; the selection chooses the runs.
    const SelectedRows selected = select_rows(source.table, r.selection, "");
    for (const auto& n : selected.notes)
      note(r, n);
    std::vector<size_t> rows;
    for (const auto& g : selected.groups)
      rows.insert(rows.end(), g.rows.begin(), g.rows.end());
    std::sort(rows.begin(), rows.end());
    out.json = {{"law", "satexp"}, {"objective", objective_json(choice)}, {"fits", Json::array()}};
    text << fmt::format("{:<28}{:>5}  {:<11}{:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {}\n",
                        "cell",
                        "mu",
                        "status",
                        "L_inf",
                        "Z",
                        "z",
                        "T_1/2",
                        "floor gap",
                        "Huber mean",
                        r.bootstrap > 0 ? fmt::format("z {:g}% CI", 100 * r.ci) : "");
    int fitted = 0, warned = 0;
    for (size_t row : rows) {
      const RunResult& run = source.runs->runs[row];
      if (run.loss_at_depth.size() < 4)
        continue;
      std::vector<double> depth, loss;
      for (const auto& [t, l] : run.loss_at_depth) {
        depth.push_back(t);
        loss.push_back(l);
      }
      fitting::SatExpOptions run_options = options;
      run_options.mean_recurrence = run.mean_recurrence;
      fitting::SatExpFit fit = fitting::fit_satexp(depth, loss, run_options);
      if (r.bootstrap > 0 && fit.status == fitting::FitStatus::kOk)
        fit = fitting::bootstrap_satexp(depth, loss, fit, run_options, bootstrap_options(r));
      ++fitted;
      warned += fit.warnings.empty() ? 0 : 1;
      Json j = fit_to_json(fit);
      j["job_id"] = run.job_id;
      j["cell"] = run.cell;
      j["mean_recurrence"] = run.mean_recurrence;
      j["floor_gap"] = std::isfinite(fit.floor_gap) ? Json(fit.floor_gap) : Json(nullptr);
      j["huber_mean"] = fit.huber_mean;
      out.json["fits"].push_back(j);
      out.records.push_back(fit_record(fit, r.sweep, {run.job_id}, j));
      out.ok = out.ok && fit.status != fitting::FitStatus::kFailed &&
               fit.status != fitting::FitStatus::kUnphysical;
      const auto& z = fit.coefficient("z");
      text << fmt::format(
          "{:<28}{:>5}  {:<11}{:>10.5f} {:>10.3e} {:>10.3e} {:>10.3e} {:>9.3f}% {:>10.3e}  {}\n",
          run.cell,
          run.mean_recurrence,
          fmt::format("{}{}", fitting::to_string(fit.status), fit.warnings.empty() ? "" : "*"),
          fit.l_inf,
          fit.amplitude,
          fit.rate,
          fit.half_life,
          100 * fit.floor_gap,
          fit.huber_mean,
          std::isfinite(z.ci_low) ? fmt::format("[{:.3e}, {:.3e}]", z.ci_low, z.ci_high) : "");
    }
    if (warned > 0) {
      text << fmt::format(
          "* {} of {} fits have a warning (the \"warnings\" of --json): a decay that is over by "
          "the second sampled T leaves Z and z not separately identified\n",
          warned,
          fitted);
    }
    out.text = text.str();
    return out;
  }
  require(!r.x.empty() && !r.y.empty(), "--x/--y", "satexp needs the T and loss columns");
  const auto columns = read_columns(r, source, {{r.x, true}, {r.y, true}}, r.x);
  fitting::SatExpFit fit = fitting::fit_satexp(columns.values[0], columns.values[1], options);
  if (r.bootstrap > 0 && fit.status == fitting::FitStatus::kOk) {
    fit = fitting::bootstrap_satexp(
        columns.values[0], columns.values[1], fit, options, bootstrap_options(r));
  }
  out.ok =
      fit.status != fitting::FitStatus::kFailed && fit.status != fitting::FitStatus::kUnphysical;
  out.json = fit_to_json(fit);
  out.json["objective_choice"] = objective_json(choice);
  out.json["half_life"] = std::isfinite(fit.half_life) ? Json(fit.half_life) : Json(nullptr);
  out.json["huber_mean"] = fit.huber_mean;
  out.records.push_back(fit_record(fit, r.sweep, jobs_of_rows(source, columns), out.json));
  out.text = "objective: " + objective_text(choice) + "\n" + fit_text(fit);
  return out;
}

// ---- chinchilla

// Epoch's filter (scaling-laws.md §7): keep rows whose loss is strictly below the K-th largest
// loss, which drops the K highest-loss runs.
fitting::ChinchillaData drop_top_losses(const FitRequest& r,
                                        const fitting::ChinchillaData& data,
                                        int count) {
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
  note(r,
       "kept " + std::to_string(kept.loss.size()) + " of " + std::to_string(data.loss.size()) +
           " rows (loss below the " + std::to_string(k) + "-th largest, " +
           fmt::format("{:g}", threshold) + ")");
  return kept;
}

FitOutput fit_chinchilla(const FitRequest& r, const Source& source) {
  // From a sweep: N(mu_rec) of each run (the total for a Transformer), its realised D, its loss.
  const bool sweep = source.runs != nullptr;
  const std::string params_col = !r.params.empty() ? r.params : (sweep ? "params_effective" : "");
  const std::string loss_col = !r.loss.empty() ? r.loss : (sweep ? "loss" : "");
  const std::string tokens_col =
      !r.tokens.empty() ? r.tokens : (sweep && r.flops.empty() ? "tokens" : "");
  require(!params_col.empty() && !loss_col.empty() && (tokens_col.empty() != r.flops.empty()),
          "--params-col/--tokens-col|--flops-col/--loss-col",
          "chinchilla needs N, one of D or C (then D = C / 6N), and the loss");
  const auto columns = read_columns(
      r,
      source,
      {{params_col, true}, {tokens_col.empty() ? r.flops : tokens_col, true}, {loss_col, true}});
  fitting::ChinchillaData data;
  data.params = columns.values[0];
  data.loss = columns.values[2];
  for (size_t i = 0; i < data.params.size(); ++i) {
    data.tokens.push_back(tokens_col.empty() ? columns.values[1][i] / (6 * data.params[i])
                                             : columns.values[1][i]);
  }
  if (r.drop_top_losses > 0)
    data = drop_top_losses(r, data, r.drop_top_losses);
  fitting::ChinchillaOptions options;
  const ObjectiveChoice choice = objective_choice(r, fitting::Penalty::kHuber);
  options.residuals = choice.residuals;
  options.penalty = choice.penalty;
  options.huber_delta = choice.huber_delta;
  options.progress = r.on_progress;
  fitting::ChinchillaFit fit = fitting::fit_chinchilla(data, options);
  if (r.bootstrap > 0 && fit.status == fitting::FitStatus::kOk)
    fit = fitting::bootstrap_chinchilla(data, fit, options, bootstrap_options(r));
  FitOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = fit_to_json(fit);
  out.json["objective_choice"] = objective_json(choice);
  out.records.push_back(fit_record(fit, r.sweep, jobs_of_rows(source, columns), out.json));
  out.text = "objective: " + objective_text(choice) + ", summed\n" + fit_text(fit);
  return out;
}

// ---- parcae and unified

fitting::EffectiveParameters params_from_flags(const FitRequest& r) {
  require(r.params_noncore > 0 && r.params_core > 0,
          "--params-noncore/--params-core",
          "the Parcae laws from a CSV need N(mu) = N_noncore + mu N_core");
  return {r.params_noncore, r.params_core};
}

std::string shape_key(const sweeps::ModelConfig& model) {
  sweeps::ModelConfig shape = model;
  shape.mean_recurrence = shape.mean_backward = 1;
  shape.depth_sampler = sweeps::DepthSampler::kPoisson;
  shape.name = "";
  return sweeps::to_json(shape).dump();
}

// The looped, non-control runs of a sweep that the selection keeps, all of one model shape (the
// Parcae laws have one N(mu)).
std::vector<const RunResult*> parcae_runs(const FitRequest& r,
                                          const Source& source,
                                          fitting::EffectiveParameters* params_of_mu) {
  const SelectedRows selected = select_rows(source.table, r.selection, "mean_recurrence");
  for (const auto& n : selected.notes)
    note(r, n);
  std::vector<size_t> rows;
  for (const auto& g : selected.groups)
    rows.insert(rows.end(), g.rows.begin(), g.rows.end());
  std::sort(rows.begin(), rows.end());
  std::vector<const RunResult*> runs;
  std::set<std::string> shapes;
  for (size_t row : rows) {
    const RunResult& run = source.runs->runs[row];
    if (!run.model.is_looped() || run.control)
      continue;
    shapes.insert(shape_key(run.model));
    params_of_mu->noncore = run.params_noncore;
    params_of_mu->core = run.params_core;
    runs.push_back(&run);
  }
  if (shapes.size() > 1) {
    throw InputError(source.table.file,
                     "model",
                     std::to_string(shapes.size()) + " model shapes",
                     "expected one model shape: the " + r.law + " law has one N(mu)",
                     "choose one with --where model=... (scaling-laws.md §4.2: fit each size "
                     "separately)");
  }
  if (runs.empty()) {
    throw InputError(source.table.file,
                     "runs",
                     "(none)",
                     "no finished looped runs to fit the " + r.law + " law");
  }
  return runs;
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
  if (held.empty() || train.loss.size() < 6 || !(largest > 0))
    return nullptr;
  fitting::ParcaeLawOptions refit_options = options;
  refit_options.progress = nullptr;
  const fitting::ParcaeLawFit fit = fitting::fit_parcae_law(train, params_of_mu, refit_options);
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

fitting::ParcaeLawOptions parcae_options(const FitRequest& r, const ObjectiveChoice& choice) {
  fitting::ParcaeLawOptions options;
  options.seed = r.seed;
  options.residuals = choice.residuals;
  options.penalty = choice.penalty;
  options.huber_delta = choice.huber_delta;
  options.progress = r.on_progress;
  return options;
}

FitOutput fit_parcae(const FitRequest& r, const Source& source) {
  fitting::EffectiveParameters params_of_mu;
  fitting::ParcaeData data;
  std::vector<double> budgets;  // C of each row, for the held-out check; empty when unknown
  std::vector<std::string> job_ids;
  if (source.runs != nullptr) {
    for (const RunResult* run : parcae_runs(r, source, &params_of_mu)) {
      data.mean_recurrence.push_back(run->mean_recurrence);
      data.tokens.push_back(run->realised_tokens);
      data.loss.push_back(run->loss);
      budgets.push_back(run->budget_flops);
      job_ids.push_back(run->job_id);
    }
    std::sort(job_ids.begin(), job_ids.end());
  } else {
    require(!r.mu.empty() && !r.tokens.empty() && !r.loss.empty(),
            "--mu-col/--tokens-col/--loss-col",
            "parcae from a CSV needs mu, D and loss columns");
    params_of_mu = params_from_flags(r);
    const auto columns = read_columns(
        r, source, {{r.mu, true}, {r.tokens, true}, {r.loss, true}, {r.budget, true, true}}, r.mu);
    data.mean_recurrence = columns.values[0];
    data.tokens = columns.values[1];
    data.loss = columns.values[2];
    budgets = columns.values[3];
    job_ids = jobs_of_rows(source, columns);
  }
  const ObjectiveChoice choice = objective_choice(r, fitting::Penalty::kHuber);
  const fitting::ParcaeLawOptions options = parcae_options(r, choice);
  fitting::ParcaeLawFit fit = fitting::fit_parcae_law(data, params_of_mu, options);
  if (r.bootstrap > 0 && fit.status == fitting::FitStatus::kOk)
    fit = fitting::bootstrap_parcae_law(data, params_of_mu, fit, options, bootstrap_options(r));
  double error_percent = fitting::kNotComputed;
  const Json heldout =
      fit.status == fitting::FitStatus::kOk
          ? largest_budget_heldout(data, budgets, params_of_mu, options, &error_percent)
          : Json(nullptr);
  fit.heldout_error_percent = error_percent;
  FitOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = fit_to_json(fit);
  out.json["objective_choice"] = objective_json(choice);
  out.json["params_noncore"] = params_of_mu.noncore;
  out.json["params_core"] = params_of_mu.core;
  out.json["heldout"] = heldout;
  out.records.push_back(fit_record(fit, r.sweep, job_ids, out.json));
  out.text = "objective: " + objective_text(choice) + ", summed\n" + fit_text(fit);
  if (std::isfinite(error_percent)) {
    out.text += fmt::format(
        "held out: the largest budget's runs, predicted by a refit without them: mean relative "
        "error {:.3f}%\n",
        error_percent);
  }
  return out;
}

fitting::UnifiedVariant unified_variant(const std::string& name) {
  if (name == "learned-gamma")
    return fitting::UnifiedVariant::kLearnedGamma;
  if (name == "no-mu")
    return fitting::UnifiedVariant::kNoMu;
  return fitting::UnifiedVariant::kGammaOne;
}

FitOutput fit_unified(const FitRequest& r, const Source& source) {
  fitting::EffectiveParameters params_of_mu;
  fitting::UnifiedData data;
  fitting::ParcaeData training;
  std::vector<std::string> job_ids;
  if (source.runs != nullptr) {
    int run_index = 0;
    for (const RunResult* run : parcae_runs(r, source, &params_of_mu)) {
      training.mean_recurrence.push_back(run->mean_recurrence);
      training.tokens.push_back(run->realised_tokens);
      training.loss.push_back(run->loss);
      job_ids.push_back(run->job_id);
      if (run->loss_at_depth.empty())
        continue;
      for (const auto& [depth, loss] : run->loss_at_depth) {
        data.mean_recurrence.push_back(run->mean_recurrence);
        data.tokens.push_back(run->realised_tokens);
        data.test_time.push_back(depth);
        data.loss.push_back(loss);
        data.run.push_back(run_index);
      }
      ++run_index;
    }
    std::sort(job_ids.begin(), job_ids.end());
  } else {
    require(!r.mu.empty() && !r.tokens.empty() && !r.test_time.empty() && !r.loss.empty(),
            "--mu-col/--tokens-col/--test-time-col/--loss-col",
            "unified from a CSV needs mu, D, T and loss columns (one row per run and T)");
    params_of_mu = params_from_flags(r);
    const auto columns = read_columns(
        r,
        source,
        {{r.mu, true}, {r.tokens, true}, {r.test_time, true}, {r.loss, true}, {r.run, false, true}},
        r.mu);
    data.mean_recurrence = columns.values[0];
    data.tokens = columns.values[1];
    data.test_time = columns.values[2];
    data.loss = columns.values[3];
    if (!r.run.empty()) {
      for (double v : columns.values[4])
        data.run.push_back(static_cast<int>(std::lround(v)));
    }
    // The training law's points are the rows at T = mu_rec (§4.1: one point per run).
    for (size_t i = 0; i < data.loss.size(); ++i) {
      if (data.test_time[i] == data.mean_recurrence[i]) {
        training.mean_recurrence.push_back(data.mean_recurrence[i]);
        training.tokens.push_back(data.tokens[i]);
        training.loss.push_back(data.loss[i]);
      }
    }
    job_ids = jobs_of_rows(source, columns);
  }
  if (training.loss.empty()) {
    throw InputError(source.table.file,
                     "rows",
                     "(none at T = mu_rec)",
                     "the unified law starts from the training law, fitted on the rows with "
                     "T = mu_rec; expected at least 6 such rows");
  }
  const ObjectiveChoice choice = objective_choice(r, fitting::Penalty::kHuber);
  fitting::ParcaeLawOptions training_options = parcae_options(r, choice);
  training_options.progress = nullptr;
  const fitting::ParcaeLawFit training_fit =
      fitting::fit_parcae_law(training, params_of_mu, training_options);
  if (training_fit.status != fitting::FitStatus::kOk) {
    throw Error(
        "the training law (scaling-laws.md §4.1) that the unified law starts from did "
        "not fit: " +
        training_fit.message);
  }
  fitting::UnifiedOptions options;
  options.variant = unified_variant(r.variant);
  options.floor_fixed = r.floor_fixed;
  options.seed = r.seed;
  options.residuals = choice.residuals;
  options.penalty = choice.penalty;
  options.huber_delta = choice.huber_delta;
  options.progress = r.on_progress;
  fitting::UnifiedLawFit fit = fitting::fit_unified_law(data, params_of_mu, training_fit, options);
  if (r.bootstrap > 0 && fit.status == fitting::FitStatus::kOk) {
    fit = fitting::bootstrap_unified_law(
        data, params_of_mu, training_fit, fit, options, bootstrap_options(r));
  }
  FitOutput out;
  out.ok = fit.status == fitting::FitStatus::kOk;
  out.json = fit_to_json(fit);
  out.json["objective_choice"] = objective_json(choice);
  out.json["variant"] = r.variant;
  out.json["floor_fixed"] = r.floor_fixed;
  out.json["params_noncore"] = params_of_mu.noncore;
  out.json["params_core"] = params_of_mu.core;
  out.json["training_law"] = fit_to_json(training_fit);
  out.records.push_back(fit_record(fit, r.sweep, job_ids, out.json));
  out.text = "objective: " + objective_text(choice) + ", summed\n" + fit_text(fit);
  return out;
}

}  // namespace

FitOutput fit_law(const FitRequest& request, const Source& source) {
  try {
    if (request.law == "isoflop")
      return fit_isoflop(request, source);
    if (request.law == "power")
      return fit_power(request, source);
    if (request.law == "satexp")
      return fit_satexp(request, source);
    if (request.law == "chinchilla")
      return fit_chinchilla(request, source);
    if (request.law == "parcae")
      return fit_parcae(request, source);
    if (request.law == "unified")
      return fit_unified(request, source);
  } catch (const fitting::InputError& e) {
    // The data cannot be fitted as given: bad input, exit code 2.
    throw InputError(
        source.name(), "", e.what(), "cannot be fitted (docs/fitting.md says what each law needs)");
  }
  throw InputError(
      "", "LAW", request.law, "expected isoflop, power, satexp, chinchilla, parcae or unified");
}

}  // namespace parcae::analysis
