// From a sweep in the database to the inputs of the fitting library, and fits back to JSON.
//
// The fit and plot commands share this: which jobs count (done ones; diverged and failed ones are
// reported, not fitted), which loss a run contributes (its final validation loss at T = mu_rec,
// as the trainer's done event reports it), which D (the realised steps * batch_tokens, as
// parcae.md §11 decides for parametric fits), and F(mu, mu/2) for D* = C / F at a fitted mu*.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fitting/fitting.h"
#include "orchestrator/csv_table.h"
#include "results/results.h"
#include "sweeps/flop_model.h"

namespace parcae::orchestrator {

// One finished run, as the fits see it.
struct RunResult {
  std::string job_id;
  std::string cell;
  std::string budget_id;      // empty when the sweep is not isoFLOP
  double budget_flops = 0.0;  // nominal C; 0 when none
  int mean_recurrence = 1;
  bool fixed_depth = false;  // the `mu_rec=1 fixed` control: its own series, never a parabola point
  double realised_tokens = 0.0;         // steps * batch_tokens
  double loss = 0.0;                    // final validation loss at T = mu_rec (nats)
  std::map<int, double> loss_at_depth;  // the last evaluation of each test-time depth T
  sweeps::ModelConfig model;
  double params = 0.0;          // N, every parameter counted once
  double params_noncore = 0.0;  // N_noncore
  double params_core = 0.0;     // N_loop (core blocks, plus the adapter of the linear injection)
};

struct SweepRuns {
  std::vector<RunResult> runs;        // done jobs in plan order
  std::vector<std::string> not_used;  // "cell: state" for every job that is not done
};

// Throws InputError when the sweep does not exist.
SweepRuns collect_runs(const results::Store& store, const std::string& sweep);

// isoFLOP over mu_rec for a looped sweep: one IsoflopRun per done, non-fixed run, and
// F(mu, mu/2) of the sweep's model for D*. Throws InputError when the runs have no budgets or
// mix model shapes (one parabola family per model).
fitting::IsoflopFit fit_sweep_isoflop(const SweepRuns& runs, fitting::IsoflopOptions options);

// One saturating exponential per run over its final-step evaluations (runs with fewer than 4
// distinct depths are skipped).
struct TestTimeFits {
  std::vector<const RunResult*> runs;
  std::vector<fitting::SatExpFit> fits;
};
TestTimeFits fit_sweep_satexp(const SweepRuns& runs, const fitting::SatExpOptions& options);

// The Parcae training law over the done, non-fixed runs of one model shape.
fitting::ParcaeData parcae_data(const SweepRuns& runs, fitting::EffectiveParameters* params_of_mu);

// The Parcae unified law's points (§4.2): every non-fixed looped run at each test-time depth T of
// its last evaluation, with the run's index for the bootstrap. Throws InputError when the runs
// mix model shapes. The training law it starts from is fitted on parcae_data() of the same runs.
fitting::UnifiedData unified_data(const SweepRuns& runs,
                                  fitting::EffectiveParameters* params_of_mu);

// A sweep's done runs as a table with the columns of a CSV, so that every `fit --csv` column flag
// works on a sweep too. One row per run: job_id, cell, budget_id, budget_flops, mean_recurrence,
// fixed_depth (0 or 1), tokens (realised D), params (total N), params_noncore, params_core,
// params_effective (N(mu_rec) = N_noncore + mu_rec N_core), loss (at T = mu_rec). file reads
// "sweep NAME", so a bad value is reported as "sweep NAME: row 3, column ...".
CsvTable runs_table(const SweepRuns& runs, const std::string& sweep);

// The `fit --json` document of every law:
// {"law", "status", "message", "warnings", "n",
//  "coefficients": {"NAME": {"value": v, "se": s, "ci": [lo, hi]}, ...} (in the law's order),
//  "objective", "objective_per_point", "residual_std", "converged", "starts", "successes",
//  "ci_level", "bootstrap_replicates", "bootstrap_failed", "heldout_error_percent", "usable"}.
// NaN and infinity become null; "ci" is null where no interval was computed. residual_std is the
// root mean square of the per-point residuals, in the law's residual units (ln y, ln x*, log loss).
// converged: at least one start succeeded and the status is not failed.
nlohmann::ordered_json fit_to_json(const fitting::Fit& fit);

// fit_to_json plus "minima": [{"budget": C, "budget_id", "status", "message", "edge", "used",
// "runs", "x_star", "x_star_low", "x_star_high", "loss_star", "tokens_star", "c0", "c1", "c2",
// "x", "loss", "tokens_check_flagged"}, ...] (edge: the vertex lies outside the budget's grid,
// status extrapolated), "predictions" and "laws": {"x_star", "tokens_star", "loss_star"}.
nlohmann::ordered_json isoflop_to_json(const fitting::IsoflopFit& fit);

// Coefficient table for a terminal: name, value, SE, CI.
std::string coefficient_table(const fitting::Fit& fit);

// The FitRecord a --save stores: coefficients by name, intervals by name, the jobs used.
results::FitRecord fit_record(const fitting::Fit& fit,
                              const std::string& sweep,
                              const std::vector<std::string>& job_ids,
                              const nlohmann::ordered_json& details);

}  // namespace parcae::orchestrator
