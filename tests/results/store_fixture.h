// A database with a small planned sweep, for the store and ingest tests. The sweep is planned
// without data files (require_data = false): these tests never start a trainer.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "results/results.h"
#include "sweeps/planner.h"
#include "sweeps/sweep_spec.h"
#include "tests/support/scratch_dir.h"

namespace parcae::test_support {

// parcae-micro at context 64, one budget of 2e11 FLOPs, mu_rec over `mus` (85-110 steps each).
inline nlohmann::json tiny_sweep_json(const std::vector<int>& mus = {2, 4},
                                      double adamw_lr = 8e-3) {
  return {{"name", "tiny"},
          {"data", {{"train", "train_*.bin"}, {"val", "val_*.bin"}}},
          {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
          {"budgets", {{{"id", "2e11"}, {"flops", 2e11}}}},
          {"axes", {{"mean_recurrence", mus}}},
          {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}, {"adamw_lr", adamw_lr}}},
          {"plan", {{"min_steps", 50}}}};
}

struct PlannedSweep {
  sweeps::SweepSpec spec;
  sweeps::Plan plan;
};

inline PlannedSweep plan_json(const nlohmann::json& document) {
  sweeps::SweepReadOptions options;
  options.require_data = false;
  PlannedSweep out;
  out.spec = sweeps::sweep_spec_from_json(document, "tiny.json", options);
  out.plan = sweeps::plan_sweep(out.spec);
  return out;
}

inline results::PlanRecordResult record(results::Store& store,
                                        const nlohmann::json& document,
                                        const std::string& jobs_dir) {
  const PlannedSweep planned = plan_json(document);
  return store.record_plan(planned.spec, planned.plan, jobs_dir);
}

inline results::AttemptStart local_start(const std::string& owner = "host/1/1") {
  results::AttemptStart start;
  start.backend = "local";
  start.host = "host";
  start.gpu_model = "cpu";
  start.owner = owner;
  return start;
}

}  // namespace parcae::test_support
