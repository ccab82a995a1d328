// A sweep's finished runs from the database, and the same runs as a table of named columns.
#include <algorithm>
#include <cmath>

#include "analysis/analysis.h"
#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/suggest.h"

namespace parcae::analysis {
namespace {

// Shortest text that reads back as the same double.
std::string exact_text(double value) {
  return nlohmann::json(value).dump();
}

const std::vector<std::string> kRunColumns = {"job_id",
                                              "cell",
                                              "model",
                                              "budget_id",
                                              "budget_flops",
                                              "mean_recurrence",
                                              "mean_backward",
                                              "fixed_depth",
                                              "control",
                                              "recurrence",
                                              "looped",
                                              "flop_convention",
                                              "seed",
                                              "d_model",
                                              "n_heads",
                                              "head_dim",
                                              "d_ff",
                                              "n_layers",
                                              "n_prelude",
                                              "n_recurrent",
                                              "n_coda",
                                              "context_length",
                                              "flops_per_token",
                                              "tokens",
                                              "params",
                                              "params_noncore",
                                              "params_core",
                                              "params_effective",
                                              "loss"};

std::vector<std::string> run_row(const RunResult& run) {
  const sweeps::ModelConfig& m = run.model;
  auto integer = [](int64_t v) { return std::to_string(v); };
  return {run.job_id,
          run.cell,
          run.model_label,
          run.budget_id,
          run.budget_flops > 0 ? exact_text(run.budget_flops) : "",
          integer(run.mean_recurrence),
          integer(m.is_looped() ? m.mean_backward : 1),
          run.fixed_depth ? "1" : "0",
          run.control ? "1" : "0",
          run.recurrence,
          m.is_looped() ? "1" : "0",
          sweeps::to_string(run.flop_convention),
          std::to_string(run.seed),
          integer(m.d_model),
          integer(m.n_heads),
          integer(m.head_dim),
          integer(m.d_ff),
          integer(m.n_effective_layers()),
          integer(m.is_looped() ? m.n_prelude : 0),
          integer(m.is_looped() ? m.n_recurrent : 0),
          integer(m.is_looped() ? m.n_coda : 0),
          integer(m.context_length),
          exact_text(run.flops_per_token),
          exact_text(run.realised_tokens),
          exact_text(run.params),
          exact_text(run.params_noncore),
          exact_text(run.params_core),
          exact_text(run.params_noncore + run.mean_recurrence * run.params_core),
          exact_text(run.loss)};
}

}  // namespace

SweepRuns collect_runs(const results::Store& store, const std::string& sweep) {
  if (!store.find_sweep(sweep)) {
    std::vector<std::string> names;
    for (const auto& s : store.sweeps())
      names.push_back(s.name);
    throw InputError(
        store.path(),
        "sweep",
        "'" + sweep + "'",
        "no such sweep in the database",
        names.empty() ? "the database holds no sweeps" : sweeps::suggestion_hint(sweep, names));
  }
  SweepRuns out;
  out.sweep = sweep;
  for (const auto& job : store.jobs(sweep)) {
    if (job.state != results::JobState::kDone || !job.loss_val || !std::isfinite(*job.loss_val)) {
      out.not_used.push_back(job.cell + ": " + results::to_string(job.state));
      continue;
    }
    const sweeps::JobConfig config =
        sweeps::job_config_from_json(job.config, job.out_dir + "/job.json");
    RunResult run;
    run.job_id = job.id;
    run.cell = job.cell;
    run.budget_id = job.budget_id.value_or("");
    run.budget_flops = job.budget_flops.value_or(0.0);
    run.mean_recurrence = job.mean_recurrence;
    run.fixed_depth = job.fixed_depth;
    const sweeps::ModelConfig& m = config.model;
    const sweeps::RecurrenceChoice recurrence{
        m.mean_recurrence, m.depth_sampler == sweeps::DepthSampler::kFixed, config.poisson_control};
    run.control = m.is_looped() && recurrence.control();
    run.recurrence = m.is_looped() ? recurrence.label() : "-";
    run.flop_convention = config.flop_convention;
    run.seed = job.seed;
    run.realised_tokens = static_cast<double>(config.max_steps() * config.training.batch_tokens);
    run.flops_per_token =
        static_cast<double>(sweeps::train_flops_per_token(config.model, config.flop_convention));
    run.loss = *job.loss_val;
    run.model_label = job.model;
    run.model = config.model;
    const sweeps::ParameterCounts counts = sweeps::count_parameters(config.model);
    run.params = static_cast<double>(counts.total);
    run.params_noncore = static_cast<double>(counts.noncore);
    run.params_core = static_cast<double>(counts.per_loop);
    const auto evaluations = store.evaluations(job.id);
    int64_t last_step = -1;
    for (const auto& e : evaluations)
      last_step = std::max(last_step, e.step);
    for (const auto& e : evaluations) {
      if (e.step == last_step && e.loss)
        run.loss_at_depth[e.depth] = *e.loss;
    }
    out.runs.push_back(run);
  }
  return out;
}

RunTable runs_table(const SweepRuns& runs) {
  RunTable table;
  table.file = "sweep " + runs.sweep;
  table.header = kRunColumns;
  for (const auto& run : runs.runs)
    table.rows.push_back(run_row(run));
  return table;
}

std::string Source::name() const {
  return table.file;
}

}  // namespace parcae::analysis
