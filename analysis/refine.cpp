// The live isoFLOP fit of a running sweep and the decision of each refinement round (analysis.h).
//
// Both read the same fit as `fit isoflop` (analyse_isoflop over the sweep's finished runs), so
// the exponent a sweep stops on is the one `fit` reports. The policy of a round is here and only
// here; the orchestrator records and runs what it returns.
#include "sweeps/refine.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "analysis/analysis.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

struct SweepFit {
  std::optional<fitting::IsoflopFit> fit;
  std::vector<std::string> job_ids;
  std::string message;  // why there is no fit
};

SweepFit fit_sweep(const SweepRuns& runs, const std::string& x, int bootstrap) {
  SweepFit out;
  try {
    const std::optional<IsoflopAnalysis> analysis =
        analyse_sweep_isoflop(runs, x, bootstrap, /*seed=*/42);
    if (!analysis) {
      out.message = "no finished run with a budget yet";
      return out;
    }
    if (analysis->groups.size() != 1) {
      out.message = fmt::format("{} series in one sweep; fit each with `fit isoflop --group-by`",
                                analysis->groups.size());
      return out;
    }
    out.fit = analysis->groups.front().fit;
    out.job_ids = analysis->groups.front().job_ids;
  } catch (const InputError& e) {
    out.message = e.what();
  }
  return out;
}

// The exponent a of x* = k C^a; all NaN when the fit has none (too few budgets).
fitting::Coefficient exponent_of(const fitting::IsoflopFit& fit) {
  for (const auto& c : fit.coefficients) {
    if (c.name == "a")
      return c;
  }
  return {};
}

bool interval_known(const fitting::IsoflopFit& fit) {
  const fitting::Coefficient a = exponent_of(fit);
  return fit.status == fitting::FitStatus::kOk && std::isfinite(a.value) &&
         std::isfinite(a.ci_low) && std::isfinite(a.ci_high);
}

std::string values_text(const std::vector<int>& values) {
  std::string out;
  for (int v : values)
    out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

// v rounded to `digits` significant digits.
double round_significant(double v, int digits) {
  const double scale = std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(v))));
  return std::round(v * scale) / scale;
}

// The integers nearest to `targets`, >= 1, in none of `taken`, each once, ascending.
std::vector<int> new_values(const std::vector<double>& targets, const std::set<int>& taken) {
  std::set<int> out;
  for (double t : targets) {
    if (!std::isfinite(t))
      continue;
    const int v = static_cast<int>(std::max<long long>(1, std::llround(t)));
    if (taken.count(v) == 0)
      out.insert(v);
  }
  return {out.begin(), out.end()};
}

}  // namespace

std::string swept_variable(const SweepRuns& runs) {
  std::map<std::string, std::set<int>> mus;
  for (const auto& run : runs.runs) {
    if (!run.control && !run.budget_id.empty())
      mus[run.budget_id].insert(run.mean_recurrence);
  }
  for (const auto& [budget, values] : mus) {
    if (values.size() >= 2)
      return "mu_rec";
  }
  return "params";
}

LiveFit live_fit(const SweepRuns& runs, const std::string& x, int bootstrap) {
  LiveFit out;
  out.x = x.empty() ? swept_variable(runs) : x;
  const SweepFit sweep_fit = fit_sweep(runs, out.x, bootstrap);
  if (!sweep_fit.fit) {
    out.message = sweep_fit.message;
    return out;
  }
  const fitting::IsoflopFit& fit = *sweep_fit.fit;
  out.job_ids = sweep_fit.job_ids;
  out.runs = static_cast<int>(sweep_fit.job_ids.size());
  for (const auto& b : fit.budgets) {
    out.budgets += b.used ? 1 : 0;
    out.minima.push_back(
        fmt::format("{} {}{}{}",
                    b.budget_id,
                    fitting::to_string(b.status),
                    std::isfinite(b.x_star) ? fmt::format(" x*={:.3g}", b.x_star) : std::string(),
                    b.used ? "" : " (not used)"));
  }
  out.problems = fit.usability_problems();
  const fitting::Coefficient a = exponent_of(fit);
  out.exponent = a.value;
  out.exponent_ci_low = a.ci_low;
  out.exponent_ci_high = a.ci_high;
  if (interval_known(fit)) {
    out.status = "ok";
  } else {
    out.message = fit.message.empty() ? "the exponent's interval is not known yet" : fit.message;
  }
  return out;
}

