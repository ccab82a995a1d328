// parcae::fitting: the scaling laws of the study, fitted from plain vectors into result structs.
//
// This header is the manual of the library. Each law follows ../shared/spec/scaling-laws.md (cited
// below as §N) exactly; docs/fitting.md explains the methods, defaults and decisions at length.
// The library knows nothing of SQLite, files or flags: callers turn rows into the input structs
// below and results into tables or JSON. Anything it needs from the FLOP model (F(mu, mu/2) to
// turn a budget into tokens) is passed in as a function or as plain numbers.
//
// Laws, each a function of plain inputs returning a struct derived from Fit:
//   fit_power_law       y = k * x^a by least squares in log-log space (§2 step 7)
//   fit_isoflop         per-budget parabolas in ln x, minima, power laws, bootstrap CIs (§2)
//   fit_chinchilla      L = E + A N^-alpha + B D^-beta, Huber on log loss, 4,500 starts (§3, §7)
//   fit_parcae_law      the same with N = N(mu) = N_noncore + mu * N_core, plus 500 starts (§4.1)
//   compute_optimal_frontier   mu*(C), D*(C), L*(C) from a fitted training law (§4.1)
//   fit_unified_law     the training law plus Z exp(-z T / mu), and its variants (§4.2)
//   fit_satexp          L(T) = L_inf + Z exp(-z T) and the comparison forms (§5)
//   bootstrap_*         resample runs, refit, SE and percentile CIs (§6)
//
// Conventions: ln is the natural log; losses are in nats; budgets C in FLOPs; tokens D and
// parameters N are counts; mu is the mean recurrence mu_rec; T is the test-time recurrence.
//
// Errors: input that cannot be fitted (mismatched sizes, a non-positive value where a logarithm is
// taken, a NaN where the method has no rule for dropping it, options out of range) throws
// InputError, whose message names the input, for example "loss[17] = -0.5: expected a positive,
// finite loss in nats". Outcomes of the data are never thrown: a parabola that opens downwards, a
// minimum off the grid, a flat test-time curve, an optimizer that finds no stationary point all
// come back as a Fit with a status and a message. Check is_usable() before quoting a number.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parcae::fitting {

inline constexpr double kNotComputed = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Errors, status and the fields every fit returns (§1)
// ---------------------------------------------------------------------------------------------

// Thrown for input that cannot be fitted. what() reads "INPUT = VALUE: EXPECTED", or
// "INPUT: PROBLEM" when there is no single value to show; input() is the name alone
// ("loss[17]", "runs", "options.bootstrap_resamples").
class InputError : public std::invalid_argument {
 public:
  InputError(std::string input, std::string problem);
  InputError(std::string input, double value, std::string expected);
  const std::string& input() const { return input_; }

 private:
  std::string input_;
};

// ok: the fit is what it claims. no_minimum: a parabola with c2 <= 0. extrapolated: a vertex
// outside the sampled range. flat: a test-time curve with no visible decay (Z < 1e-6, or less than
// 1e-6 nats of decay over the sampled T). failed: no start succeeded, or too little data for the
// method (the message says which). unphysical (DECISION, beyond §1's five): the optimizer found
// its optimum, but the law's parameters there leave their physical range (a negative exponent, an
// irreducible loss E of about zero, a derived quantity that is not finite), so the numbers
// describe no scaling; the message lists each parameter and its range.
enum class FitStatus { kOk, kNoMinimum, kExtrapolated, kFlat, kFailed, kUnphysical };

// "ok", "no_minimum", "extrapolated", "flat", "failed" (the spellings of §1), "unphysical".
const char* to_string(FitStatus status);

// Where a curve fit measures its residuals: ln Lhat - ln L (kLog, the default of every law here,
// §1 and §5) or Lhat - L (kLinear, as scipy.optimize.curve_fit and most published fits of
// accuracy against loss do).
enum class ResidualScale { kLog, kLinear };
// What each residual costs: Huber's H(r) of §1 with the law's delta, or r^2 / 2 (kSquares:
// ordinary least squares; the factor 1/2 does not move the optimum).
enum class Penalty { kHuber, kSquares };
const char* to_string(ResidualScale scale);  // "log", "linear"
const char* to_string(Penalty penalty);      // "huber", "l2"

// One reported quantity: a fitted coefficient or a derived one (a_N, a prediction). se is the
// standard error: from OLS or the delta method where the law has one (power, isoflop, satexp),
// the SD over replicates once a bootstrap over runs has filled it (chinchilla, parcae, unified).
// ci_low and ci_high are bootstrap percentile limits at Fit::ci_level. A field that was not
// computed is NaN; an SE that the data cannot bound (a flat direction) is +infinity.
struct Coefficient {
  std::string name;  // the spec's symbol: "E", "A", "alpha", "a", "k18", "y_inf", "Z", ...
  double value = kNotComputed;
  double se = kNotComputed;
  double ci_low = kNotComputed;
  double ci_high = kNotComputed;
};

