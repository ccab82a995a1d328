// Refinement rounds of a sweep: what a round adds, and the sweep document with the rounds applied.
//
// A sweep with a "refine" block (sweep_spec.h, RefineSettings) is run as its grid, then in rounds:
// after each, the isoFLOP fit decides (analysis/, decide_refinement) which values of the refined
// axis each budget gains, or which budget is added, and the round is recorded with its reason.
// The cells of a round are planned like any cell: the rounds are applied to the sweep's document
// (each budget gets an explicit "axes" entry holding its values) and the result goes through the
// ordinary reader and planner, so FLOP accounting, cell names and job ids are those of a file
// that listed the values by hand. This file owns that translation and the round's JSON shape,
// which the database stores (results/schema.sql, table refine_rounds).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/planner.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {

// Values of the refined axis that one budget gains in a round. A budget the sweep does not have
// yet is added with exactly these values.
struct RefineAddition {
  std::string budget_id;
  double budget_flops = 0.0;  // C, FLOPs
  bool new_budget = false;
  std::vector<int> values;  // mu_rec values, ascending, none already in the budget
  std::string reason;       // one line: "minimum at the low edge (mu_rec = 2): 2 steps below"
};

// One decision after a round's cells finished: the cells of round `round` (action "refine"), or
// why refinement ends there (action "stop", no additions).
struct RefineRound {
  int round = 0;       // 1 for the first round after the grid (round 0)
  std::string action;  // "refine" or "stop"
  std::string reason;  // one line, printed and stored
  std::vector<RefineAddition> additions;
  // The fit the decision rests on: x* = k C^a over the budgets whose minimum is interior.
  double exponent = 0.0;  // a; NaN when the law could not be fitted
  double exponent_ci_low = 0.0;
  double exponent_ci_high = 0.0;
  int runs_used = 0;     // finished runs the fit read
  int budgets_used = 0;  // budgets that entered the power law
  double flops = 0.0;    // planned FLOPs of the round's new cells
  double gpu_hours = 0.0;
  int cells = 0;  // new cells
};

// The JSON stored in refine_rounds.decision and printed by `sweep refine --json`; NaN is null.
nlohmann::json to_json(const RefineRound& round);
// Throws InputError naming `where` when `json` is not a round.
RefineRound refine_round_from_json(const nlohmann::json& json, const std::string& where);

// The sweep document with the additions of `rounds` applied, in order: budgets become explicit
// objects, each budget that gains values gets "axes": {"mean_recurrence": [...]} holding its old
// values (the "1-fixed" and "1-poisson" controls included) and the new ones in ascending order, and
// new budgets are appended. `spec` is the sweep read from `document`. Throws InputError when an
// addition names a budget twice as new, or an existing budget with other FLOPs.
nlohmann::json apply_refinement(const nlohmann::json& document,
                                const SweepSpec& spec,
                                const std::vector<RefineRound>& rounds);

// Sets each cell's round: the first round that added its budget and mu_rec, else 0 (the grid).
void assign_rounds(Plan& plan, const std::vector<RefineRound>& rounds);

// The mu_rec values (not the mu_rec = 1 controls) the spec gives budget `budget_id`, ascending;
// empty for an unknown id.
std::vector<int> axis_values_of_budget(const SweepSpec& spec, const std::string& budget_id);

}  // namespace parcae::sweeps
