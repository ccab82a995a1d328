// parcae::analysis: from runs to fits and figures, between the results database and the fitters.
//
// Runs come from a sweep in the database (collect_runs) or from any CSV (read_csv); either way
// they are a RunTable of named columns, so every choice below names a column and works the same
// on both. This library decides, in one place, which runs enter a fit (select_rows: the --where
// conditions, the default that leaves out the mu_rec = 1 controls, the grouping of --group-by),
// turns them into the plain inputs of parcae::fitting, and turns the results into JSON, text,
// the records that `fit --save` stores (with exactly the job ids that entered) and figures.
// parcae-scale's `fit` and `plot` are flag parsing and printing over fit_law() and draw_figures().
//
// Errors: input that cannot be used (an unknown column, a malformed condition, runs that differ
// in more than the swept variable) throws parcae::InputError naming the source, the flag or
// column and the value; outcomes of the data (a failed or unphysical fit) are results.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/figure.h"
#include "analysis/run_table.h"
#include "fitting/fitting.h"
#include "results/results.h"
#include "sweeps/flop_model.h"

namespace parcae::analysis {

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

// One finished run, as the fits see it.
struct RunResult {
  std::string job_id;
  std::string cell;
  std::string budget_id;      // empty when the sweep is not isoFLOP
  double budget_flops = 0.0;  // nominal C; 0 when none
  int mean_recurrence = 1;
  bool fixed_depth = false;  // every step runs exactly mu_rec loops: the control, or a transformer
  // A looped model's mu_rec = 1 control, as the sweep file named it: `1-fixed` (exactly T = 1)
  // or `1-poisson` (T = max(Poisson(1), 1), charged as T = 1). Both are left out of mu_rec fits
  // by default. A mu_rec = 1 written as a bare 1, or reached by a refinement round, samples as
  // `1-poisson` does but is a point of the axis, not a control.
  bool control = false;
  // "1-fixed", "1-poisson", "1", "4" (sweep_spec.h RecurrenceChoice); "-" for a transformer
  std::string recurrence;
  sweeps::FlopConvention flop_convention = sweeps::FlopConvention::kReference;  // how C became D
  uint64_t seed = 0;
  double realised_tokens = 0.0;  // steps * batch_tokens
  double flops_per_token = 0.0;  // F of the run's model at its mu_rec, mu_bwd, its convention
  double loss = 0.0;             // final validation loss at T = mu_rec (nats)
  std::map<int, double> loss_at_depth;  // the last evaluation of each test-time depth T
  std::string model_label;              // the sweep's label of the model (preset or name)
  sweeps::ModelConfig model;
  double params = 0.0;          // N, every parameter counted once
  double params_noncore = 0.0;  // N_noncore
  double params_core = 0.0;     // N_loop (core blocks, plus the adapter of the linear injection)
};

struct SweepRuns {
  std::string sweep;
  std::vector<RunResult> runs;        // done jobs in plan order
  std::vector<std::string> not_used;  // "cell: state" for every job that is not done
};

// Throws InputError when the sweep does not exist.
SweepRuns collect_runs(const results::Store& store, const std::string& sweep);

// A sweep's done runs as a table, one row per run in plan order, so that every column flag of a
// CSV works on a sweep too. Columns: job_id, cell, model, budget_id, budget_flops,
// mean_recurrence, mean_backward, fixed_depth (0/1), control (0/1: either mu_rec = 1 control of
// a looped model), recurrence ("1-fixed", "1-poisson", "1", "4", "-"), looped (0/1),
// flop_convention
// ("reference" or "paper"), seed, d_model, n_heads, head_dim, d_ff, n_layers (layers with
// distinct weights), n_prelude, n_recurrent, n_coda, context_length, flops_per_token, tokens
// (realised D), params (total N), params_noncore, params_core, params_effective
// (N(mu_rec) = N_noncore + mu_rec N_core) and loss (at T = mu_rec). file reads "sweep NAME".
RunTable runs_table(const SweepRuns& runs);

// ---------------------------------------------------------------------------------------------
// Choosing runs (one place for every fit and figure)
// ---------------------------------------------------------------------------------------------

// The column `name` stands for in `table`: itself when present, else the first present of its
// aliases (mu_rec: mean_recurrence; params: parameters_total; tokens: train_tokens; loss:
// loss_val; budget: budget_flops; N: params; D: tokens). Throws InputError naming `flag` and the
// closest column when none is present.
std::string resolve_column(const RunTable& table, const std::string& name, const std::string& flag);

// One --where condition: COLUMN OP VALUE with OP one of = == != < <= > >=. A value that reads as a
// number (true and false read as 1 and 0) is compared as a number; otherwise = and != compare text.
struct Condition {
  std::string column;
  std::string op;
  std::string value;
  std::string text;  // as written
};
// Throws InputError naming --where and the text when it is not COLUMN OP VALUE.
Condition parse_condition(const std::string& text);

struct Selection {
  std::vector<std::string> where;     // conditions, all of which must hold
  std::vector<std::string> group_by;  // columns; one fit per distinct combination of values
};

// Rows of one group, and the values of the group_by columns that define it.
struct RowGroup {
  std::vector<std::pair<std::string, std::string>> key;  // (column, value); empty: no grouping
  std::vector<size_t> rows;                              // 0-based rows of the table
  // "model=parcae-140m, mu_rec=2"; "" when not grouped.
  std::string label() const;
};

struct SelectedRows {
  std::vector<RowGroup> groups;    // in order of first appearance
  std::vector<std::string> notes;  // what the defaults left out, for stderr
};

// The rows where every condition holds, grouped. The mu_rec = 1 controls are left out by default
// (scaling-laws.md §2 step 1: they are their own series, never parabola points) and a note says
// how many: the rows with control = 1 when the table has that column (a sweep's, or its export),
// else, in a CSV that only says fixed_depth, which a transformer also has, the fixed-depth rows
// when x_column is the mean recurrence. A Poisson-sampled mu_rec = 1 that is not a control (a
// bare 1, a refinement round's) stays a point. A condition on fixed_depth, control or recurrence
// replaces that default. Throws InputError for an unknown
// column or a bad condition; no rows at all is an InputError too, naming the conditions.
SelectedRows select_rows(const RunTable& table,
                         const Selection& selection,
                         const std::string& x_column);

// ---------------------------------------------------------------------------------------------
// Fits
// ---------------------------------------------------------------------------------------------

// The rows a law reads: a CSV file, or a sweep's runs as a table (runs is then set and the rows
// follow runs->runs).
struct Source {
  RunTable table;
  const SweepRuns* runs = nullptr;
  std::string name() const;  // the CSV's path, or "sweep NAME"
};

// What `parcae-scale fit` asks for; each field is a flag of the same name.
struct FitRequest {
  std::string law;  // isoflop, power, satexp, chinchilla, parcae or unified
  std::string sweep;
  // Columns (names or aliases, see resolve_column). x is isoflop's swept variable (default
  // mu_rec), power's x and satexp's T.
  std::string x, y, weight, budget, loss, params, tokens, flops, mu, test_time, run;
  Selection selection;
  bool skip_bad_rows = false;
  int bootstrap = -1;  // -1: the law's default (isoflop: IsoflopOptions' 2,000; others none)
  double ci = 0.95;
  std::uint64_t seed = 42;
  bool x_is_tokens = false;
  double params_noncore = 0.0, params_core = 0.0;  // N(mu) for the Parcae laws from a CSV
  std::vector<double> predict_budgets;
  std::string flop_convention;  // isoflop: "reference" or "paper"; "" = as the runs were planned
  int drop_top_losses = 0;
  std::string variant = "gamma-one";
  bool floor_fixed = false;
  // The objective of a curve fit (satexp, chinchilla, parcae, unified): "" keeps the law's
  // default (log residuals; Huber 1e-3, or squares for satexp). residuals: "log" or "linear";
  // loss: "huber:DELTA" or "l2". Refused for power and isoflop, whose fits are closed-form OLS.
  std::string residuals;
  std::string loss_function;
  std::function<void(const std::string&)> on_note;  // lines for stderr (skipped rows, ...)
  fitting::ProgressCallback on_progress;            // multi-start progress of long fits
};

// What one law produced.
struct FitOutput {
  nlohmann::ordered_json json;              // the --json document
  std::string text;                         // the table printed without --json
  std::vector<results::FitRecord> records;  // what --save stores, one per fit
  bool ok = true;                           // every fit ok (satexp: or flat): exit code 0
};

// Fits request.law to the source's rows. Throws InputError for bad input (exit code 2).
FitOutput fit_law(const FitRequest& request, const Source& source);

// ---------------------------------------------------------------------------------------------
// isoFLOP over any swept variable (scaling-laws.md §2)
// ---------------------------------------------------------------------------------------------

// How D* = C / F(x*) is found for the fitted variable.
enum class TokensRule {
  kNone,          // no F and x is not D: D* not computed
  kFlopLine,      // x is mu_rec of one model shape: F(mu, mu/2) of flop_model.h, exact
  kXIsTokens,     // x is D: D* = x*
  kInterpolated,  // ln F against ln x, piecewise linear through the runs' (x, F), linear beyond
};
const char* to_string(TokensRule rule);  // a phrase for reports

struct IsoflopRequest {
  std::string x = "mu_rec";  // the swept variable's column
  std::string loss;          // default: loss (alias loss_val)
  std::string budget;        // default: budget_flops; runs are grouped by budget_id when present
  std::string tokens;        // optional: D of each run, for the ln-D cross-check
  bool x_is_tokens = false;
  Selection selection;
  bool skip_bad_rows = false;
  fitting::IsoflopOptions options;  // flops_per_token and x_is_tokens are set here
  // Report C, and so the x* and D* laws, under this FLOP convention (docs/flops.md); nullopt:
  // the one the runs were planned under. When it differs, each budget is re-costed at its
  // optimum: the parabolas are fitted as planned, then C' = C * F'(x*) / F(x*) is the FLOPs
  // the optimal run (D* = C / F(x*) tokens, unchanged) costs under the other convention, and
  // the laws are fitted against C'. Needs a sweep (the runs' models); refused for a CSV.
  std::optional<sweeps::FlopConvention> flop_convention;
};

struct IsoflopGroupFit {
  RowGroup group;
  fitting::IsoflopFit fit;
  std::vector<std::string> job_ids;  // the runs that entered, sorted (empty for a CSV without ids)
  TokensRule tokens_rule = TokensRule::kNone;
  std::function<double(double x)> flops_per_token;  // F(x) of the rule; empty for none or D
  // The convention of the fit's C: the runs' own, or the requested one when re-costed. A CSV
  // says nothing of its convention: reported as the reference, recosted false.
  sweeps::FlopConvention flop_convention = sweeps::FlopConvention::kReference;
  bool recosted = false;
};

struct IsoflopAnalysis {
  std::string x_column;  // the resolved column of x
  std::vector<IsoflopGroupFit> groups;
  std::vector<std::string> notes;
};

// Selects, groups and fits. Throws InputError when a group's runs at one budget and one x differ
// in another design column (model, mu_rec, d_model, ...): those are different series, and the
// message names the column to --group-by or --where on.
IsoflopAnalysis analyse_isoflop(const Source& source, const IsoflopRequest& request);

// The isoFLOP fit of a sweep's runs over x, as `fit isoflop --sweep NAME --x X` makes it, with
// `bootstrap` resamples drawn from `seed`; nullopt while no finished run has a budget. Throws as
// analyse_isoflop does.
std::optional<IsoflopAnalysis> analyse_sweep_isoflop(const SweepRuns& runs,
                                                     const std::string& x,
                                                     int bootstrap,
                                                     std::uint64_t seed);

// The swept variable of a sweep's isoFLOP fit: "mu_rec" when the mean recurrence varies within a
// budget (among the runs that are not fixed-depth controls), else "params".
std::string swept_variable(const SweepRuns& runs);

// ---------------------------------------------------------------------------------------------
// Live fit and refinement rounds (docs/cli.md, "refine")
// ---------------------------------------------------------------------------------------------

// The exponent of x* = k C^a over a sweep's finished runs, as `sweep status` shows it while cells
// run. status is "ok" (a and its 95% bootstrap interval known), or "waiting" with the reason in
// message (too few finished budgets, an edge minimum, ...).
struct LiveFit {
  std::string x;  // the swept variable's column (swept_variable, or the refine axis)
  std::string status = "waiting";
  std::string message;
  double exponent = fitting::kNotComputed;  // a
  double exponent_ci_low = fitting::kNotComputed;
  double exponent_ci_high = fitting::kNotComputed;
  int runs = 0;                      // finished runs that entered the fit
  int budgets = 0;                   // budgets whose interior minimum entered the power law
  std::vector<std::string> job_ids;  // the runs it rests on, sorted
  // Per budget: id, status, x* and whether it entered ("1e12 ok x*=3.1", for the text view).
  std::vector<std::string> minima;
  // Why the fit is not usable yet (fitting::Fit::usability_problems: too many failed bootstrap
  // replicates, ...), as `fit isoflop` lists them after "usable: no"; empty when it is.
  std::vector<std::string> problems;
};

// Fits the isoFLOP law to `runs` along `x` ("" = swept_variable(runs)) with a bootstrap of
// `bootstrap` replicates (seed 42), as `fit isoflop` and refinement do, so that all three quote
// one interval. Never throws for data that cannot be fitted: that is a status.
LiveFit live_fit(const SweepRuns& runs,
                 const std::string& x = "",
                 int bootstrap = fitting::IsoflopOptions{}.bootstrap_resamples);
nlohmann::ordered_json to_json(const LiveFit& fit);

// What decide_refinement() reads besides the runs.
struct RefineInput {
  nlohmann::json document;  // the sweep's document as planned, without refinement rounds
  std::string file;         // names it in messages
  std::vector<sweeps::RefineRound> rounds;  // rounds that added cells so far, in order
  double flops_planned = 0.0;               // FLOPs of every job of the sweep as planned
  // Replicates of the exponent's interval (seed 42), as `fit isoflop` draws them.
  int bootstrap = fitting::IsoflopOptions{}.bootstrap_resamples;
};

// The next round of a refining sweep, from its finished runs (docs/cli.md): for each budget whose
// lowest observed loss (mean over seeds) lies at an edge of its values, two geometric steps of
// refine.step beyond that edge (mu_rec >= 1, integers, values not already planned); when every
// budget is bracketed but a's interval is wider than refine.until.exponent_ci_width, a budget one
// budget-spacing above the largest, centred on the fitted x*(C), and the geometric midpoints of
// the two gaps next to the least certain interior minimum. It stops ("stop", no additions) when
// the interval is narrow enough and every minimum is bracketed, after refine.max_rounds rounds,
// when the round would take the sweep past refine.max_flops, or when nothing is left to add. The
// round's cells are planned (without data) to count their FLOPs and GPU-hours. Deterministic: the
// same runs give the same round. Throws InputError when the document has no "refine" block.
sweeps::RefineRound decide_refinement(const SweepRuns& runs, const RefineInput& input);

// decide_refinement() for a sweep of the store: its finished runs, stored document, recorded
// rounds that added cells and planned FLOPs. Throws InputError for an unknown sweep or one
// without a "refine" block.
sweeps::RefineRound next_refinement(const results::Store& store, const std::string& sweep);

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

// The `fit --json` document of every law:
// {"law", "status", "message", "warnings", "n",
//  "coefficients": {"NAME": {"value": v, "se": s, "ci": [lo, hi]}, ...} (in the law's order),
//  "objective", "objective_per_point", "residual_std", "converged", "starts", "successes",
//  "ci_level", "bootstrap_replicates", "bootstrap_failed", "heldout_error_percent", "usable",
//  "usability_problems"}.
// NaN and infinity become null; "ci" is null where no interval was computed.
nlohmann::ordered_json fit_to_json(const fitting::Fit& fit);

// fit_to_json plus "minima": [{"budget", "budget_id", "status", "message", "edge", "used", "runs",
// "x_star", "x_star_low", "x_star_high", "loss_star", "tokens_star", "c0", "c1", "c2", "x", "loss",
// "tokens_check_flagged"}, ...], "predictions" and "laws": {"x_star", "tokens_star", "loss_star"}.
nlohmann::ordered_json isoflop_to_json(const fitting::IsoflopFit& fit);

// The summary line, the coefficient table (name, value, SE, CI), the message, warnings, and
// "usable: yes" or "usable: no" with each reason.
std::string fit_text(const fitting::Fit& fit);

// The FitRecord a --save stores: coefficients by name, intervals by name, the jobs used.
results::FitRecord fit_record(const fitting::Fit& fit,
                              const std::string& sweep,
                              const std::vector<std::string>& job_ids,
                              const nlohmann::ordered_json& details);

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

// What `parcae-scale plot` asks for.
struct PlotRequest {
  std::string kind = "all";  // isoflop, frontier, test-time, curves or all
  std::string out_dir;
  std::vector<std::string> formats = {"png", "svg"};
  std::string x = "mu_rec";  // isoflop and frontier: the swept variable
  Selection selection;
  int bootstrap = fitting::IsoflopOptions{}.bootstrap_resamples;
  std::uint64_t seed = 42;
  double ci = 0.95;
  // Dashed reference slopes through the fitted x* and D* lines; NaN draws none. When not set, the
  // paper's mu* ~ C^0.40 and D* ~ C^0.78 are drawn for x = mu_rec and nothing for other x.
  bool reference_slopes_set = false;
  double reference_x_slope = fitting::kNotComputed;
  double reference_tokens_slope = fitting::kNotComputed;
};

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

// What `parcae-scale report` asks for.
struct ReportRequest {
  std::string sweep;    // a sweep of the store
  std::string out_dir;  // the page is <out_dir>/index.html
  // The swept variable of the isoFLOP fit and figures; "auto": mu_rec when it varies within a
  // budget, else params.
  std::string x = "auto";
  int bootstrap = fitting::IsoflopOptions{}.bootstrap_resamples;
  std::uint64_t seed = 42;
  std::string generator = "parcae-scale";  // named in the page, with its version
};

struct ReportOutput {
  std::string path;                // the page written
  int figures = 0;                 // figures in it
  std::vector<std::string> notes;  // what was left out and why, for stderr
};

// Writes one self-contained HTML page of the sweep: the plan, its provenance (the stored sweep
// file, trainer versions, devices, hosts), every fit with intervals and warnings (the isoFLOP fit
// the figures show, the test-time law of each run, the fits saved in the store), the figures of
// `plot all` as inline SVG, and one row per cell. The page loads nothing: no script, no link, no
// font. A sweep without finished runs gets the plan and provenance and says why the rest is
// missing. Throws InputError for an unknown sweep, parcae::Error when a file cannot be written or
// gnuplot fails.
ReportOutput write_report(const results::Store& store, const ReportRequest& request);

// [P]'s exponents of the compute-optimal frontier (scaling-laws.md §9): mu* ~ C^0.40, D* ~ C^0.78.
inline constexpr double kPaperMuExponent = 0.40;
inline constexpr double kPaperTokensExponent = 0.78;

// Draws the figures of request.kind into request.out_dir and returns the images written. Throws
// InputError when the sweep has no data for the kind, parcae::Error when gnuplot fails.
std::vector<std::string> draw_figures(const results::Store& store,
                                      const SweepRuns& runs,
                                      const PlotRequest& request);

}  // namespace parcae::analysis
