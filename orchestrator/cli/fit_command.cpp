// `parcae-scale fit LAW (--sweep NAME | --csv FILE)`: scaling laws with intervals, from a sweep in
// the database or from any CSV. Flags map onto analysis::FitRequest; analysis::fit_law() selects
// the runs, fits and reports; this file prints, saves and chooses the exit code.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "analysis/analysis.h"
#include "orchestrator/cli/cli_context.h"
#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

struct FitFlags {
  analysis::FitRequest request;
  std::string csv;
  bool save = false;
};

// Progress of a long multi-start on stderr, once it has run for a second: redrawn in place on a
// terminal, one line per tenth otherwise.
fitting::ProgressCallback progress_printer() {
  const auto start = std::chrono::steady_clock::now();
  const bool terminal = ::isatty(STDERR_FILENO) != 0;
  auto last_tenth = std::make_shared<int>(-1);
  return [start, terminal, last_tenth](int done, int total) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed < 1.0 || total <= 0)
      return;
    const int tenth = done * 10 / total;
    if (terminal) {
      std::cerr << fmt::format("\rfit: {} of {} starts ({:.0f} s)", done, total, elapsed)
                << (done == total ? "\n" : "") << std::flush;
    } else if (tenth != *last_tenth) {
      *last_tenth = tenth;
      std::cerr << fmt::format("fit: {} of {} starts ({:.0f} s)\n", done, total, elapsed);
    }
  };
}

int run_fit(FitFlags& flags, const CliContext& context) {
  analysis::FitRequest& request = flags.request;
  if (!request.sweep.empty() && !flags.csv.empty())
    throw InputError("", "--sweep/--csv", "(both)", "expected exactly one data source");
  std::unique_ptr<results::Store> store;
  analysis::SweepRuns runs;
  analysis::Source source;
  if (flags.csv.empty()) {
    store = std::make_unique<results::Store>(
        results::Store::open(context.db_path, results::Store::Mode::kExisting));
    request.sweep = store->resolve_sweep(request.sweep);
    runs = analysis::collect_runs(*store, request.sweep);
    for (const auto& skipped : runs.not_used)
      std::cerr << "fit: not used: " << skipped << "\n";
    source.runs = &runs;
    source.table = analysis::runs_table(runs);
  } else {
    source.table = analysis::read_csv(flags.csv);
  }
  request.on_note = [](const std::string& line) { std::cerr << "fit: " << line << "\n"; };
  request.on_progress = progress_printer();
  const analysis::FitOutput output = analysis::fit_law(request, source);

  if (context.json)
    print_json(output.json);
  else
    std::cout << output.text;
  if (flags.save) {
    if (!store) {
      store = std::make_unique<results::Store>(
          results::Store::open(context.db_path, results::Store::Mode::kCreate));
    }
    for (const auto& record : output.records) {
      const int64_t id = store->save_fit(record);
      std::cerr << "fit: saved " << record.law << " fit " << id << " (" << record.job_ids.size()
                << " jobs) in " << context.db_path << "\n";
    }
  }
  return output.ok ? 0 : 1;
}

}  // namespace

