// `parcae-scale fit LAW (--sweep NAME | --csv FILE)`: scaling laws with intervals, from a sweep in
// the database or from any CSV. The arithmetic is in fitting/; the sweep-to-input rules are in
// orchestrator/analysis.h; this file maps flags and prints.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>

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
      mu_col;
  bool x_is_tokens = false;
  double params_noncore = 0, params_core = 0;
  std::vector<double> predict_budgets;
  int drop_top_losses = 0;
};

void require(bool ok, const std::string& flag, const std::string& why) {
  if (!ok)
    throw InputError("", flag, "(missing)", why);
}

orchestrator::NumericColumns read_columns(const FitOptions& o,
                                          const std::vector<NumericColumnSpec>& specs) {
  const orchestrator::CsvTable table = orchestrator::read_csv(o.csv);
  auto columns = orchestrator::read_numeric_columns(table, specs, o.skip_bad_rows);
  for (const auto& skipped : columns.skipped)
    std::cerr << "fit: skipped " << o.csv << ": " << skipped << "\n";
  return columns;
}

// The --bootstrap, --seed and --ci flags as the parametric laws' bootstrap settings.
fitting::BootstrapOptions bootstrap_options(const FitOptions& o) {
  fitting::BootstrapOptions bootstrap;
  bootstrap.resamples = o.bootstrap;
  bootstrap.seed = o.seed;
  bootstrap.ci_level = o.ci;
  return bootstrap;
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
  std::cout << "\n" << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
  for (const auto& w : fit.warnings)
    std::cout << "warning: " << w << "\n";
}

