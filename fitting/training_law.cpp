// The parametric training laws: Chinchilla's L = E + A N^-alpha + B D^-beta (§3, checked against
// §7) and Parcae's version with N = N(mu) (§4.1), both fitted in log-sum-exp form by multi-start
// L-BFGS on the summed Huber loss of log residuals, plus the closed-form allocation of §3 and the
// compute-optimal frontier of §4.1 by golden-section search in ln mu.
#include "fitting/detail/training_law.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "fitting/detail/checks.h"
#include "fitting/detail/minimize.h"
#include "fitting/detail/numerics.h"
#include "fitting/detail/objectives.h"
#include "fitting/fitting.h"

namespace parcae::fitting {
namespace detail {
namespace {

constexpr int kLocalOptimaKept = 8;

void check_rows(std::size_t rows, const std::string& name, int parameters) {
  if (static_cast<int>(rows) < parameters + 1) {
    throw InputError(name,
                     "has " + std::to_string(rows) + " rows; a law with " +
                         std::to_string(parameters) + " parameters needs at least " +
                         std::to_string(parameters + 1));
  }
}

void validate_common(double huber_delta, const MinimizerOptions& minimizer, int threads) {
  if (!(huber_delta > 0.0) || !std::isfinite(huber_delta)) {
    throw InputError("options.huber_delta", huber_delta, "expected a positive delta such as 1e-3");
  }
  validate_minimizer_options(minimizer, "options.minimizer");
  if (threads < 0) {
    throw InputError("options.threads", threads, "expected 0 (all cores) or a positive count");
  }
}

// Fills the fields shared by ChinchillaFit and ParcaeLawFit from a multi-start.
template <typename LawFit>
void fill_from_multistart(LawFit& fit,
                          const TrainingLawRows& rows,
                          const MultiStartResult& result,
                          const TrainingLawObjective& objective) {
  fit.starts = static_cast<int>(result.runs.size());
  fit.successes = result.successes;
  fit.n = static_cast<int>(rows.log_loss.size());
  fit.requires_validation = true;
  if (result.best < 0) {
    fit.status = FitStatus::kFailed;
    fit.message = result.polished.empty()
                      ? "none of the " + std::to_string(fit.starts) +
                            " starts reached a stationary point with a finite objective"
                      : "none of the " + std::to_string(result.polished.size()) +
                            " polished runs reached a stationary point with a finite objective";
    fit.theta = {kNotComputed, kNotComputed, kNotComputed, kNotComputed, kNotComputed};
    return;
  }
  const MinimizeResult& best = result.runs[result.best];
  fit.status = FitStatus::kOk;
  fit.theta = to_parameters(best.x);
  fit.best_start = result.best;
  fit.gradient_max_norm = best.gradient_max_norm;
  fit.objective = best.value;
  fit.objective_per_point = best.value / fit.n;
  fit.residuals = objective.residuals(best.x.data());
  for (const auto& x : distinct_optima(result, kLocalOptimaKept)) {
    fit.local_optima.push_back(to_parameters(x));
  }
}

double golden_section(const std::function<double(double)>& f, double low, double high, double tol) {
  const double ratio = (std::sqrt(5.0) - 1.0) / 2.0;
  double a = low, b = high;
  double c = b - ratio * (b - a), d = a + ratio * (b - a);
  double fc = f(c), fd = f(d);
  while (b - a > tol) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - ratio * (b - a);
      fc = f(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + ratio * (b - a);
      fd = f(d);
    }
  }
  // The search converges to an end of the interval when the minimum lies there; compare the ends
  // explicitly so that a boundary optimum is returned exactly.
  double best = 0.5 * (a + b), best_value = f(best);
  for (double end : {low, high}) {
    const double value = f(end);
    if (value < best_value) {
      best = end;
      best_value = value;
    }
  }
  return best;
}

}  // namespace

void check_physical_range(Fit& fit,
                          const std::vector<std::pair<std::string, double>>& exponents,
                          double irreducible,
                          double smallest_loss) {
  if (fit.status != FitStatus::kOk) {
    return;
  }
  std::vector<std::string> problems;
  for (const auto& [name, value] : exponents) {
    if (!(value > 0.0)) {
      problems.push_back(name + " = " + format_number(value) +
                         ": expected a positive exponent (the loss falls as the resource grows)");
    }
  }
  if (!(irreducible > kIrreducibleShare * smallest_loss)) {
    problems.push_back("E = " + format_number(irreducible) +
                       " nats: expected an irreducible loss above " +
                       format_number(kIrreducibleShare) + " of the smallest loss fitted (" +
                       format_number(smallest_loss) + ")");
  }
  for (const Coefficient& c : fit.coefficients) {
    if (!std::isfinite(c.value)) {
      problems.push_back(c.name + " = " + format_number(c.value) + ": not finite");
    }
  }
  if (problems.empty()) {
    return;
  }
  fit.status = FitStatus::kUnphysical;
  std::string joined;
  for (const std::string& p : problems) {
    joined += (joined.empty() ? "" : "; ") + p;
  }
  fit.message = "the optimum leaves the physical range: " + joined;
}

TrainingLawRows chinchilla_rows(const ChinchillaData& data) {
  check_same_size("data.tokens", data.tokens.size(), "data.params", data.params.size());
  check_same_size("data.loss", data.loss.size(), "data.params", data.params.size());
  check_rows(data.loss.size(), "data", 5);
  check_positive(data.params, "data.params", "parameter count");
  check_positive(data.tokens, "data.tokens", "token count");
  check_positive(data.loss, "data.loss", "loss in nats");
  TrainingLawRows rows;
  for (std::size_t i = 0; i < data.loss.size(); ++i) {
    rows.log_params.push_back(std::log(data.params[i]));
    rows.log_tokens.push_back(std::log(data.tokens[i]));
    rows.log_loss.push_back(std::log(data.loss[i]));
  }
  return rows;
}

TrainingLawRows parcae_rows(const ParcaeData& data, const EffectiveParameters& params_of_mu) {
  check_same_size(
      "data.tokens", data.tokens.size(), "data.mean_recurrence", data.mean_recurrence.size());
  check_same_size(
      "data.loss", data.loss.size(), "data.mean_recurrence", data.mean_recurrence.size());
  check_rows(data.loss.size(), "data", 5);
  check_at_least(data.mean_recurrence, 1.0, "data.mean_recurrence", "a mean recurrence >= 1");
  check_positive(data.tokens, "data.tokens", "token count");
  check_positive(data.loss, "data.loss", "loss in nats");
  if (!std::isfinite(params_of_mu.noncore) || !std::isfinite(params_of_mu.core) ||
      params_of_mu.noncore < 0.0 || params_of_mu.core < 0.0) {
    throw InputError("params_of_mu",
                     "N_noncore = " + format_number(params_of_mu.noncore) + ", N_core = " +
                         format_number(params_of_mu.core) + ": expected finite counts >= 0");
  }
  TrainingLawRows rows;
  for (std::size_t i = 0; i < data.loss.size(); ++i) {
    const double params = params_of_mu.count(data.mean_recurrence[i]);
    if (!(params > 0.0)) {
      throw InputError("params_of_mu.count(data.mean_recurrence[" + std::to_string(i) + "])",
                       params,
                       "expected a positive parameter count");
    }
    rows.log_params.push_back(std::log(params));
    rows.log_tokens.push_back(std::log(data.tokens[i]));
    rows.log_loss.push_back(std::log(data.loss[i]));
  }
  return rows;
}

void validate_parcae_options(const ParcaeLawOptions& options) {
  validate_common(options.huber_delta, options.minimizer, options.threads);
  if (options.random_starts < 0) {
    throw InputError("options.random_starts", options.random_starts, "expected a count >= 0");
  }
  if (!options.grid_starts && options.random_starts == 0 && options.extra_starts.empty()) {
    throw InputError("options", "asks for no starts; expected grid, random or extra starts");
  }
  if (!options.frontier.budgets.empty()) {
    // Checked now rather than after the multi-start, which may take seconds.
    check_positive(options.frontier.budgets, "options.frontier.budgets", "budget in FLOPs");
    if (!options.frontier.flops_per_token) {
      throw InputError("options.frontier.flops_per_token",
                       "is empty; expected F(mu, mu/2) in FLOPs per token");
    }
    if (!(options.frontier.mu_min > 0.0) || !(options.frontier.mu_max > options.frontier.mu_min) ||
        !std::isfinite(options.frontier.mu_max)) {
      throw InputError("options.frontier",
                       "mu_min = " + format_number(options.frontier.mu_min) +
                           ", mu_max = " + format_number(options.frontier.mu_max) +
                           ": expected 0 < mu_min < mu_max");
    }
  }
  for (std::size_t i = 0; i < options.predictions.size(); ++i) {
    const TrainingLawQuery& q = options.predictions[i];
    if (!(q.mean_recurrence >= 1.0) || !(q.tokens > 0.0) || !std::isfinite(q.tokens)) {
      throw InputError("options.predictions[" + std::to_string(i) + "]",
                       "mu = " + format_number(q.mean_recurrence) +
                           ", D = " + format_number(q.tokens) + ": expected mu >= 1 and D > 0");
    }
  }
}

std::vector<std::vector<double>> parcae_starts(const ParcaeLawOptions& options) {
  std::vector<std::vector<double>> starts;
  if (options.grid_starts) {
    for (const TrainingLawParameters& theta : chinchilla_start_grid()) {
      starts.push_back(to_vector(theta));
    }
  }
  // DECISION of §4.1: random starts uniform in a, b in [0, 25], e in [-1, 1], alpha, beta in
  // [0, 2], drawn in the order a, b, e, alpha, beta from one seeded stream.
  Random random(options.seed, 0);
  for (int i = 0; i < options.random_starts; ++i) {
    const double a = random.uniform(0.0, 25.0);
    const double b = random.uniform(0.0, 25.0);
    const double e = random.uniform(-1.0, 1.0);
    const double alpha = random.uniform(0.0, 2.0);
    const double beta = random.uniform(0.0, 2.0);
    starts.push_back({a, b, e, alpha, beta});
  }
  for (const TrainingLawParameters& theta : options.extra_starts) {
    starts.push_back(to_vector(theta));
  }
  return starts;
}

std::vector<Coefficient> chinchilla_coefficients(const TrainingLawParameters& theta,
                                                 const ChinchillaOptions& options) {
  const ComputeAllocation allocation = chinchilla_allocation(theta, 1.0);
  std::vector<Coefficient> c = {{"E", theta.E()},
                                {"A", theta.A()},
                                {"B", theta.B()},
                                {"alpha", theta.alpha},
                                {"beta", theta.beta},
                                {"a_N", allocation.a_N},
                                {"b_D", allocation.b_D},
                                {"G", allocation.G}};
  for (double budget : options.allocation_budgets) {
    c.push_back({"N_opt(C=" + format_number(budget) + ")",
                 chinchilla_allocation(theta, budget).params_opt});
  }
  for (double budget : options.allocation_budgets) {
    c.push_back({"D_opt(C=" + format_number(budget) + ")",
                 chinchilla_allocation(theta, budget).tokens_opt});
  }
  return c;
}

std::vector<Coefficient> parcae_coefficients(const TrainingLawParameters& theta,
                                             const EffectiveParameters& params_of_mu,
                                             const ParcaeLawOptions& options,
                                             Frontier* frontier) {
  std::vector<Coefficient> c = {
      {"E", theta.E()}, {"A", theta.A()}, {"a", theta.alpha}, {"B", theta.B()}, {"b", theta.beta}};
  for (const TrainingLawQuery& q : options.predictions) {
    c.push_back({"L(mu=" + format_number(q.mean_recurrence) + ",D=" + format_number(q.tokens) + ")",
                 predict_training_law(theta, params_of_mu.count(q.mean_recurrence), q.tokens)});
  }
  if (!options.frontier.budgets.empty()) {
    Frontier computed;
    if (std::isfinite(theta.alpha)) {
      computed = compute_optimal_frontier(theta, params_of_mu, options.frontier);
    } else {
      for (double budget : options.frontier.budgets) {
        computed.points.push_back({budget});
      }
    }
    for (const FrontierPoint& p : computed.points) {
      c.push_back({"mu*(C=" + format_number(p.budget_flops) + ")", p.mu_star});
    }
    for (const FrontierPoint& p : computed.points) {
      c.push_back({"D*(C=" + format_number(p.budget_flops) + ")", p.tokens_star});
    }
    for (const FrontierPoint& p : computed.points) {
      c.push_back({"L*(C=" + format_number(p.budget_flops) + ")", p.loss_star});
    }
    if (computed.points.size() >= 3) {
      c.push_back({"frontier_a_mu", computed.mu_star_law.exponent});
      c.push_back({"frontier_a_D", computed.tokens_star_law.exponent});
      c.push_back({"frontier_a_L", computed.loss_star_law.exponent});
    }
    if (frontier != nullptr) {
      *frontier = std::move(computed);
    }
  }
  return c;
}

}  // namespace detail

