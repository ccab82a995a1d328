// Refinement rounds on the orchestrator's side: recording a decided round as planned cells, and
// the loop of `sweep run` over rounds (orchestrator.h). What a round adds is decided elsewhere
// (analysis::next_refinement); here it is planned like any cell and run.
#include <filesystem>

#include "orchestrator/detail/job_files.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"

namespace parcae::orchestrator {
namespace {

using results::Store;

// The sweep's spec as stored, without data: the data of its cells is that of its recorded jobs,
// found when the sweep was first planned, so that a round's cells read the same shards (and their
// job ids follow from their configuration alone) wherever `sweep run` is started from.
sweeps::SweepSpec stored_spec(const Store& store, const results::SweepRecord& record) {
  sweeps::SweepReadOptions read;
  read.require_data = false;
  sweeps::SweepSpec spec = sweeps::sweep_spec_from_json(record.spec, record.file, read);
  for (const auto& job : store.jobs(record.name)) {
    if (job.config.contains("data")) {
      spec.data.train_shards = job.config["data"].value("train_shards", spec.data.train_shards);
      spec.data.val_shards = job.config["data"].value("val_shards", spec.data.val_shards);
      spec.data.bos_token = job.config["data"].value("bos_token", sweeps::kNoBosToken);
      break;
    }
  }
  return spec;
}

}  // namespace

std::vector<sweeps::RefineRound> refinement_rounds(const Store& store, const std::string& sweep) {
  std::vector<sweeps::RefineRound> out;
  for (auto& round : store.refine_rounds(sweep)) {
    if (round.action == "refine")
      out.push_back(std::move(round));
  }
  return out;
}

results::PlanRecordResult record_refinement(Store& store,
                                            const std::string& sweep,
                                            const sweeps::RefineRound& round) {
  const auto record = store.find_sweep(sweep);
  if (!record)
    throw InputError(store.path(), "sweep", sweep, "no such sweep in the database");
  const sweeps::SweepSpec base = stored_spec(store, *record);
  std::vector<sweeps::RefineRound> rounds = refinement_rounds(store, sweep);
  if (round.action == "refine")
    rounds.push_back(round);
  sweeps::SweepReadOptions read;
  read.require_data = false;
  sweeps::SweepSpec spec = sweeps::sweep_spec_from_json(
      sweeps::apply_refinement(record->spec, base, rounds), record->file, read);
  spec.source = record->spec;
  spec.data = base.data;
  sweeps::Plan plan = sweeps::plan_sweep(spec);
  sweeps::assign_rounds(plan, rounds);
  const results::PlanRecordResult result = store.record_plan(spec, plan, record->jobs_dir, &round);
  detail::write_job_files(store, sweep);
  return result;
}

RunSummary run_refining_sweep(const RunOptions& options,
                              const RefineDecider& decide,
                              const std::function<void(const sweeps::RefineRound&)>& on_round,
                              const std::function<RunSummary(const RunOptions&)>& run) {
  RunOptions pass = options;
  while (true) {
    RunSummary summary = run(pass);
    if (pass.dry_run || summary.stopped_by_signal != 0 || summary.exit_code() != 0)
      return summary;
    // Later passes run the sweep by name: its file was planned, with its rounds, by the first.
    pass.sweep = summary.sweep;
    pass.overrides.clear();
    pass.jobs_root.clear();
    Store store = Store::open(options.db_path, Store::Mode::kExisting);
    const auto record = store.find_sweep(summary.sweep);
    if (!record || !record->spec.contains("refine"))
      return summary;
    const sweeps::RefineRound round = decide(store, summary.sweep);
    if (on_round)
      on_round(round);
    record_refinement(store, summary.sweep, round);
    if (round.action != "refine")
      return summary;
  }
}

}  // namespace parcae::orchestrator