// What every fit returns (§1). Derived structs add the law's own fields.
struct Fit {
  std::string law;  // "power", "isoflop", "chinchilla", "parcae", "unified", "satexp"
  FitStatus status = FitStatus::kFailed;
  std::string message;                // why the status is what it is; empty for a plain ok
  std::vector<std::string> warnings;  // things to read before quoting (discarded replicates...)

  std::vector<Coefficient> coefficients;      // fixed order per law, documented with each law
  double objective = kNotComputed;            // J, as the law defines it (Huber sum, RSS, ...)
  double objective_per_point = kNotComputed;  // J / n
  int n = 0;                                  // points in the objective
  std::vector<double> residuals;              // one per point, in input order (see each law)
  int starts = 0;                             // optimizer starts tried (1 for closed forms)
  int successes = 0;                          // starts that met the success rule of §1

  // Validation (§6). A bootstrap fills ci_level, the two counts and the coefficients' se and CIs;
  // the caller records the held-out error it measured with heldout_relative_error_percent().
  double ci_level = kNotComputed;
  int bootstrap_replicates = 0;
  int bootstrap_failed = 0;  // replicates with no successful refit, or discarded (§2 step 8)
  double heldout_error_percent = kNotComputed;
  // True for the parametric laws (chinchilla, parcae, unified), which §6 calls usable only with a
  // bootstrap and a held-out error.
  bool requires_validation = false;

  // The coefficient called name; throws InputError if the law has no such coefficient.
  const Coefficient& coefficient(std::string_view name) const;
  double value(std::string_view name) const { return coefficient(name).value; }

  // One line for logs: law, status, n, J, starts and the main coefficients.
  std::string summary() const;
  // Several lines: the summary, a table of coefficients with SE and CI, the message, warnings.
  std::string report() const;

  // §6: status ok, every coefficient value finite, a bootstrap failure rate <= 5% where a
  // bootstrap ran, and, where requires_validation, a bootstrap and a held-out error on record.
  bool is_usable() const { return usability_problems().empty(); }
  // Why is_usable() is false, one short sentence each ("status unphysical: alpha = -0.006 ...",
  // "no bootstrap: run one for intervals"); empty for a usable fit.
  std::vector<std::string> usability_problems() const;
};

// Mean relative error in percent, (100/m) * sum |predicted_i - measured_i| / measured_i (§6).
// Throws InputError for sizes that differ, no points, or a measured value that is not positive.
double heldout_relative_error_percent(const std::vector<double>& predicted,
                                      const std::vector<double>& measured);

// Huber loss of §1 with threshold delta: r^2/2 for |r| <= delta, else delta * (|r| - delta/2).
double huber(double residual, double delta = 1e-3);

// ---------------------------------------------------------------------------------------------
// Power law y = k * x^a (§2 step 7)
// ---------------------------------------------------------------------------------------------

// Fitted as ln y = ln k + a ln x by (weighted) ordinary least squares.
// coefficients: "a", "k", "ln_k" (se from OLS; for k by the delta method, se(k) = k * se(ln k)).
// objective: the weighted residual sum of squares in ln y; residuals: ln y_i - (ln k + a ln x_i).
struct PowerLawFit : Fit {
  double exponent = kNotComputed;       // a
  double log_prefactor = kNotComputed;  // ln k
  double exponent_se = kNotComputed;    // sqrt(s^2 (X'WX)^-1)_aa, s^2 = RSS_w / (n - 2)
  double log_prefactor_se = kNotComputed;
  double covariance = kNotComputed;  // cov(a, ln k)
  double r_squared = kNotComputed;   // weighted R^2 in log space

  // k * x^a.
  double predict(double x) const { return std::exp(log_prefactor + exponent * std::log(x)); }
  // The prefactor for x measured in units of x_unit: k * x_unit^a (k18 = prefactor_at(1e18)).
  double prefactor_at(double x_unit) const { return predict(x_unit); }
  // Its delta-method standard error, from the covariance of (a, ln k).
  double prefactor_at_se(double x_unit) const;
};

// Needs x.size() == y.size() >= 3, every x and y finite and > 0, at least two distinct x, and
// weights either empty (unweighted) or one finite positive weight per point; else InputError.
// Always returns status ok: OLS has no failure mode once the input is valid.
PowerLawFit fit_power_law(const std::vector<double>& x,
                          const std::vector<double>& y,
                          const std::vector<double>& weights = {});

// ---------------------------------------------------------------------------------------------
// isoFLOP analysis (§2, Approach 2 of Hoffmann et al.)
// ---------------------------------------------------------------------------------------------