void add_fit_commands(CLI::App& app, CliContext& context) {
  auto flags = std::make_shared<FitFlags>();
  analysis::FitRequest& r = flags->request;
  CLI::App* cmd =
      app.add_subcommand("fit", "Fit a scaling law, with intervals, to a sweep or a CSV");
  cmd->add_option("law", r.law, "isoflop, power, satexp, chinchilla, parcae or unified")
      ->required()
      ->check(CLI::IsMember({"isoflop", "power", "satexp", "chinchilla", "parcae", "unified"}));
  cmd->add_option("--sweep", r.sweep, "sweep name (default: the database's only sweep)");
  cmd->add_option("--csv", flags->csv, "CSV file with a header row");
  cmd->add_option("--where",
                  r.selection.where,
                  "keep the runs where COLUMN OP VALUE holds (=, !=, <, <=, >, >=); repeat to "
                  "require several, e.g. --where model=parcae-140m --where mu_rec>=2");
  cmd->add_option("--group-by",
                  r.selection.group_by,
                  "isoflop: one fit per value of these columns (e.g. model, mu_rec, d_model)");
  cmd->add_option("--bootstrap",
                  r.bootstrap,
                  "bootstrap resamples (isoflop default 2000 within budgets; others 0: none)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ci", r.ci, "confidence level of the percentile intervals")
      ->capture_default_str();
  cmd->add_option("--seed", r.seed, "seed of the bootstrap and random starts")
      ->capture_default_str();
  cmd->add_flag("--json", context.json, "print one JSON document");
  cmd->add_flag(
      "--save", flags->save, "store the fit (with the ids of the jobs it used) in the database");
  cmd->add_flag("--skip-bad-rows", r.skip_bad_rows, "skip and report rows with bad values");
  cmd->add_option("--x,--x-col",
                  r.x,
                  "isoflop: the swept variable, a column or mu_rec, params, tokens, d_model "
                  "(default mu_rec); power: x; satexp: T");
  cmd->add_option("--y,--y-col", r.y, "column of y (power; satexp: the loss)");
  cmd->add_option("--weight-col", r.weight, "column of weights (power)");
  cmd->add_option("--budget-col",
                  r.budget,
                  "column of the FLOP budget C (isoflop; parcae: the held-out largest budget)");
  cmd->add_option(
      "--loss-col", r.loss, "column of the loss (isoflop, chinchilla, parcae, unified)");
  cmd->add_option("--params-col", r.params, "column of N (chinchilla)");
  cmd->add_option("--tokens-col",
                  r.tokens,
                  "column of D (chinchilla, parcae, unified; isoflop: the ln-D check)");
  cmd->add_option("--flops-col", r.flops, "column of C, for D = C / 6N (chinchilla)");
  cmd->add_option("--mu-col", r.mu, "column of mu_rec (parcae, unified)");
  cmd->add_option("--test-time-col", r.test_time, "column of the test-time depth T (unified)");
  cmd->add_option("--run-col", r.run, "column numbering the runs, for the bootstrap (unified)");
  cmd->add_option(
      "--params-noncore", r.params_noncore, "N_noncore of N(mu) (parcae, unified from a CSV)");
  cmd->add_option("--params-core", r.params_core, "N_core of N(mu) (parcae, unified from a CSV)");
  cmd->add_option("--drop-top-losses",
                  r.drop_top_losses,
                  "chinchilla: keep rows with loss strictly below the K-th largest (Epoch: 5)");
  cmd->add_flag("--x-is-tokens", r.x_is_tokens, "isoflop: x is D, so D* = x*");
  cmd->add_option("--flop-convention",
                  r.flop_convention,
                  "isoflop: report C, x* and D* laws under this FLOP convention, re-costing "
                  "each budget at its optimum (docs/flops.md); default: as planned")
      ->check(CLI::IsMember({"reference", "paper"}));
  cmd->add_option(
      "--predict", r.predict_budgets, "isoflop: budgets C at which to predict x* with CIs");
  cmd->add_option("--residuals",
                  r.residuals,
                  "satexp, chinchilla, parcae, unified: residuals of ln L (log, the default) or "
                  "of L (linear)")
      ->check(CLI::IsMember({"log", "linear"}));
  cmd->add_option("--loss",
                  r.loss_function,
                  "satexp, chinchilla, parcae, unified: huber:DELTA or l2 (defaults: satexp l2, "
                  "the others huber:1e-3)");
  cmd->add_option("--variant",
                  r.variant,
                  "unified: the test-time term Z exp(-z T/mu) (gamma-one), Z exp(-z T mu^-gamma) "
                  "(learned-gamma) or Z exp(-z T) (no-mu)")
      ->check(CLI::IsMember({"gamma-one", "learned-gamma", "no-mu"}))
      ->capture_default_str();
  cmd->add_flag("--floor-fixed",
                r.floor_fixed,
                "unified: hold E, X, x, Y, y at the training-law fit and fit Z, z only");
  cmd->callback(
      [flags, &context] { context.run = [flags, &context] { return run_fit(*flags, context); }; });
}

}  // namespace parcae::cli
