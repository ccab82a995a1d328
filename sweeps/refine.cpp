// Refinement rounds as JSON, and the sweep document with the rounds applied (refine.h).
#include "sweeps/refine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "sweeps/error.h"

namespace parcae::sweeps {
namespace {

nlohmann::json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json();
}

double number_from(const nlohmann::json& json, const char* key) {
  const auto it = json.find(key);
  if (it == json.end() || !it->is_number())
    return std::numeric_limits<double>::quiet_NaN();
  return it->get<double>();
}

// A budget's values of the refined axis: the mu_rec = 1 controls and the mu_rec values.
struct AxisValues {
  bool fixed_control = false;
  bool poisson_control = false;
  std::set<int> values;
  nlohmann::json to_json() const {
    nlohmann::json out = nlohmann::json::array();
    if (fixed_control)
      out.push_back("1-fixed");
    if (poisson_control)
      out.push_back("1-poisson");
    for (int v : values)
      out.push_back(v);
    return out;
  }
};

AxisValues values_of(const SweepAxes& axes) {
  AxisValues out;
  for (const auto& choice : axes.mean_recurrence) {
    if (choice.fixed)
      out.fixed_control = true;
    else if (choice.poisson_control)
      out.poisson_control = true;
    else
      out.values.insert(choice.mean_recurrence);
  }
  return out;
}

}  // namespace

nlohmann::json to_json(const RefineRound& round) {
  nlohmann::json additions = nlohmann::json::array();
  for (const auto& a : round.additions) {
    additions.push_back({{"budget_id", a.budget_id},
                         {"budget_flops", a.budget_flops},
                         {"new_budget", a.new_budget},
                         {"values", a.values},
                         {"reason", a.reason}});
  }
  return {{"round", round.round},
          {"action", round.action},
          {"reason", round.reason},
          {"additions", additions},
          {"exponent", number_or_null(round.exponent)},
          {"exponent_ci",
           {number_or_null(round.exponent_ci_low), number_or_null(round.exponent_ci_high)}},
          {"runs_used", round.runs_used},
          {"budgets_used", round.budgets_used},
          {"cells", round.cells},
          {"flops", round.flops},
          {"gpu_hours", round.gpu_hours}};
}

RefineRound refine_round_from_json(const nlohmann::json& json, const std::string& where) {
  try {
    RefineRound round;
    round.round = json.at("round").get<int>();
    round.action = json.at("action").get<std::string>();
    round.reason = json.at("reason").get<std::string>();
    for (const auto& a : json.at("additions")) {
      RefineAddition addition;
      addition.budget_id = a.at("budget_id").get<std::string>();
      addition.budget_flops = a.at("budget_flops").get<double>();
      addition.new_budget = a.at("new_budget").get<bool>();
      addition.values = a.at("values").get<std::vector<int>>();
      addition.reason = a.value("reason", "");
      round.additions.push_back(addition);
    }
    round.exponent = number_from(json, "exponent");
    const auto ci = json.find("exponent_ci");
    round.exponent_ci_low = std::numeric_limits<double>::quiet_NaN();
    round.exponent_ci_high = std::numeric_limits<double>::quiet_NaN();
    if (ci != json.end() && ci->is_array() && ci->size() == 2) {
      if ((*ci)[0].is_number())
        round.exponent_ci_low = (*ci)[0].get<double>();
      if ((*ci)[1].is_number())
        round.exponent_ci_high = (*ci)[1].get<double>();
    }
    round.runs_used = json.value("runs_used", 0);
    round.budgets_used = json.value("budgets_used", 0);
    round.cells = json.value("cells", 0);
    round.flops = json.value("flops", 0.0);
    round.gpu_hours = json.value("gpu_hours", 0.0);
    return round;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where, "decision", json.dump(), std::string("expected a round: ") + e.what());
  }
}

std::vector<int> axis_values_of_budget(const SweepSpec& spec, const std::string& budget_id) {
  for (const auto& b : spec.budgets) {
    if (b.id == budget_id) {
      const AxisValues v = values_of(b.has_axes ? b.axes : spec.axes);
      return {v.values.begin(), v.values.end()};
    }
  }
  return {};
}

nlohmann::json apply_refinement(const nlohmann::json& document,
                                const SweepSpec& spec,
                                const std::vector<RefineRound>& rounds) {
  bool adds = false;
  for (const auto& r : rounds)
    adds = adds || !r.additions.empty();
  if (!adds)
    return document;
  // Budgets in the spec's order, as objects, with their current values.
  struct BudgetEntry {
    nlohmann::json object;
    double flops = 0.0;
    AxisValues values;
    bool changed = false;
  };
  std::vector<BudgetEntry> budgets;
  std::map<std::string, size_t> index;
  const nlohmann::json* listed = document.contains("budgets") && document.at("budgets").is_array()
                                     ? &document.at("budgets")
                                     : nullptr;
  for (size_t i = 0; i < spec.budgets.size(); ++i) {
    const Budget& b = spec.budgets[i];
    BudgetEntry entry;
    if (listed != nullptr && i < listed->size() && (*listed)[i].is_object())
      entry.object = (*listed)[i];
    else
      entry.object = {{"id", b.id}, {"flops", b.flops}};
    entry.flops = b.flops;
    entry.values = values_of(b.has_axes ? b.axes : spec.axes);
    index[b.id] = budgets.size();
    budgets.push_back(entry);
  }
  for (const auto& round : rounds) {
    for (const auto& a : round.additions) {
      const auto it = index.find(a.budget_id);
      if (it == index.end()) {
        BudgetEntry entry;
        entry.object = {{"id", a.budget_id}, {"flops", a.budget_flops}};
        entry.flops = a.budget_flops;
        index[a.budget_id] = budgets.size();
        budgets.push_back(entry);
      } else if (a.new_budget && budgets[it->second].flops != a.budget_flops) {
        throw InputError(spec.file,
                         "refine round " + std::to_string(round.round),
                         a.budget_id,
                         "adds a budget whose id the sweep already uses for other FLOPs");
      }
      BudgetEntry& entry = budgets[index[a.budget_id]];
      entry.values.values.insert(a.values.begin(), a.values.end());
      entry.changed = true;
    }
  }
  nlohmann::json out = document;
  nlohmann::json list = nlohmann::json::array();
  for (auto& entry : budgets) {
    if (entry.changed) {
      nlohmann::json axes =
          entry.object.contains("axes") ? entry.object.at("axes") : nlohmann::json::object();
      axes["mean_recurrence"] = entry.values.to_json();
      entry.object["axes"] = axes;
    }
    list.push_back(entry.object);
  }
  out["budgets"] = list;
  return out;
}

void assign_rounds(Plan& plan, const std::vector<RefineRound>& rounds) {
  std::map<std::pair<std::string, int>, int> first;
  for (const auto& round : rounds) {
    for (const auto& a : round.additions) {
      for (int v : a.values)
        first.emplace(std::make_pair(a.budget_id, v), round.round);
    }
  }
  for (auto& cell : plan.cells) {
    const auto it = first.find({cell.budget_id, cell.mean_recurrence});
    const bool control = cell.fixed_depth || cell.job.poisson_control;
    cell.round = it != first.end() && !control ? it->second : 0;
  }
}

}  // namespace parcae::sweeps
