// isoFLOP analysis over any swept variable: runs selected and grouped, checked to differ only in
// x within a budget, D* = C / F(x*) by the best rule the source allows, and one fit per group.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "analysis/analysis.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

// Columns that describe a run's configuration. Runs of one budget and one x that differ in any of
// them belong to different series (different models, or a mu_rec axis crossing a width axis).
const std::vector<std::string> kDesignColumns = {"model",
                                                 "mean_recurrence",
                                                 "fixed_depth",
                                                 "looped",
                                                 "d_model",
                                                 "n_heads",
                                                 "head_dim",
                                                 "d_ff",
                                                 "n_layers",
                                                 "n_prelude",
                                                 "n_recurrent",
                                                 "n_coda",
                                                 "context_length",
                                                 "params",
                                                 "parameters_total"};

const std::set<std::string> kTokenColumns = {"tokens", "train_tokens", "tokens_done", "D"};

// Piecewise linear interpolation of ln F against ln x through the runs' points, extended
// linearly beyond the ends. Runs at one x average their ln F.
std::function<double(double)> interpolated_flops(const std::vector<double>& x,
                                                 const std::vector<double>& flops) {
  std::map<double, std::pair<double, int>> by_x;
  for (size_t i = 0; i < x.size(); ++i) {
    auto& [sum, count] = by_x[std::log(x[i])];
    sum += std::log(flops[i]);
    ++count;
  }
  std::vector<double> u, v;
  for (const auto& [log_x, entry] : by_x) {
    u.push_back(log_x);
    v.push_back(entry.first / entry.second);
  }
  return [u, v](double at) {
    if (u.size() == 1)
      return std::exp(v[0]);
    const double w = std::log(at);
    size_t k = 1;
    while (k + 1 < u.size() && w > u[k])
      ++k;
    const double slope = (v[k] - v[k - 1]) / (u[k] - u[k - 1]);
    return std::exp(v[k - 1] + slope * (w - u[k - 1]));
  };
}

std::string shape_key(const sweeps::ModelConfig& model) {
  sweeps::ModelConfig shape = model;
  shape.mean_recurrence = shape.mean_backward = 1;
  shape.depth_sampler = sweeps::DepthSampler::kPoisson;
  shape.name = "";
  return sweeps::to_json(shape).dump();
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string::npos)
    return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// Refuses a group whose runs at one budget and one x differ in a design column.
void check_one_series(const RunTable& table,
                      const RowGroup& group,
                      size_t budget_id_column,
                      size_t x_column,
                      const std::string& x_name,
                      const std::vector<std::string>& grouped) {
  std::vector<std::pair<std::string, size_t>> design;
  for (const auto& name : kDesignColumns) {
    if (!table.has_column(name) || table.column(name) == x_column)
      continue;
    if (std::find(grouped.begin(), grouped.end(), name) != grouped.end())
      continue;
    design.emplace_back(name, table.column(name));
  }
  std::map<std::pair<std::string, std::string>, size_t> first_row;
  for (size_t r : group.rows) {
    const auto& row = table.rows[r];
    const auto key = std::make_pair(trim(row[budget_id_column]), trim(row[x_column]));
    const auto [it, inserted] = first_row.emplace(key, r);
    if (inserted)
      continue;
    const auto& other = table.rows[it->second];
    for (const auto& [name, column] : design) {
      if (trim(row[column]) == trim(other[column]))
        continue;
      throw InputError(table.file,
                       name,
                       "'" + trim(other[column]) + "' and '" + trim(row[column]) + "'",
                       "two runs at budget " + key.first + " and " + x_name + " = " + key.second +
                           (group.key.empty() ? "" : " (" + group.label() + ")") + " differ in " +
                           name + ", so they are not one isoFLOP series",
                       "fit each " + name + " on its own: --group-by " + name +
                           ", or choose with "
                           "--where " +
                           name + "=...");
    }
  }
}

// The one convention the runs of a group were planned under; a mix is not one isoFLOP grid.
sweeps::FlopConvention planned_convention(const SweepRuns& runs,
                                          const std::vector<size_t>& rows,
                                          const std::string& file) {
  const sweeps::FlopConvention first = runs.runs[rows.front() - 1].flop_convention;
  for (size_t row : rows) {
    const RunResult& run = runs.runs[row - 1];
    if (run.flop_convention != first) {
      throw InputError(
          file,
          "flop_convention",
          "'" + sweeps::to_string(first) + "' and '" + sweeps::to_string(run.flop_convention) + "'",
          "the runs were planned under two FLOP conventions, so their budgets are "
          "not comparable",
          "choose one with --where flop_convention=...");
    }
  }
  return first;
}