nlohmann::json isoflop_json(const fitting::IsoflopFit& fit) {
  nlohmann::json j = orchestrator::fit_to_json(fit);
  nlohmann::json budgets = nlohmann::json::array();
  auto num = [](double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  for (const auto& b : fit.budgets) {
    budgets.push_back({{"budget_id", b.budget_id},
                       {"budget_flops", b.budget_flops},
                       {"status", fitting::to_string(b.status)},
                       {"message", b.message},
                       {"runs", b.runs},
                       {"x", b.x},
                       {"loss", b.loss},
                       {"c0", num(b.c0)},
                       {"c1", num(b.c1)},
                       {"c2", num(b.c2)},
                       {"x_star", num(b.x_star)},
                       {"x_star_low", num(b.x_star_low)},
                       {"x_star_high", num(b.x_star_high)},
                       {"loss_star", num(b.loss_star)},
                       {"tokens_star", num(b.tokens_star)},
                       {"tokens_check_flagged", b.tokens_check_flagged},
                       {"used", b.used}});
  }
  j["budgets"] = budgets;
  j["laws"] = {{"x_star", orchestrator::fit_to_json(fit.x_star_law)},
               {"tokens_star", orchestrator::fit_to_json(fit.tokens_star_law)},
               {"loss_star", orchestrator::fit_to_json(fit.loss_star_law)}};
  return j;
}

int run_fit(const FitOptions& o, const CliContext& context) {
  if (o.sweep.empty() == o.csv.empty()) {
    throw InputError("", "--sweep/--csv", "(both or neither)", "expected exactly one data source");
  }
  std::unique_ptr<results::Store> store;
  orchestrator::SweepRuns runs;
  if (!o.sweep.empty()) {
    store = std::make_unique<results::Store>(
        results::Store::open(context.db_path, results::Store::Mode::kExisting));
    runs = orchestrator::collect_runs(*store, o.sweep);
    for (const auto& skipped : runs.not_used)
      std::cerr << "fit: not used: " << skipped << "\n";
  }
  std::vector<std::string> job_ids;
  for (const auto& run : runs.runs)
    job_ids.push_back(run.job_id);

  nlohmann::json output;
  std::vector<results::FitRecord> records;
  bool all_ok = true;

  if (o.law == "isoflop") {
    fitting::IsoflopOptions options;
    options.bootstrap_resamples = o.bootstrap < 0 ? 2000 : o.bootstrap;
    options.seed = o.seed;
    options.ci_level = o.ci;
    options.prediction_budgets = o.predict_budgets;
    fitting::IsoflopFit fit;
    if (!o.sweep.empty()) {
      fit = orchestrator::fit_sweep_isoflop(runs, options);
    } else {
      require(!o.budget_col.empty() && !o.x_col.empty() && !o.loss_col.empty(),
              "--budget-col/--x-col/--loss-col",
              "isoflop from a CSV needs the budget, x and loss columns");
      const orchestrator::CsvTable table = orchestrator::read_csv(o.csv);
      auto columns = orchestrator::read_numeric_columns(
          table,
          {{o.budget_col, true}, {o.x_col, true}, {o.loss_col, true}, {o.tokens_col, true, true}},
          o.skip_bad_rows);
      for (const auto& skipped : columns.skipped)
        std::cerr << "fit: skipped " << o.csv << ": " << skipped << "\n";
      const size_t budget_index = table.column(o.budget_col);
      std::vector<fitting::IsoflopRun> points;
      for (size_t i = 0; i < columns.rows.size(); ++i) {
        const std::string id = table.rows[columns.rows[i] - 1][budget_index];
        points.push_back({id,
                          columns.values[0][i],
                          columns.values[1][i],
                          columns.values[2][i],
                          o.tokens_col.empty() ? fitting::kNotComputed : columns.values[3][i]});
      }
      options.x_is_tokens = o.x_is_tokens;
      fit = fitting::fit_isoflop(points, options);
    }
    all_ok = fit.status == fitting::FitStatus::kOk;
    output = isoflop_json(fit);
    records.push_back(orchestrator::fit_record(fit, o.sweep, job_ids, output));
    if (!context.json)
      print_isoflop(fit);
  } else if (o.law == "power") {
    require(!o.csv.empty(), "--csv", "power fits a CSV's columns (--x-col, --y-col)");
    require(
        !o.x_col.empty() && !o.y_col.empty(), "--x-col/--y-col", "power needs the x and y columns");
    const auto columns =
        read_columns(o, {{o.x_col, true}, {o.y_col, true}, {o.weight_col, true, true}});
    const fitting::PowerLawFit fit =
        fitting::fit_power_law(columns.values[0], columns.values[1], columns.values[2]);
    output = orchestrator::fit_to_json(fit);
    output["r_squared"] = fit.r_squared;
    records.push_back(orchestrator::fit_record(fit, "", {}, output));
    if (!context.json)
      std::cout << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
  } else if (o.law == "satexp") {
    fitting::SatExpOptions options;
    if (!o.sweep.empty()) {
      const auto fits = orchestrator::fit_sweep_satexp(runs, options);
      output = {{"law", "satexp"}, {"fits", nlohmann::json::array()}};
      if (!context.json) {
        std::cout << fmt::format("{:<28}{:>5}  {:<8}{:>10}{:>10}{:>9}{:>9}{:>11}{:>12}\n",
                                 "cell",
                                 "mu",
                                 "status",
                                 "L_inf",
                                 "Z",
                                 "z",
                                 "T_1/2",
                                 "floor gap",
                                 "Huber mean");
      }
      for (size_t i = 0; i < fits.fits.size(); ++i) {
        const auto& fit = fits.fits[i];
        const auto& run = *fits.runs[i];
        nlohmann::json j = orchestrator::fit_to_json(fit);
        j["job_id"] = run.job_id;
        j["cell"] = run.cell;
        j["mean_recurrence"] = run.mean_recurrence;
        j["floor_gap"] =
            std::isfinite(fit.floor_gap) ? nlohmann::json(fit.floor_gap) : nlohmann::json(nullptr);
        j["huber_mean"] = fit.huber_mean;
        output["fits"].push_back(j);
        records.push_back(orchestrator::fit_record(fit, o.sweep, {run.job_id}, j));
        all_ok = all_ok && fit.status != fitting::FitStatus::kFailed;
        if (!context.json) {
          std::cout << fmt::format(
              "{:<28}{:>5}  {:<8}{:>10.5f}{:>10.4g}{:>9.4g}{:>9.3g}{:>10.3f}%{:>12.3g}\n",
              run.cell,
              run.mean_recurrence,
              fitting::to_string(fit.status),
              fit.l_inf,
              fit.amplitude,
              fit.rate,
              fit.half_life,
              100 * fit.floor_gap,
              fit.huber_mean);
        }
      }
    } else {
      require(!o.x_col.empty() && !o.y_col.empty(),
              "--x-col/--y-col",
              "satexp needs the T and loss columns");
      const auto columns = read_columns(o, {{o.x_col, true}, {o.y_col, true}});
      const fitting::SatExpFit fit =
          fitting::fit_satexp(columns.values[0], columns.values[1], options);
      output = orchestrator::fit_to_json(fit);
      records.push_back(orchestrator::fit_record(fit, "", {}, output));
      all_ok = fit.status != fitting::FitStatus::kFailed;
      if (!context.json)
        std::cout << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
    }
  } else if (o.law == "chinchilla") {
    require(!o.csv.empty(),
            "--csv",
            "chinchilla fits a CSV (--params-col, --tokens-col or --flops-col, --loss-col)");
    require(!o.params_col.empty() && !o.loss_col.empty() &&
                (o.tokens_col.empty() != o.flops_col.empty()),
            "--params-col/--tokens-col|--flops-col/--loss-col",
            "chinchilla needs N, one of D or C (then D = C / 6N), and the loss");
    const auto columns = read_columns(o,
                                      {{o.params_col, true},
                                       {o.tokens_col.empty() ? o.flops_col : o.tokens_col, true},
                                       {o.loss_col, true}});
    fitting::ChinchillaData data;
    data.params = columns.values[0];
    data.loss = columns.values[2];
    for (size_t i = 0; i < data.params.size(); ++i) {
      data.tokens.push_back(o.tokens_col.empty() ? columns.values[1][i] / (6 * data.params[i])
                                                 : columns.values[1][i]);
    }
    if (o.drop_top_losses > 0) {
      // Epoch's filter (scaling-laws.md §7): keep rows whose loss is strictly below the K-th
      // largest loss, which drops the K highest-loss runs.
      std::vector<double> sorted = data.loss;
      std::sort(sorted.begin(), sorted.end(), std::greater<double>());
      const size_t k = std::min(static_cast<size_t>(o.drop_top_losses), sorted.size());
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
      data = kept;
    }
    fitting::ChinchillaOptions options;
    fitting::ChinchillaFit fit = fitting::fit_chinchilla(data, options);
    if (o.bootstrap > 0) {
      fit = fitting::bootstrap_chinchilla(data, fit, options, bootstrap_options(o));
    }
    all_ok = fit.status == fitting::FitStatus::kOk;
    output = orchestrator::fit_to_json(fit);
    records.push_back(orchestrator::fit_record(fit, "", {}, output));
    if (!context.json)
      std::cout << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
  } else if (o.law == "parcae") {
    fitting::EffectiveParameters params_of_mu;
    fitting::ParcaeData data;
    if (!o.sweep.empty()) {
      data = orchestrator::parcae_data(runs, &params_of_mu);
    } else {
      require(!o.mu_col.empty() && !o.tokens_col.empty() && !o.loss_col.empty(),
              "--mu-col/--tokens-col/--loss-col",
              "parcae from a CSV needs mu, D and loss columns");
      require(o.params_noncore > 0 && o.params_core > 0,
              "--params-noncore/--params-core",
              "parcae from a CSV needs N(mu) = N_noncore + mu N_core");
      const auto columns =
          read_columns(o, {{o.mu_col, true}, {o.tokens_col, true}, {o.loss_col, true}});
      data.mean_recurrence = columns.values[0];
      data.tokens = columns.values[1];
      data.loss = columns.values[2];
      params_of_mu.noncore = o.params_noncore;
      params_of_mu.core = o.params_core;
    }
    fitting::ParcaeLawOptions options;
    options.seed = o.seed;
    fitting::ParcaeLawFit fit = fitting::fit_parcae_law(data, params_of_mu, options);
    if (o.bootstrap > 0) {
      fit = fitting::bootstrap_parcae_law(data, params_of_mu, fit, options, bootstrap_options(o));
    }
    all_ok = fit.status == fitting::FitStatus::kOk;
    output = orchestrator::fit_to_json(fit);
    records.push_back(orchestrator::fit_record(fit, o.sweep, job_ids, output));
    if (!context.json)
      std::cout << fit.summary() << "\n" << orchestrator::coefficient_table(fit);
  } else {
    throw InputError(
        "", "LAW", o.law, "unknown law", "expected isoflop, power, satexp, chinchilla or parcae");
  }

  if (context.json)
    std::cout << output.dump(2) << "\n";
  if (o.save) {
    if (!store) {
      store = std::make_unique<results::Store>(
          results::Store::open(context.db_path, results::Store::Mode::kCreate));
    }
    for (const auto& record : records) {
      const int64_t id = store->save_fit(record);
      std::cerr << "fit: saved " << record.law << " fit " << id << " in " << context.db_path
                << "\n";
    }
  }
  return all_ok ? 0 : 1;
}

}  // namespace