double predict_training_law(const TrainingLawParameters& theta, double params, double tokens) {
  return theta.E() + theta.A() * std::pow(params, -theta.alpha) +
         theta.B() * std::pow(tokens, -theta.beta);
}

ComputeAllocation chinchilla_allocation(const TrainingLawParameters& theta, double budget_flops) {
  ComputeAllocation allocation;
  const double sum = theta.alpha + theta.beta;
  allocation.a_N = theta.beta / sum;
  allocation.b_D = theta.alpha / sum;
  allocation.G = std::pow(theta.alpha * theta.A() / (theta.beta * theta.B()), 1.0 / sum);
  allocation.params_opt = allocation.G * std::pow(budget_flops / 6.0, allocation.a_N);
  allocation.tokens_opt = std::pow(budget_flops / 6.0, allocation.b_D) / allocation.G;
  return allocation;
}

std::vector<TrainingLawParameters> chinchilla_start_grid() {
  const double exponents[] = {0.0, 0.5, 1.0, 1.5, 2.0};
  const double log_e[] = {-1.0, -0.5, 0.0, 0.5, 1.0};
  const double log_ab[] = {0.0, 5.0, 10.0, 15.0, 20.0, 25.0};
  std::vector<TrainingLawParameters> grid;
  grid.reserve(4500);
  for (double a : log_ab) {
    for (double b : log_ab) {
      for (double e : log_e) {
        for (double beta : exponents) {
          for (double alpha : exponents) {
            grid.push_back({a, b, e, alpha, beta});
          }
        }
      }
    }
  }
  return grid;
}

