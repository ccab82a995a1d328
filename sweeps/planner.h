// The isoFLOP planner: a SweepSpec expanded into cells, each a JobConfig with its cost.
//
// For a budget C and a model with training FLOPs per token F = F(mu_rec, mu_bwd) (flop_model.h,
// loop-aware), a cell trains
//   D = floor(C / F) tokens,  steps = floor(D / batch_tokens),
//   achieved FLOPs = steps * batch_tokens * F,  gap = (C - achieved) / C  (>= 0),
// so every cell spends its budget up to less than one optimizer step (parcae.md §11). A cell of
// the fixed-data kind (axes.train_tokens) has D given and no budget. Cells that cannot be trained
// sensibly (fewer than plan.min_steps steps, or achieved FLOPs more than plan.max_flop_gap short
// of the budget) are flagged: reported with the reason and left out of the jobs, unless the sweep
// sets plan.keep_flagged. Planning is pure: the same spec gives the same cells and job ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/job_config.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {

struct PlannedCell {
  std::string name;    // e.g. "C1e18-mu4-seed0", unique within the sweep
  std::string job_id;  // JobConfig::id() of `job`
  JobConfig job;       // what parcae-train is given; job.train_tokens is D
  std::string model_label;
  std::string budget_id;           // empty for a fixed-data cell
  double budget_flops = 0.0;       // target C; 0 for a fixed-data cell
  int mean_recurrence = 1;         // mu_rec (1 for a transformer or the fixed control)
  int mean_backward = 1;           // mu_bwd
  bool fixed_depth = false;        // the "1-fixed" control or a transformer
  ParameterCounts parameters;      // N split (flop_model.h)
  int64_t flops_per_token = 0;     // F, training FLOPs per token
  int64_t train_tokens = 0;        // D
  int64_t steps = 0;               // floor(D / batch_tokens)
  int64_t trained_tokens = 0;      // steps * batch_tokens
  double achieved_flops = 0.0;     // trained_tokens * F
  double flop_gap = 0.0;           // (C - achieved) / C; 0 for a fixed-data cell
  double gpu_hours = 0.0;          // achieved / throughput_flops_per_s / 3600 (all GPUs of the job)
  std::vector<std::string> flags;  // why the cell is not sensible; empty when it is
  bool kept = true;                // recorded as a job (false for flagged cells by default)
  int round = 0;                   // refinement round that added the cell; 0 = the grid

  bool flagged() const { return !flags.empty(); }
};

struct PlanTotals {
  int64_t cells = 0;          // every cell, flagged or not
  int64_t jobs = 0;           // cells that become jobs
  int64_t flagged = 0;        // cells with at least one flag
  double target_flops = 0.0;  // sum of C over the jobs
  double achieved_flops = 0.0;
  int64_t trained_tokens = 0;
  int64_t steps = 0;
  double gpu_hours = 0.0;
  double max_flop_gap = 0.0;  // the largest gap among the jobs with a budget
};

struct Plan {
  std::string sweep;
  std::vector<PlannedCell> cells;  // budget (or tokens), model, layers, mu_rec, seed order
  PlanTotals totals;
  // Cells that become jobs, in order.
  std::vector<const PlannedCell*> jobs() const;
};

// Expands the Cartesian product of the spec's axes into cells. Throws SweepFileError when a
// cell's job fails JobConfig::validate() (for example batch_tokens not a multiple of the context
// length), naming the cell; a cell that merely has too few steps is flagged, not thrown.
Plan plan_sweep(const SweepSpec& spec);

// {"sweep": NAME, "cells": [...], "totals": {...}}; numbers unrounded.
nlohmann::json to_json(const PlannedCell& cell);
nlohmann::json to_json(const Plan& plan);
// One header line, then one line per cell (RFC 4180 quoting).
std::string to_csv(const Plan& plan);
// The human table: one line per cell, then the totals and the flagged cells with their reasons.
std::string to_table(const Plan& plan);

}  // namespace parcae::sweeps