// One finished run of an isoFLOP sweep.
struct IsoflopRun {
  std::string budget_id;               // runs with the same id form one budget (one parabola)
  double budget_flops = kNotComputed;  // nominal C in FLOPs, > 0, the same for every run of an id
  double x = kNotComputed;             // the swept variable (mu_rec, N or D), > 0
  double loss = kNotComputed;    // final validation loss, nats; NaN or inf = diverged, dropped
  double tokens = kNotComputed;  // the run's D, for the ln-D cross-check of §2 step 6; optional
};

// Residual bootstrap inside each budget (§2 step 8, the default), or runs drawn with replacement
// inside each budget (case resampling).
enum class BootstrapScheme { kResidual, kCase };

struct IsoflopOptions {
  // Points per parabola: -1 applies §2 step 2 (every point of a budget, or the argmin and 3
  // neighbours on each side in sorted ln x when a budget has more than 7 points); k >= 1 always
  // keeps the argmin and k neighbours on each side.
  int window_neighbours = -1;
  // F(x) in FLOPs per token, so that D* = C / F(x*) (§2 step 6): F(mu, mu/2) for Parcae, 6 * N
  // for a 6N family with x = N. Empty: D* is x* when x_is_tokens, else not computed. The
  // bootstrap calls it from several threads at once, so it must not modify shared state.
  std::function<double(double x)> flops_per_token;
  bool x_is_tokens = false;
  // Fit the power laws over extrapolated minima too (§2 step 4 leaves them out by default).
  bool include_extrapolated = false;

  int bootstrap_resamples = 2000;  // B of §2 step 8; 0 skips the bootstrap
  BootstrapScheme bootstrap_scheme = BootstrapScheme::kResidual;
  std::uint64_t seed = 42;
  double ci_level = 0.95;                  // percentile CI, (1 - ci_level)/2 and (1 + ci_level)/2
  std::vector<double> prediction_budgets;  // C at which x*(C) = k C^a is predicted, with CIs
  int threads = 0;  // 0: std::thread::hardware_concurrency(); results do not depend on it

  // Throws InputError naming every bad field at once.
  void validate() const;
};

// The parabola of one budget and its minimum (§2 steps 3-6).
struct BudgetMinimum {
  std::string budget_id;
  double budget_flops = kNotComputed;
  // ok, no_minimum (c2 <= 0), extrapolated (u* outside [min u, max u]) or failed (fewer than 3
  // distinct x among the finite-loss runs).
  FitStatus status = FitStatus::kFailed;
  std::string message;
  int runs = 0;                   // runs of this budget with a finite loss
  int dropped_runs = 0;           // runs dropped for a non-finite loss
  std::vector<double> x;          // the window, sorted by x
  std::vector<double> loss;       // the window's losses
  std::vector<double> residuals;  // loss - parabola on the window
  double c0 = kNotComputed;       // L = c0 + c1 u + c2 u^2, u = ln x (uncentred)
  double c1 = kNotComputed;
  double c2 = kNotComputed;
  double rss = kNotComputed;
  double log_x_star = kNotComputed;  // u* = -c1 / (2 c2)
  double x_star = kNotComputed;
  double loss_star = kNotComputed;    // c0 - c1^2 / (4 c2)
  double sigma_log_x = kNotComputed;  // delta-method sigma_u; needs >= 4 points
  double x_star_low = kNotComputed;   // e^(u* - sigma_u), the 1-sigma band
  double x_star_high = kNotComputed;  // e^(u* + sigma_u)
  double tokens_star = kNotComputed;  // D* = C / F(x*) (or x* when x is tokens)
  // Cross-check of step 6: the vertex of a parabola of loss in ln D over the same window.
  double tokens_star_check = kNotComputed;
  double sigma_log_tokens_check = kNotComputed;
  double tokens_check_log_difference = kNotComputed;  // ln D*(from x) - ln D*(from ln D)
  bool tokens_check_flagged = false;                  // |difference| > 2 sigma of the ln-D vertex
  bool used = false;                                  // entered the power laws
};

// x*(C) = k C^a at a requested budget, with its bootstrap percentile interval, and the same for
// D*(C) from the D* power law (NaN when D* is not computed).
struct IsoflopPrediction {
  double budget_flops = kNotComputed;
  double x_star = kNotComputed;
  double ci_low = kNotComputed;
  double ci_high = kNotComputed;
  double tokens_star = kNotComputed;
  double tokens_ci_low = kNotComputed;
  double tokens_ci_high = kNotComputed;
};

// coefficients: "a", "k", "k18", "ln_k" of x* = k C^a; "a_D", "k18_D" of D*; "a_L", "k18_L" of L*
// (the D* and L* laws only when computed). se from OLS (k18 by the delta method), CIs from the
// bootstrap. objective, residuals and n are those of the x* power law (ln x*, one per used
// budget). status: ok when at least 3 budgets entered the power law, else failed.
struct IsoflopFit : Fit {
  std::vector<BudgetMinimum> budgets;  // sorted by budget_flops
  PowerLawFit x_star_law;              // x* against C
  PowerLawFit tokens_star_law;         // D* against C (status failed when D* is not computed)
  PowerLawFit loss_star_law;           // L* against C
  int dropped_runs = 0;                // runs with a non-finite loss, over all budgets
  int bootstrap_discarded = 0;         // replicates with some used budget at c2 <= 0
  std::vector<IsoflopPrediction> predictions;
};