double chinchilla_objective(const ChinchillaData& data,
                            const TrainingLawParameters& theta,
                            double huber_delta) {
  const detail::TrainingLawRows rows = detail::chinchilla_rows(data);
  const detail::TrainingLawObjective objective(rows, huber_delta);
  const std::vector<double> x = detail::to_vector(theta);
  double value = 0.0;
  objective.evaluate(x.data(), &value, nullptr);
  return value;
}

ChinchillaFit fit_chinchilla(const ChinchillaData& data, const ChinchillaOptions& options) {
  detail::validate_common(options.huber_delta, options.minimizer, options.threads);
  detail::validate_minimizer_options(options.screening, "options.screening");
  if (options.polished_optima < 0) {
    throw InputError("options.polished_optima",
                     options.polished_optima,
                     "expected a count >= 0 (0: no screening stage)");
  }
  for (std::size_t i = 0; i < options.allocation_budgets.size(); ++i) {
    if (!(options.allocation_budgets[i] > 0.0) || !std::isfinite(options.allocation_budgets[i])) {
      throw InputError("options.allocation_budgets[" + std::to_string(i) + "]",
                       options.allocation_budgets[i],
                       "expected a positive budget in FLOPs");
    }
  }
  const detail::TrainingLawRows rows = detail::chinchilla_rows(data);
  std::vector<std::vector<double>> starts;
  for (const TrainingLawParameters& theta :
       options.starts.empty() ? chinchilla_start_grid() : options.starts) {
    starts.push_back(detail::to_vector(theta));
  }
  const detail::TrainingLawObjective objective(
      rows, detail::penalty_delta(options.penalty, options.huber_delta), options.residuals);
  const detail::MultiStartResult result =
      options.polished_optima == 0
          ? detail::minimize_multistart(
                objective, starts, options.minimizer, options.threads, options.progress)
          : detail::minimize_multistart_screened(objective,
                                                 starts,
                                                 options.screening,
                                                 options.minimizer,
                                                 options.polished_optima,
                                                 options.threads,
                                                 options.progress);

  ChinchillaFit fit;
  fit.law = "chinchilla";
  fit.polished = static_cast<int>(result.polished.size());
  detail::fill_from_multistart(fit, rows, result, objective);
  fit.coefficients = detail::chinchilla_coefficients(fit.theta, options);
  detail::check_physical_range(fit,
                               {{"alpha", fit.theta.alpha}, {"beta", fit.theta.beta}},
                               fit.theta.E(),
                               *std::min_element(data.loss.begin(), data.loss.end()));
  return fit;
}