// Refits `result` with each budget's C re-costed under `convention` at the budget's optimum
// (IsoflopRequest::flop_convention). F and F' come from the FLOP line when one looped shape is
// swept in mu_rec, else from each run's model, interpolated in ln x.
void recost(const SweepRuns& runs,
            const std::vector<size_t>& rows,
            sweeps::FlopConvention convention,
            bool one_shape,
            std::vector<fitting::IsoflopRun> points,
            fitting::IsoflopOptions options,
            IsoflopGroupFit& result) {
  const RunResult& first = runs.runs[rows.front() - 1];
  std::function<double(double)> planned, recosted;
  if (one_shape) {
    const sweeps::ModelConfig shape = first.model;
    const sweeps::FlopConvention from = first.flop_convention;
    planned = [shape, from](double mu) {
      return sweeps::train_flops_per_token_at(shape, mu, mu / 2.0, from);
    };
    recosted = [shape, convention](double mu) {
      return sweeps::train_flops_per_token_at(shape, mu, mu / 2.0, convention);
    };
  } else {
    std::vector<double> x, f_planned, f_recosted;
    for (size_t i = 0; i < rows.size(); ++i) {
      const RunResult& run = runs.runs[rows[i] - 1];
      x.push_back(points[i].x);
      f_planned.push_back(run.flops_per_token);
      f_recosted.push_back(
          static_cast<double>(sweeps::train_flops_per_token(run.model, convention)));
    }
    planned = interpolated_flops(x, f_planned);
    recosted = interpolated_flops(x, f_recosted);
  }
  // Each budget's optimum from the fit as planned; a budget without one (too few points, no
  // curvature) is re-costed at its lowest loss, so that it keeps its place among the budgets.
  std::map<std::string, double> x_star;
  for (const auto& budget : result.fit.budgets) {
    if (std::isfinite(budget.x_star) && budget.x_star > 0)
      x_star[budget.budget_id] = budget.x_star;
  }
  std::map<std::string, std::pair<double, double>> lowest;  // id -> (loss, x)
  for (const auto& p : points) {
    auto [it, inserted] = lowest.emplace(p.budget_id, std::make_pair(p.loss, p.x));
    if (!inserted && std::isfinite(p.loss) && !(it->second.first <= p.loss))
      it->second = {p.loss, p.x};
  }
  for (auto& p : points) {
    const auto found = x_star.find(p.budget_id);
    const double at = found != x_star.end() ? found->second : lowest.at(p.budget_id).second;
    p.budget_flops = p.budget_flops * recosted(at) / planned(at);
  }
  if (result.tokens_rule != TokensRule::kXIsTokens)
    options.flops_per_token = recosted;
  result.flops_per_token = options.flops_per_token;
  result.fit = fitting::fit_isoflop(points, options);
  result.flop_convention = convention;
  result.recosted = true;
}

}  // namespace

const char* to_string(TokensRule rule) {
  switch (rule) {
    case TokensRule::kFlopLine:
      return "D* = C / F(mu*, mu*/2) of the model (flop_model.h)";
    case TokensRule::kXIsTokens:
      return "D* = x*";
    case TokensRule::kInterpolated:
      return "D* = C / F(x*), ln F interpolated against ln x through the runs";
    case TokensRule::kNone:
      break;
  }
  return "D* not computed (no F per token and x is not D)";
}