void add_fit_commands(CLI::App& app, CliContext& context) {
  auto o = std::make_shared<FitOptions>();
  CLI::App* cmd =
      app.add_subcommand("fit", "Fit a scaling law, with intervals, to a sweep or a CSV");
  cmd->add_option("law", o->law, "isoflop, power, satexp, chinchilla or parcae")
      ->required()
      ->check(CLI::IsMember({"isoflop", "power", "satexp", "chinchilla", "parcae"}));
  cmd->add_option("--sweep", o->sweep, "sweep name in the database");
  cmd->add_option("--csv", o->csv, "CSV file with a header row");
  cmd->add_option(
      "--bootstrap", o->bootstrap, "bootstrap resamples (isoflop default 2000; others 0)");
  cmd->add_option("--ci", o->ci, "confidence level of the percentile intervals")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the bootstrap and random starts")
      ->capture_default_str();
  cmd->add_flag("--json", context.json, "print one JSON document");
  cmd->add_flag(
      "--save", o->save, "store the fit (with the ids of the jobs it used) in the database");
  cmd->add_flag("--skip-bad-rows", o->skip_bad_rows, "skip and report CSV rows with bad values");
  cmd->add_option(
      "--x-col", o->x_col, "CSV column of x (power, satexp: T, isoflop: swept variable)");
  cmd->add_option("--y-col", o->y_col, "CSV column of y (power, satexp: loss)");
  cmd->add_option("--weight-col", o->weight_col, "CSV column of weights (power)");
  cmd->add_option("--budget-col", o->budget_col, "CSV column of the FLOP budget (isoflop)");
  cmd->add_option(
      "--loss-col", o->loss_col, "CSV column of the loss (isoflop, chinchilla, parcae)");
  cmd->add_option("--params-col", o->params_col, "CSV column of N (chinchilla)");
  cmd->add_option(
      "--tokens-col", o->tokens_col, "CSV column of D (chinchilla, parcae, isoflop check)");
  cmd->add_option("--flops-col", o->flops_col, "CSV column of C, for D = C / 6N (chinchilla)");
  cmd->add_option("--mu-col", o->mu_col, "CSV column of mu_rec (parcae)");
  cmd->add_option("--params-noncore", o->params_noncore, "N_noncore of N(mu) (parcae from a CSV)");
  cmd->add_option("--params-core", o->params_core, "N_core of N(mu) (parcae from a CSV)");
  cmd->add_option("--drop-top-losses",
                  o->drop_top_losses,
                  "chinchilla: keep rows with loss strictly below the K-th largest (Epoch: 5)");
  cmd->add_flag("--x-is-tokens", o->x_is_tokens, "isoflop: x is D, so D* = x*");
  cmd->add_option(
      "--predict", o->predict_budgets, "isoflop: budgets C at which to predict x* with CIs");
  cmd->callback([o, &context] { context.run = [o, &context] { return run_fit(*o, context); }; });
}

}  // namespace parcae::cli