ParcaeLawFit fit_parcae_law(const ParcaeData& data,
                            const EffectiveParameters& params_of_mu,
                            const ParcaeLawOptions& options) {
  detail::validate_parcae_options(options);
  const detail::TrainingLawRows rows = detail::parcae_rows(data, params_of_mu);
  const detail::TrainingLawObjective objective(
      rows, detail::penalty_delta(options.penalty, options.huber_delta), options.residuals);
  const std::vector<std::vector<double>> starts = detail::parcae_starts(options);
  const detail::MultiStartResult result =
      options.polished_optima == 0
          ? detail::minimize_multistart(
                objective, starts, options.minimizer, options.threads, options.progress)
          : detail::minimize_multistart_screened(objective,
                                                 starts,
                                                 options.screening,
                                                 options.minimizer,
                                                 options.polished_optima,
                                                 options.threads,
                                                 options.progress);

  ParcaeLawFit fit;
  fit.law = "parcae";
  fit.params_of_mu = params_of_mu;
  fit.polished = static_cast<int>(result.polished.size());
  detail::fill_from_multistart(fit, rows, result, objective);
  fit.coefficients = detail::parcae_coefficients(fit.theta, params_of_mu, options, &fit.frontier);
  detail::check_physical_range(fit,
                               {{"a", fit.theta.alpha}, {"b", fit.theta.beta}},
                               fit.theta.E(),
                               *std::min_element(data.loss.begin(), data.loss.end()));
  return fit;
}