IsoflopAnalysis analyse_isoflop(const Source& source, const IsoflopRequest& request) {
  const RunTable& table = source.table;
  IsoflopAnalysis out;
  out.x_column = resolve_column(table, request.x.empty() ? "mu_rec" : request.x, "--x");
  const std::string loss_column =
      resolve_column(table, request.loss.empty() ? "loss" : request.loss, "--loss-col");
  const std::string budget_column =
      resolve_column(table, request.budget.empty() ? "budget" : request.budget, "--budget-col");
  std::string tokens_column;
  if (!request.tokens.empty())
    tokens_column = resolve_column(table, request.tokens, "--tokens-col");
  else if (source.runs != nullptr)
    tokens_column = "tokens";
  // A sweep groups budgets by their ids; a CSV by the budget column's text, unless it has ids.
  const size_t budget_id_column =
      table.column(table.has_column("budget_id") ? "budget_id" : budget_column);
  const size_t x_index = table.column(out.x_column);
  const long job_column = table.has_column("job_id") ? static_cast<long>(table.column("job_id"))
                          : table.has_column("id")   ? static_cast<long>(table.column("id"))
                                                     : -1;
  const bool x_is_tokens = request.x_is_tokens || kTokenColumns.count(out.x_column) > 0;
  const bool has_flops = table.has_column("flops_per_token");

  const SelectedRows selected = select_rows(table, request.selection, out.x_column);
  out.notes = selected.notes;
  for (const RowGroup& group : selected.groups) {
    // Rows without a budget (fixed-data cells) have no isoFLOP parabola.
    std::vector<size_t> rows;
    for (size_t r : group.rows) {
      if (!trim(table.rows[r][table.column(budget_column)]).empty())
        rows.push_back(r);
    }
    if (rows.empty()) {
      throw InputError(table.file,
                       budget_column,
                       "(empty)",
                       "isoflop needs runs with a FLOP budget" +
                           (group.key.empty() ? std::string() : " in " + group.label()),
                       "an isoFLOP sweep has \"budgets\"; fixed-data cells have none");
    }
    RowGroup kept = group;
    kept.rows = rows;
    check_one_series(table,
                     kept,
                     budget_id_column,
                     x_index,
                     request.x.empty() ? "mu_rec" : request.x,
                     request.selection.group_by);
    std::vector<NumericColumnSpec> specs = {
        {budget_column, true}, {out.x_column, true}, {loss_column, false}};
    specs.push_back({tokens_column, true, true});
    specs.push_back({has_flops ? "flops_per_token" : "", true, true});
    const NumericColumns columns =
        read_numeric_columns(table, specs, request.skip_bad_rows, &kept.rows);
    for (const auto& skipped : columns.skipped)
      out.notes.push_back("skipped " + table.file + ": " + skipped);

    IsoflopGroupFit result;
    result.group = kept;
    std::vector<fitting::IsoflopRun> points;  // one per entry of columns.rows, in order
    for (size_t i = 0; i < columns.rows.size(); ++i) {
      const size_t r = columns.rows[i] - 1;
      points.push_back({trim(table.rows[r][budget_id_column]),
                        columns.values[0][i],
                        columns.values[1][i],
                        columns.values[2][i],
                        tokens_column.empty() ? fitting::kNotComputed : columns.values[3][i]});
      if (job_column >= 0)
        result.job_ids.push_back(table.rows[r][static_cast<size_t>(job_column)]);
    }
    std::sort(result.job_ids.begin(), result.job_ids.end());

    fitting::IsoflopOptions options = request.options;
    options.x_is_tokens = x_is_tokens;
    if (x_is_tokens) {
      result.tokens_rule = TokensRule::kXIsTokens;
    } else {
      // One model shape swept in mu_rec: the FLOP line itself, exact at any mu*.
      std::set<std::string> shapes;
      const sweeps::ModelConfig* model = nullptr;
      if (source.runs != nullptr && out.x_column == "mean_recurrence") {
        for (size_t row : columns.rows) {
          model = &source.runs->runs[row - 1].model;
          shapes.insert(shape_key(*model));
        }
      }
      if (shapes.size() == 1 && model->is_looped()) {
        const sweeps::ModelConfig shape = *model;
        options.flops_per_token = [shape](double mu) {
          return sweeps::train_flops_per_token_at(shape, mu, mu / 2.0);
        };
        result.tokens_rule = TokensRule::kFlopLine;
      } else if (has_flops) {
        options.flops_per_token = interpolated_flops(columns.values[1], columns.values[4]);
        result.tokens_rule = TokensRule::kInterpolated;
      }
    }
    result.flops_per_token = options.flops_per_token;
    result.fit = fitting::fit_isoflop(points, options);
    if (source.runs != nullptr) {
      result.flop_convention = planned_convention(*source.runs, columns.rows, table.file);
    }
    if (request.flop_convention && *request.flop_convention != result.flop_convention) {
      if (source.runs == nullptr) {
        throw InputError(table.file,
                         "--flop-convention",
                         sweeps::to_string(*request.flop_convention),
                         "re-costing needs a sweep from the database, whose runs record their "
                         "models and conventions; a CSV does not");
      }
      recost(*source.runs,
             columns.rows,
             *request.flop_convention,
             result.tokens_rule == TokensRule::kFlopLine,
             points,
             options,
             result);
    }
    out.groups.push_back(std::move(result));
  }
  return out;
}

std::optional<IsoflopAnalysis> analyse_sweep_isoflop(const SweepRuns& runs,
                                                     const std::string& x,
                                                     int bootstrap,
                                                     std::uint64_t seed) {
  const bool has_budget = std::any_of(runs.runs.begin(), runs.runs.end(), [](const auto& run) {
    return !run.budget_id.empty() && !run.control;
  });
  if (!has_budget)
    return std::nullopt;
  Source source;
  source.runs = &runs;
  source.table = runs_table(runs);
  IsoflopRequest request;
  request.x = x;
  request.options.bootstrap_resamples = bootstrap;
  request.options.seed = seed;
  return analyse_isoflop(source, request);
}

}  // namespace parcae::analysis