// Groups runs by budget_id, fits each budget's parabola, and fits x*, D*, L* against C over the
// budgets with status ok (plus extrapolated ones if asked). Throws InputError for an empty input,
// an x, C or finite loss that is not positive, an empty budget_id, or two different C under one
// id. Too few points, c2 <= 0, an edge minimum and fewer than 3 usable budgets are statuses.
IsoflopFit fit_isoflop(const std::vector<IsoflopRun>& runs, const IsoflopOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Parametric training laws: Chinchilla (§3, §7) and Parcae (§4.1)
// ---------------------------------------------------------------------------------------------

// The optimizer settings of §1: L-BFGS (Ceres GradientProblemSolver) with analytic gradients.
// The first solve raises glog's minloglevel to ERROR for the process, so that Ceres's line-search
// warnings never reach stderr (a library does not print; outcomes are in the result).
struct MinimizerOptions {
  int max_iterations = 10000;
  double function_tolerance = 1e-15;   // relative change of J
  double gradient_tolerance = 1e-14;   // max-norm of the gradient
  double parameter_tolerance = 1e-14;  // relative change of the parameters
  // A start also succeeds when the solver reports no convergence but the max-norm of the gradient
  // at its point is at most this (§1: tight tolerances make the line search give up at optima).
  double success_gradient = 1e-8;
  // SciPy's L-BFGS-B rule, as well: converged once an iteration lowers J by at most this times
  // max(|J before|, |J after|, 1) (factr * eps; SciPy's default is 1e7 * 2.2e-16 = 2.2e-9).
  // 0 leaves only Ceres's relative rule above. For J < 1 this is an absolute change of J.
  double scipy_function_tolerance = 0.0;
};

// theta = (a, b, e, alpha, beta) of §3 with A = e^a, B = e^b, E = e^e.
struct TrainingLawParameters {
  double log_A = 0.0;  // a
  double log_B = 0.0;  // b
  double log_E = 0.0;  // e
  double alpha = 0.0;  // exponent of N
  double beta = 0.0;   // exponent of D

  static TrainingLawParameters from_coefficients(
      double A, double B, double E, double alpha, double beta) {
    return {std::log(A), std::log(B), std::log(E), alpha, beta};
  }
  double A() const { return std::exp(log_A); }
  double B() const { return std::exp(log_B); }
  double E() const { return std::exp(log_E); }
};

// E + A N^-alpha + B D^-beta, in nats, for N parameters and D tokens.
double predict_training_law(const TrainingLawParameters& theta, double params, double tokens);

// The compute-optimal allocation of §3 under C = 6ND.
struct ComputeAllocation {
  double a_N = kNotComputed;         // beta / (alpha + beta)
  double b_D = kNotComputed;         // alpha / (alpha + beta)
  double G = kNotComputed;           // (alpha A / (beta B))^(1 / (alpha + beta))
  double params_opt = kNotComputed;  // N_opt = G (C/6)^a_N
  double tokens_opt = kNotComputed;  // D_opt = G^-1 (C/6)^b_D
};
ComputeAllocation chinchilla_allocation(const TrainingLawParameters& theta, double budget_flops);

// Observations for the Chinchilla law: one row per run.
struct ChinchillaData {
  std::vector<double> params;  // N, > 0
  std::vector<double> tokens;  // D, > 0
  std::vector<double> loss;    // nats, finite and > 0
};

// Called as (starts finished, starts in all) while a multi-start runs, at most once per finished
// start and never concurrently (a lock is held), from the solver's threads: keep it short.
using ProgressCallback = std::function<void(int done, int total)>;

struct ChinchillaOptions {
  double huber_delta = 1e-3;
  ResidualScale residuals = ResidualScale::kLog;  // r = log Lhat - ln L (§3), or Lhat - L
  Penalty penalty = Penalty::kHuber;              // H(r) with huber_delta (§3), or r^2 / 2
  // Starts; empty means the grid of §3: alpha, beta in {0, 0.5, 1, 1.5, 2}, e in {-1, -0.5, 0,
  // 0.5, 1}, a, b in {0, 5, ..., 25} (4,500 starts, unbounded).
  std::vector<TrainingLawParameters> starts;
  // Two stages (docs/fitting.md, "Screening and polishing"). Every start first runs with
  // `screening`, SciPy's default stopping rule for L-BFGS-B (factr 1e7: a decrease of J of at
  // most 2.2e-9 max(|J|, 1) over an iteration; pgtol 1e-5: a max-norm gradient of at most 1e-5),
  // which is enough to tell the basins apart but stops short of the optimum (§1). Then the
  // polished_optima lowest-J successful end points that are distinct (1e-2 relative) continue
  // with `minimizer`, the tight rule of §1, and the best of those is kept. 0 runs every start
  // with `minimizer` alone.
  MinimizerOptions screening = {/*max_iterations=*/10000,
                                /*function_tolerance=*/2.2e-9,
                                /*gradient_tolerance=*/1e-5,
                                /*parameter_tolerance=*/1e-14,
                                /*success_gradient=*/1e-8,
                                /*scipy_function_tolerance=*/2.2e-9};
  int polished_optima = 5;
  MinimizerOptions minimizer;
  std::vector<double> allocation_budgets;  // C at which N_opt and D_opt are reported
  int threads = 0;            // 0: hardware_concurrency(); the result does not depend on it
  ProgressCallback progress;  // optional; told of the screening stage's starts
};

// coefficients: "E", "A", "B", "alpha", "beta", "a_N", "b_D", "G", then "N_opt(C=...)" and
// "D_opt(C=...)" per allocation budget. objective: J = sum_i H(log Lhat_i - ln L_i) (summed,
// §1); residuals: log Lhat_i - ln L_i. status: ok, or failed when no start succeeded (with
// screening: when no polished run succeeded). successes counts the starts whose run met the
// success rule of §1 under the tolerances of the stage it ended in.
struct ChinchillaFit : Fit {
  TrainingLawParameters theta;
  int best_start = -1;                      // index of the kept start
  int polished = 0;                         // starts continued with the tight rule (stage 2)
  double gradient_max_norm = kNotComputed;  // at the kept point
  // Distinct successful end points, best first (at most 8), the structured starts of the
  // bootstrap's refits (§6).
  std::vector<TrainingLawParameters> local_optima;

  double predict(double params, double tokens) const {
    return predict_training_law(theta, params, tokens);
  }
};

// The Huber-sum objective J of §3 at fixed parameters, with no optimizer (§7's second table).
double chinchilla_objective(const ChinchillaData& data,
                            const TrainingLawParameters& theta,
                            double huber_delta = 1e-3);

// The 4,500 starts of §3, in the order a, b, e, alpha, beta (alpha varying fastest).
std::vector<TrainingLawParameters> chinchilla_start_grid();

// Multi-start L-BFGS of §1 and §3, screened and polished as ChinchillaOptions says; keeps the
// successful polished run with the lowest J, ties to the lower start index. Throws InputError for
// mismatched sizes, fewer than 6 rows, a value <= 0 or non-finite, or bad options.
ChinchillaFit fit_chinchilla(const ChinchillaData& data, const ChinchillaOptions& options = {});

// N(mu) = N_noncore + mu * N_core (§4.1; parcae.md §11's sets). 140M: 104,998,272 + 14,159,040 mu.
struct EffectiveParameters {
  double noncore = kNotComputed;
  double core = kNotComputed;
  double count(double mean_recurrence) const { return noncore + mean_recurrence * core; }
};

// One point per isoFLOP run at T = mu_rec, with the realised D (§4.1).
struct ParcaeData {
  std::vector<double> mean_recurrence;  // mu, >= 1
  std::vector<double> tokens;           // realised D, > 0
  std::vector<double> loss;             // nats, finite and > 0
};

// The compute-optimal frontier of a training law (§4.1): for each C, mu* minimises
// L(mu, C / F(mu)) over mu in [mu_min, mu_max] by golden-section search in ln mu.
struct FrontierOptions {
  std::vector<double> budgets;  // C in FLOPs, > 0
  double mu_min = 1.0;
  double mu_max = 12.0;
  // F(mu, mu/2) in FLOPs per token, > 0; called concurrently by the bootstraps.
  std::function<double(double mu)> flops_per_token;
  double tolerance_log_mu = 1e-10;  // width of the final bracket in ln mu
};

struct FrontierPoint {
  double budget_flops = kNotComputed;
  double mu_star = kNotComputed;
  double tokens_star = kNotComputed;  // C / F(mu*)
  double loss_star = kNotComputed;
  bool at_bound = false;  // mu* within 1e-6 (relative) of mu_min or mu_max
};

// points sorted as given; the three power laws need >= 3 budgets (status failed otherwise).
struct Frontier {
  std::vector<FrontierPoint> points;
  PowerLawFit mu_star_law;
  PowerLawFit tokens_star_law;
  PowerLawFit loss_star_law;
};

// Throws InputError for no budgets, a budget <= 0, mu bounds not 0 < mu_min < mu_max, a missing
// flops_per_token, or F(mu) <= 0 at a trial point.
Frontier compute_optimal_frontier(const TrainingLawParameters& theta,
                                  const EffectiveParameters& params_of_mu,
                                  const FrontierOptions& options);

// One requested prediction L(mu, D) of the training law.
struct TrainingLawQuery {
  double mean_recurrence = kNotComputed;
  double tokens = kNotComputed;
};

struct ParcaeLawOptions {
  double huber_delta = 1e-3;
  ResidualScale residuals = ResidualScale::kLog;  // as ChinchillaOptions
  Penalty penalty = Penalty::kHuber;
  bool grid_starts = true;  // the 4,500 starts of §3
  int random_starts = 500;  // uniform in a, b in [0, 25], e in [-1, 1], alpha, beta in [0, 2]
  std::uint64_t seed = 42;
  std::vector<TrainingLawParameters> extra_starts;  // tried after grid and random starts
  // Screening and polishing, as ChinchillaOptions: every start with `screening`, then the
  // polished_optima best distinct end points with `minimizer`. 0 runs every start with
  // `minimizer` alone (the one-stage procedure, about 15 times slower on 5,000 starts).
  MinimizerOptions screening = ChinchillaOptions{}.screening;
  int polished_optima = 5;
  MinimizerOptions minimizer;
  std::vector<TrainingLawQuery> predictions;  // reported as "L(mu=...,D=...)"
  FrontierOptions frontier;  // budgets non-empty: "mu*(C=...)", "D*(C=...)", "L*(C=...)"
  int threads = 0;
  ProgressCallback progress;  // optional; told of the (screening) starts
};

// coefficients: "E", "A", "a", "B", "b" ([P]'s names; a, b are the exponents here), then the
// predictions and frontier points asked for. Judge the fit by b and predictions: (A, a, E) are
// weakly identified on [P]'s design (§4.1). objective and residuals as for ChinchillaFit.
struct ParcaeLawFit : Fit {
  TrainingLawParameters theta;  // alpha is [P]'s a, beta is [P]'s b
  EffectiveParameters params_of_mu;
  int best_start = -1;
  int polished = 0;  // starts continued with the tight rule (stage 2); 0 for one stage
  double gradient_max_norm = kNotComputed;
  std::vector<TrainingLawParameters> local_optima;  // as in ChinchillaFit
  Frontier frontier;  // filled when options.frontier.budgets is not empty

  double predict(double mean_recurrence, double tokens) const {
    return predict_training_law(theta, params_of_mu.count(mean_recurrence), tokens);
  }
};

// §4.1: as fit_chinchilla with ln N(mu) for ln N. Throws InputError as fit_chinchilla does, and
// for N(mu) <= 0 or non-finite at some mu.
ParcaeLawFit fit_parcae_law(const ParcaeData& data,
                            const EffectiveParameters& params_of_mu,
                            const ParcaeLawOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Unified law (§4.2)
// ---------------------------------------------------------------------------------------------

// The form of the test-time term: Z exp(-z T / mu) ([P]'s gamma = 1, the default),
// Z exp(-z T mu^-gamma) with gamma learned, or Z exp(-z T) (the no-mu ablation).
enum class UnifiedVariant { kGammaOne, kLearnedGamma, kNoMu };

struct UnifiedData {
  std::vector<double> mean_recurrence;  // mu of the run, >= 1
  std::vector<double> tokens;           // realised D of the run, > 0
  std::vector<double> test_time;        // T of the evaluation, > 0
  std::vector<double> loss;             // nats, finite and > 0
  // Run index of each point, so the bootstrap resamples whole runs (§6). Empty: points that share
  // (mu, D) form one run.
  std::vector<int> run;
};

// theta = (ln X, ln Y, e, x, y) in the training-law layout, plus zeta = ln Z, omega = ln z, gamma.
struct UnifiedLawParameters {
  TrainingLawParameters floor;  // log_A = ln X, log_B = ln Y, alpha = x, beta = y
  double log_Z = 0.0;
  double log_z = 0.0;
  double gamma = 1.0;  // used by kLearnedGamma only
};

// E + X N(mu)^-x + Y D^-y + Z exp(-z T mu^-gamma), with gamma = 1 or 0 by variant.
double predict_unified_law(const UnifiedLawParameters& theta,
                           UnifiedVariant variant,
                           double params,
                           double mean_recurrence,
                           double tokens,
                           double test_time);

struct UnifiedLawQuery {
  double mean_recurrence = kNotComputed;
  double tokens = kNotComputed;
  double test_time = kNotComputed;
};

struct UnifiedOptions {
  UnifiedVariant variant = UnifiedVariant::kGammaOne;
  // Hold (E, X, x, Y, y) at the training-law fit and fit only (Z, z[, gamma]) (§4.2 option).
  bool floor_fixed = false;
  double huber_delta = 1e-3;
  ResidualScale residuals = ResidualScale::kLog;  // as ChinchillaOptions
  Penalty penalty = Penalty::kHuber;
  // Starts: the training-law optimum with zeta in {-3, ..., 1} x z in {0.5, 1, 2, 4, 8, 16}
  // (30; with gamma learned, each also at gamma in {0, 0.5, 1, 1.5, 2}), then random_starts
  // uniform in ln X, ln Y in [0, 25], x, y in [0, 2], e in [-1, 1], zeta in [-4, 1],
  // ln z in [ln 0.1, ln 16], gamma in [0, 2] (only the free coordinates are drawn).
  int random_starts = 1000;
  std::uint64_t seed = 42;
  std::vector<UnifiedLawParameters> extra_starts;
  MinimizerOptions minimizer;
  std::vector<UnifiedLawQuery> predictions;  // reported as "L(mu=...,D=...,T=...)"
  int threads = 0;
  ProgressCallback progress;  // optional
};

// coefficients: "E", "X", "x", "Y", "y", "Z", "z", then "gamma" for kLearnedGamma, then the
// predictions. objective: the Huber sum over every (run, T) point; residuals in input order.
struct UnifiedLawFit : Fit {
  UnifiedLawParameters theta;
  UnifiedVariant variant = UnifiedVariant::kGammaOne;
  bool floor_fixed = false;
  EffectiveParameters params_of_mu;
  int best_start = -1;
  double gradient_max_norm = kNotComputed;

  double predict(double mean_recurrence, double tokens, double test_time) const {
    return predict_unified_law(
        theta, variant, params_of_mu.count(mean_recurrence), mean_recurrence, tokens, test_time);
  }
  // The oracle check of §4.2 (validation only): the training-law floor replaced by a held-out
  // run's measured L(T = mu_rec), the fitted (Z, z[, gamma]) kept:
  // measured_floor + Z exp(-z T mu^-gamma).
  double predict_with_oracle_floor(double measured_floor,
                                   double mean_recurrence,
                                   double test_time) const;
};

// The Huber-sum objective of the unified law at fixed parameters (for checks and reports).
double unified_objective(const UnifiedData& data,
                         const EffectiveParameters& params_of_mu,
                         const UnifiedLawParameters& theta,
                         UnifiedVariant variant,
                         double huber_delta = 1e-3);

// §4.2 joint fit (default) or floor-fixed fit, starting from training_law (a §4.1 fit of the same
// model size, status ok). Throws InputError for mismatched sizes, invalid values, a training law
// that is not ok, or fewer than 9 points (8 with a floor fixed: parameters + 1).
UnifiedLawFit fit_unified_law(const UnifiedData& data,
                              const EffectiveParameters& params_of_mu,
                              const ParcaeLawFit& training_law,
                              const UnifiedOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Test-time saturating exponential (§5)
// ---------------------------------------------------------------------------------------------

// kExponential: L_inf + Z e^(-z T) (the law). The comparison forms of [P]'s table:
// kShiftedPower: L_inf + Z (1 + T)^-z; kPower: L_inf + Z T^-z; kPowerNoFloor: Z T^-z.
enum class TestTimeForm { kExponential, kShiftedPower, kPower, kPowerNoFloor };
const char* to_string(TestTimeForm form);  // "exp", "(1+T)^-z", "T^-z", "no floor"

// Least squares on log loss ([P], the default) or the Huber sum of §1 on log loss.
enum class SatExpObjective { kLeastSquares, kHuberSum };

struct SatExpOptions {
  TestTimeForm form = TestTimeForm::kExponential;
  SatExpObjective objective = SatExpObjective::kLeastSquares;
  // kLog ([P], the default) or kLinear: sum (Lhat - L)^2 with kLeastSquares is exactly the
  // objective of scipy.optimize.curve_fit.
  ResidualScale residuals = ResidualScale::kLog;
  double huber_delta = 1e-3;  // for the Huber objective and for the reported Huber values
  // Variable-projection starts (§5): for each rate z0, L ~ c0 + c1 basis(z0, T) by linear least
  // squares, then L_inf = min(c0, 0.999 min L), Z = max(c1, 1e-6), z = z0.
  std::vector<double> start_rates = {0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0};
  double mean_recurrence = kNotComputed;  // mu_rec of the run, for the floor gap; optional
  double flat_amplitude = 1e-6;           // status flat below this Z (§5)
  int max_iterations = 500;               // Levenberg-Marquardt iterations per start
};

// coefficients: "y_inf", "Z", "z" (L_inf, Z, z; no "y_inf" for kPowerNoFloor), SEs from
// (J'J)^-1 s^2 with s^2 = RSS / (n - p), +infinity along a direction the data do not determine.
// objective: sum of squared log residuals (or the Huber sum); residuals ln Lhat_i - ln L_i.
// status: ok; flat when Z < flat_amplitude or the fitted curve falls by less than flat_amplitude
// nats between the smallest and the largest T (a constant or rising curve: the coefficients are
// then finite but not identified, and predict() reproduces the level); or failed (no start gave a
// finite fit).
struct SatExpFit : Fit {
  TestTimeForm form = TestTimeForm::kExponential;
  double l_inf = kNotComputed;       // L_inf (0 for kPowerNoFloor)
  double amplitude = kNotComputed;   // Z
  double rate = kNotComputed;        // z
  double half_life = kNotComputed;   // T_1/2 = ln 2 / z (kExponential only)
  double huber_mean = kNotComputed;  // mean per-point Huber of the residuals (delta 1e-3)
  double huber_sum = kNotComputed;
  // |L_inf - L(T = mu_rec)| / L(T = mu_rec) when options.mean_recurrence is one of the T values.
  double floor_gap = kNotComputed;

  double predict(double test_time) const;
};

// Needs test_time.size() == loss.size(), every T and L finite and > 0, and >= 4 distinct T; else
// InputError. A curve that does not decay (constant, or rising with T) is status flat, not thrown.
SatExpFit fit_satexp(const std::vector<double>& test_time,
                     const std::vector<double>& loss,
                     const SatExpOptions& options = {});

// The extrapolation protocol of §5: fit on T <= mu_rec, score on T > mu_rec.
struct SatExpExtrapolation {
  SatExpFit fit;
  int scored_points = 0;
  double huber_mean = kNotComputed;                   // on the scored points
  double mean_relative_error_percent = kNotComputed;  // on the scored points
};
// Throws InputError when fewer than 4 distinct T lie at or below mu_rec or none above.
SatExpExtrapolation satexp_extrapolation(const std::vector<double>& test_time,
                                         const std::vector<double>& loss,
                                         double mean_recurrence,
                                         const SatExpOptions& options = {});

// [P]'s table of functional forms: each form fitted with the same objective; best is the index
// of the lowest mean Huber among the fits that did not fail.
struct TestTimeFormComparison {
  std::vector<SatExpFit> fits;  // kExponential, kShiftedPower, kPower, kPowerNoFloor
  int best = -1;
};
TestTimeFormComparison compare_test_time_forms(const std::vector<double>& test_time,
                                               const std::vector<double>& loss,
                                               const SatExpOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Bootstrap over runs (§6)
// ---------------------------------------------------------------------------------------------

struct BootstrapOptions {
  int resamples = 1000;  // B
  std::uint64_t seed = 42;
  double ci_level = 0.95;
  // Each replicate is refitted from the full-sample optimum and up to this many further distinct
  // local optima of the full-sample multi-start (ChinchillaFit::local_optima), or, for the
  // unified law, from the optimum and its 30 structured starts.
  int local_optima_starts = 4;
  // Extra starts for every replicate of a training law (for example a single published fit, to
  // mirror [E]'s procedure); the unified law ignores them.
  std::vector<TrainingLawParameters> extra_starts;
  int threads = 0;  // 0: hardware_concurrency(); results do not depend on it
};

// Resample runs with replacement, refit each replicate, and return fit with every coefficient's
// se (SD over replicates) and ci (percentiles) filled, bootstrap_replicates and bootstrap_failed
// set, and a warning when more than 5% of replicates failed. fit must come from the same data and
// options. Throws InputError for resamples < 2 or ci_level outside (0, 1).
// Power law: points drawn with replacement (a point drawn k times enters with k times its
// weight) and refitted by OLS; a replicate with fewer than 3 distinct points or a single distinct
// x counts as failed. fit must come from the same x, y and weights.
PowerLawFit bootstrap_power_law(const std::vector<double>& x,
                                const std::vector<double>& y,
                                const std::vector<double>& weights,
                                const PowerLawFit& fit,
                                const BootstrapOptions& bootstrap);
// Test-time law (DECISION, like §2 step 8): one curve is one run, so its points are not resampled;
// each replicate keeps the design T and multiplies the fitted curve by exp of log residuals drawn
// with replacement, inflated by sqrt(n / (n - p)), then refits from the standard starts. A
// replicate whose refit fails counts as failed; a flat one is kept. Throws InputError for a fit
// that is not ok or data that are not the fit's.
SatExpFit bootstrap_satexp(const std::vector<double>& test_time,
                           const std::vector<double>& loss,
                           const SatExpFit& fit,
                           const SatExpOptions& options,
                           const BootstrapOptions& bootstrap);
ChinchillaFit bootstrap_chinchilla(const ChinchillaData& data,
                                   const ChinchillaFit& fit,
                                   const ChinchillaOptions& options,
                                   const BootstrapOptions& bootstrap);
ParcaeLawFit bootstrap_parcae_law(const ParcaeData& data,
                                  const EffectiveParameters& params_of_mu,
                                  const ParcaeLawFit& fit,
                                  const ParcaeLawOptions& options,
                                  const BootstrapOptions& bootstrap);
UnifiedLawFit bootstrap_unified_law(const UnifiedData& data,
                                    const EffectiveParameters& params_of_mu,
                                    const ParcaeLawFit& training_law,
                                    const UnifiedLawFit& fit,
                                    const UnifiedOptions& options,
                                    const BootstrapOptions& bootstrap);

}  // namespace parcae::fitting