Frontier compute_optimal_frontier(const TrainingLawParameters& theta,
                                  const EffectiveParameters& params_of_mu,
                                  const FrontierOptions& options) {
  if (options.budgets.empty()) {
    throw InputError("frontier.budgets", "is empty; expected budgets in FLOPs");
  }
  detail::check_positive(options.budgets, "frontier.budgets", "budget in FLOPs");
  if (!(options.mu_min > 0.0) || !(options.mu_max > options.mu_min) ||
      !std::isfinite(options.mu_max)) {
    throw InputError("frontier",
                     "mu_min = " + detail::format_number(options.mu_min) + ", mu_max = " +
                         detail::format_number(options.mu_max) + ": expected 0 < mu_min < mu_max");
  }
  if (!options.flops_per_token) {
    throw InputError("frontier.flops_per_token", "is empty; expected F(mu, mu/2) in FLOPs/token");
  }
  if (!(options.tolerance_log_mu > 0.0)) {
    throw InputError(
        "frontier.tolerance_log_mu", options.tolerance_log_mu, "expected a positive width");
  }
  auto flops = [&](double mu) {
    const double f = options.flops_per_token(mu);
    if (!(f > 0.0) || !std::isfinite(f)) {
      throw InputError("frontier.flops_per_token(" + detail::format_number(mu) + ")",
                       f,
                       "expected a positive, finite number of FLOPs per token");
    }
    return f;
  };

  Frontier frontier;
  const double low = std::log(options.mu_min), high = std::log(options.mu_max);
  for (double budget : options.budgets) {
    auto loss_at = [&](double log_mu) {
      const double mu = std::exp(log_mu);
      return predict_training_law(theta, params_of_mu.count(mu), budget / flops(mu));
    };
    FrontierPoint point;
    point.budget_flops = budget;
    const double log_mu = detail::golden_section(loss_at, low, high, options.tolerance_log_mu);
    point.mu_star = std::exp(log_mu);
    point.tokens_star = budget / flops(point.mu_star);
    point.loss_star = loss_at(log_mu);
    point.at_bound = std::abs(point.mu_star - options.mu_min) <= 1e-6 * options.mu_min ||
                     std::abs(point.mu_star - options.mu_max) <= 1e-6 * options.mu_max;
    frontier.points.push_back(point);
  }
  std::vector<double> c, mu, tokens, loss;
  for (const FrontierPoint& p : frontier.points) {
    c.push_back(p.budget_flops);
    mu.push_back(p.mu_star);
    tokens.push_back(p.tokens_star);
    loss.push_back(p.loss_star);
  }
  std::vector<double> distinct = c;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (c.size() >= 3 && distinct.size() >= 2) {
    frontier.mu_star_law = fit_power_law(c, mu);
    frontier.tokens_star_law = fit_power_law(c, tokens);
    frontier.loss_star_law = fit_power_law(c, loss);
  } else {
    for (PowerLawFit* law :
         {&frontier.mu_star_law, &frontier.tokens_star_law, &frontier.loss_star_law}) {
      law->law = "power";
      law->message = "the frontier power laws need at least 3 budgets";
    }
  }
  return frontier;
}

}  // namespace parcae::fitting