nlohmann::ordered_json to_json(const LiveFit& fit) {
  auto number = [](double v) {
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json();
  };
  return {{"x", fit.x},
          {"status", fit.status},
          {"message", fit.message},
          {"exponent", number(fit.exponent)},
          {"exponent_ci", {number(fit.exponent_ci_low), number(fit.exponent_ci_high)}},
          {"ci_level", fitting::IsoflopOptions{}.ci_level},
          {"runs", fit.runs},
          {"budgets", fit.budgets},
          {"minima", fit.minima},
          {"problems", fit.problems},
          {"job_ids", fit.job_ids}};
}

sweeps::RefineRound decide_refinement(const SweepRuns& runs, const RefineInput& input) {
  sweeps::SweepReadOptions read;
  read.require_data = false;
  const sweeps::SweepSpec base = sweeps::sweep_spec_from_json(input.document, input.file, read);
  if (!base.has_refine) {
    throw InputError(
        input.file, "refine", "(missing)", "expected a \"refine\" block in the sweep to refine it");
  }
  const sweeps::RefineSettings& settings = base.refine;
  const sweeps::SweepSpec spec = sweeps::sweep_spec_from_json(
      sweeps::apply_refinement(input.document, base, input.rounds), input.file, read);

  sweeps::RefineRound round;
  round.round = input.rounds.empty() ? 1 : input.rounds.back().round + 1;
  round.exponent = fitting::kNotComputed;
  round.exponent_ci_low = fitting::kNotComputed;
  round.exponent_ci_high = fitting::kNotComputed;
  const SweepFit sweep_fit = fit_sweep(runs, "mu_rec", input.bootstrap);
  const fitting::IsoflopFit* fit = sweep_fit.fit ? &*sweep_fit.fit : nullptr;
  const bool law_known = fit != nullptr && interval_known(*fit);
  // A law with an interval can still be one `fit isoflop` calls unusable (too many bootstrap
  // replicates without a minimum): refinement does not stop on it.
  const std::vector<std::string> problems =
      fit != nullptr ? fit->usability_problems() : std::vector<std::string>{};
  if (fit != nullptr) {
    const fitting::Coefficient a = exponent_of(*fit);
    round.exponent = a.value;
    round.exponent_ci_low = a.ci_low;
    round.exponent_ci_high = a.ci_high;
    round.runs_used = static_cast<int>(sweep_fit.job_ids.size());
    for (const auto& b : fit->budgets)
      round.budgets_used += b.used ? 1 : 0;
  }
  const double width = law_known ? round.exponent_ci_high - round.exponent_ci_low : 0.0;
  const std::string law_text =
      law_known ? fmt::format("a = {:.3f} [{:.3f}, {:.3f}], {:.3f} wide",
                              round.exponent,
                              round.exponent_ci_low,
                              round.exponent_ci_high,
                              width)
                : "a not known yet (" + (fit != nullptr ? fit->message : sweep_fit.message) + ")";

  // Each budget's observed minimum: mean loss per mu_rec over its finished looped runs.
  std::vector<std::string> pinned;  // budgets whose minimum sits at mu_rec = 1
  std::vector<std::string> interior;
  std::map<std::string, int> best_of;  // each budget's mu_rec of lowest observed loss
  const double step = settings.step;
  for (const sweeps::Budget& budget : spec.budgets) {
    std::map<int, std::pair<double, int>> sums;
    for (const auto& run : runs.runs) {
      if (run.budget_id == budget.id && !run.fixed_depth && !run.control)
        sums[run.mean_recurrence].first += run.loss, ++sums[run.mean_recurrence].second;
    }
    if (sums.empty())
      continue;
    std::map<int, double> observed;
    for (const auto& [x, s] : sums)
      observed[x] = s.first / s.second;
    const auto best =
        std::min_element(observed.begin(), observed.end(), [](const auto& l, const auto& r) {
          return l.second < r.second;
        });
    const int lo = observed.begin()->first, hi = observed.rbegin()->first;
    // The observed argmin decides: a parabola through a flat, noisy window can put its vertex
    // outside a grid whose lowest loss is well inside it.
    best_of[budget.id] = best->first;
    const bool low_edge = best->first == lo;
    const bool high_edge = best->first == hi;
    const std::vector<int> planned = sweeps::axis_values_of_budget(spec, budget.id);
    const std::set<int> taken(planned.begin(), planned.end());
    auto extend = [&](const char* edge, int at, double direction) {
      const std::vector<int> values =
          new_values({at * std::pow(step, direction), at * std::pow(step, 2 * direction)}, taken);
      if (values.empty()) {
        pinned.push_back(fmt::format("{} ({} edge mu_rec = {})", budget.id, edge, at));
        return;
      }
      round.additions.push_back(
          {budget.id,
           budget.flops,
           false,
           values,
           fmt::format(
               "minimum at the {} edge (mu_rec = {}): add {}", edge, at, values_text(values))});
    };
    if (low_edge)
      extend("low", lo, -1.0);
    if (high_edge)
      extend("high", hi, 1.0);
    if (!low_edge && !high_edge)
      interior.push_back(budget.id);
  }

  const bool bracketed = round.additions.empty() && pinned.empty();
  if (bracketed && law_known && width <= settings.exponent_ci_width && problems.empty()) {
    round.action = "stop";
    round.reason = fmt::format("converged: {} <= {}; every budget's minimum is bracketed",
                               law_text,
                               settings.exponent_ci_width);
    round.additions.clear();
    return round;
  }
  const int done = input.rounds.empty() ? 0 : input.rounds.back().round;
  if (done >= settings.max_rounds) {
    round.action = "stop";
    round.reason = fmt::format("max_rounds = {} reached; {}", settings.max_rounds, law_text);
    round.additions.clear();
    return round;
  }
  std::string why;
  if (!round.additions.empty()) {
    why = fmt::format(
        "{} budget(s) with the minimum at an edge; {}", round.additions.size(), law_text);
  } else if (!interior.empty() || !pinned.empty()) {
    // Every minimum is bracketed or pinned at mu_rec = 1: a further budget widens the range the
    // exponent is fitted over, and points around the least certain minimum tighten it. When every
    // one is pinned, the further budget is where the optimum, which grows with C, may leave the
    // bound.
    const sweeps::Budget* largest = &spec.budgets.front();
    const sweeps::Budget* smallest = &spec.budgets.front();
    for (const auto& b : spec.budgets) {
      largest = b.flops > largest->flops ? &b : largest;
      smallest = b.flops < smallest->flops ? &b : smallest;
    }
    const double spacing = spec.budgets.size() >= 2 ? std::pow(largest->flops / smallest->flops,
                                                               1.0 / (spec.budgets.size() - 1.0))
                                                    : step;
    const double flops = round_significant(largest->flops * spacing, 2);
    double centre = fitting::kNotComputed;
    if (law_known) {
      centre = fit->x_star_law.predict(flops);
    } else if (fit != nullptr) {
      for (const auto& b : fit->budgets)
        centre = b.budget_id == largest->id && std::isfinite(b.x_star) ? b.x_star : centre;
    }
    if (!std::isfinite(centre)) {
      const auto values = sweeps::axis_values_of_budget(spec, largest->id);
      centre = values.empty() ? 1.0 : values[values.size() / 2];
    }
    // Values around a centre below one step would collapse onto mu_rec = 1: the budget then
    // starts at the bound, so that it shows whether the optimum has left it.
    const bool from_bound = !(centre >= step);
    if (from_bound)
      centre = step;
    const std::vector<int> values = new_values(
        {centre / step, centre / std::sqrt(step), centre, centre * std::sqrt(step), centre * step},
        {});
    const std::string id = sweeps::budget_id_for(flops);
    bool id_free = true;
    for (const auto& b : spec.budgets)
      id_free = id_free && b.id != id && b.flops != flops;
    if (id_free && values.size() >= 3) {
      const std::string where =
          from_bound ? fmt::format("from the axis bound up, mu_rec = 1 to {}", values.back())
                     : fmt::format("centred on x* = {:.3g}{}",
                                   centre,
                                   law_known ? " from the fitted law" : " of the largest budget");
      round.additions.push_back(
          {id,
           flops,
           true,
           values,
           fmt::format("a further budget, {:.3g}x above the largest, {}", spacing, where)});
    }
    if (law_known) {
      // The interior minimum with the widest 1-sigma band (or too few points to have one).
      const fitting::BudgetMinimum* loosest = nullptr;
      double loosest_sigma = -1.0;
      for (const auto& b : fit->budgets) {
        if (std::find(interior.begin(), interior.end(), b.budget_id) == interior.end())
          continue;
        const double sigma = std::isfinite(b.sigma_log_x) ? b.sigma_log_x : 1e9;
        if (sigma > loosest_sigma)
          loosest = &b, loosest_sigma = sigma;
      }
      if (loosest != nullptr) {
        const std::vector<int> planned = sweeps::axis_values_of_budget(spec, loosest->budget_id);
        // The two gaps next to the lowest observed loss: their geometric midpoints, where they
        // fall strictly inside.
        std::vector<double> targets;
        const auto at = std::find(planned.begin(), planned.end(), best_of[loosest->budget_id]);
        if (at != planned.end() && at != planned.begin() && at + 1 != planned.end()) {
          for (const auto& [a, b] :
               {std::make_pair(*(at - 1), *at), std::make_pair(*at, *(at + 1))}) {
            const double mid = std::sqrt(static_cast<double>(a) * b);
            if (std::llround(mid) > a && std::llround(mid) < b)
              targets.push_back(mid);
          }
        }
        const std::vector<int> mids =
            new_values(targets, std::set<int>(planned.begin(), planned.end()));
        if (!mids.empty()) {
          round.additions.push_back({loosest->budget_id,
                                     loosest->budget_flops,
                                     false,
                                     mids,
                                     fmt::format("tighten the interior minimum x* = {:.3g}: add {}",
                                                 loosest->x_star,
                                                 values_text(mids))});
        }
      }
    }
    if (interior.empty()) {
      why = "minimum at the axis bound at every budget; " + law_text;
    } else if (!law_known) {
      why = "every minimum bracketed but " + law_text;
    } else if (width > settings.exponent_ci_width) {
      why =
          fmt::format("every minimum bracketed but {} > {}", law_text, settings.exponent_ci_width);
    } else {
      why = fmt::format("every minimum bracketed and {} <= {}, but the fit is not usable yet: {}",
                        law_text,
                        settings.exponent_ci_width,
                        fmt::join(problems, "; "));
    }
  }
  if (round.additions.empty()) {
    round.action = "stop";
    round.reason =
        "nothing left to add" +
        (pinned.empty() ? std::string() : " (minimum at the axis bound: " + pinned.front() + ")") +
        "; " + law_text;
    return round;
  }
  for (const auto& p : pinned)
    why += "; " + p + " cannot be extended";

  // Plan the round as the orchestrator will, to count what it costs.
  std::vector<sweeps::RefineRound> with_round = input.rounds;
  with_round.push_back(round);
  const sweeps::SweepSpec next = sweeps::sweep_spec_from_json(
      sweeps::apply_refinement(input.document, base, with_round), input.file, read);
  sweeps::Plan plan = sweeps::plan_sweep(next);
  sweeps::assign_rounds(plan, with_round);
  int flagged = 0;
  for (const auto& cell : plan.cells) {
    if (cell.round != round.round)
      continue;
    if (!cell.kept) {
      ++flagged;
      continue;
    }
    ++round.cells;
    round.flops += cell.achieved_flops;
    round.gpu_hours += cell.gpu_hours;
  }
  if (round.cells == 0) {
    round.action = "stop";
    round.reason =
        fmt::format("the cells a round would add are all flagged ({}); {}", flagged, law_text);
    round.additions.clear();
    round.flops = round.gpu_hours = 0.0;
    return round;
  }
  if (settings.max_flops > 0 && input.flops_planned + round.flops > settings.max_flops) {
    round.action = "stop";
    round.reason = fmt::format(
        "max_flops: the round's {} cells ({:.3g} FLOPs) would take the sweep from {:.3g} past "
        "{:.3g} FLOPs; {}",
        round.cells,
        round.flops,
        input.flops_planned,
        settings.max_flops,
        law_text);
    round.additions.clear();
    round.cells = 0;
    round.flops = round.gpu_hours = 0.0;
    return round;
  }
  round.action = "refine";
  round.reason = why;
  if (flagged > 0)
    round.reason += fmt::format("; {} added cell(s) flagged by the planner", flagged);
  return round;
}

sweeps::RefineRound next_refinement(const results::Store& store, const std::string& sweep) {
  const SweepRuns runs = collect_runs(store, sweep);
  const auto record = store.find_sweep(sweep);
  RefineInput input;
  input.document = record->spec;
  input.file = record->file;
  for (auto& round : store.refine_rounds(sweep)) {
    if (round.action == "refine")
      input.rounds.push_back(std::move(round));
  }
  input.flops_planned = store.counts(sweep).flops_total;
  return decide_refinement(runs, input);
}

}  // namespace parcae::analysis
