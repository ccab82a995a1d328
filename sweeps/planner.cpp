// Expansion of a SweepSpec into cells, and the plan's JSON, CSV and table forms.
#include "sweeps/planner.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

namespace parcae::sweeps {
namespace {

// One value per axis; an axis that is not varied contributes a single "unset" entry.
struct AxisPick {
  const Budget* budget = nullptr;
  const int64_t* train_tokens = nullptr;
  const ModelChoice* model = nullptr;
  const int* d_model = nullptr;
  const int* n_layers = nullptr;
  const int* n_recurrent = nullptr;
  const RecurrenceChoice* recurrence = nullptr;
  uint64_t seed = 0;
};

template <typename T>
std::vector<const T*> picks(const std::vector<T>& values) {
  std::vector<const T*> out;
  for (const T& v : values)
    out.push_back(&v);
  if (out.empty())
    out.push_back(nullptr);
  return out;
}

std::string cell_name(const SweepAxes& axes, const AxisPick& pick, const ModelConfig& model) {
  std::vector<std::string> parts;
  if (pick.budget != nullptr)
    parts.push_back("C" + pick.budget->id);
  if (pick.train_tokens != nullptr)
    parts.push_back("D" + std::to_string(*pick.train_tokens));
  if (axes.models.size() > 1)
    parts.push_back(pick.model->label);
  if (pick.d_model != nullptr)
    parts.push_back("d" + std::to_string(*pick.d_model));
  if (pick.n_layers != nullptr)
    parts.push_back("L" + std::to_string(*pick.n_layers));
  if (pick.n_recurrent != nullptr)
    parts.push_back("R" + std::to_string(*pick.n_recurrent));
  if (pick.recurrence != nullptr) {
    parts.push_back(pick.recurrence->fixed ? "mu1fixed"
                    : pick.recurrence->poisson_control
                        ? "mu1poisson"
                        : "mu" + std::to_string(pick.recurrence->mean_recurrence));
  } else if (model.is_looped()) {
    parts.push_back("mu" + std::to_string(model.mean_recurrence));
  }
  parts.push_back("seed" + std::to_string(pick.seed));
  std::string name;
  for (const auto& p : parts)
    name += (name.empty() ? "" : "-") + p;
  return name;
}

ModelConfig apply_axes(const AxisPick& pick) {
  ModelConfig model = pick.model->config;
  if (pick.d_model != nullptr) {
    // sweep_spec.h: head_dim kept, d_ff in proportion, the value-embedding gate at most d wide.
    const int d = *pick.d_model;
    model.d_ff = static_cast<int>(
        std::llround(static_cast<double>(model.d_ff) * d / std::max(1, model.d_model)));
    model.n_heads = d / std::max(1, model.head_dim);
    model.ve_gate_channels = std::min(model.ve_gate_channels, d);
    model.d_model = d;
  }
  if (pick.n_layers != nullptr)
    model.n_layers = *pick.n_layers;
  if (pick.n_recurrent != nullptr)
    model.n_recurrent = *pick.n_recurrent;
  if (pick.recurrence != nullptr) {
    if (pick.recurrence->fixed) {
      model.depth_sampler = DepthSampler::kFixed;
      model.mean_recurrence = model.mean_backward = 1;
    } else {
      model.depth_sampler = DepthSampler::kPoisson;
      model.mean_recurrence = pick.recurrence->mean_recurrence;
      model.mean_backward = default_mean_backward(model.mean_recurrence);
    }
  }
  return model;
}

std::string percent(double fraction) {
  return fmt::format("{:.3g}%", 100.0 * fraction);
}

// What every cell of one model (one pick of the model, layer, recurrent and mu_rec axes) shares,
// worked out once: a sweep has few models and many cells.
struct ModelFacts {
  ModelConfig model;
  std::vector<std::string> problems;  // model.validate()
  ParameterCounts parameters;
  int64_t flops_per_token = 0;
  JobIdentityParts identity;  // with the sweep's training, eval and data
};

ModelFacts model_facts(const SweepSpec& spec, const AxisPick& pick) {
  ModelFacts facts;
  facts.model = apply_axes(pick);
  facts.problems = facts.model.validate();
  facts.parameters = count_parameters(facts.model);
  facts.flops_per_token = train_flops_per_token(facts.model, spec.flop_convention);
  JobConfig shared;
  shared.model = facts.model;
  shared.training = pick.model->training;
  shared.eval = spec.eval;
  shared.data.train_shards = spec.data.train_shards;
  shared.data.val_shards = spec.data.val_shards;
  shared.data.bos_token = spec.data.bos_token;
  facts.identity = JobIdentityParts::of(shared);
  return facts;
}

PlannedCell plan_cell(const SweepSpec& spec,
                      const CorpusSize& corpus,
                      const AxisPick& pick,
                      const ModelFacts& facts,
                      std::vector<std::string>& problems) {
  PlannedCell cell;
  const ModelConfig& model = facts.model;
  cell.name = cell_name(
      pick.budget != nullptr && pick.budget->has_axes ? pick.budget->axes : spec.axes, pick, model);
  cell.model_label = pick.model->label;
  for (const auto& p : facts.problems)
    problems.push_back(spec.file + ": cell " + cell.name + ": model." + p);
  cell.parameters = facts.parameters;
  cell.flops_per_token = facts.flops_per_token;
  cell.mean_recurrence = model.is_looped() ? model.mean_recurrence : 1;
  cell.mean_backward = model.is_looped() ? model.mean_backward : 1;
  cell.fixed_depth = !model.is_looped() || model.depth_sampler == DepthSampler::kFixed;
  const bool poisson_control = pick.recurrence != nullptr && pick.recurrence->poisson_control;
  cell.recurrence_label = !model.is_looped()
                              ? "-"
                              : RecurrenceChoice{model.mean_recurrence,
                                                 model.depth_sampler == DepthSampler::kFixed,
                                                 poisson_control}
                                    .label();
  if (pick.budget != nullptr) {
    cell.budget_id = pick.budget->id;
    cell.budget_flops = pick.budget->flops;
    try {
      cell.train_tokens = cell.flops_per_token > 0
                              ? tokens_for_budget(model, cell.budget_flops, spec.flop_convention)
                              : 0;
    } catch (const InputError& e) {
      problems.push_back(spec.file + ": cell " + cell.name + ": budget \"" + cell.budget_id +
                         "\": " + e.what());
      return cell;
    }
  } else {
    cell.train_tokens = *pick.train_tokens;
  }
  const int64_t batch = pick.model->training.batch_tokens;
  cell.steps = batch > 0 ? cell.train_tokens / batch : 0;
  cell.trained_tokens = cell.steps * batch;
  cell.achieved_flops =
      static_cast<double>(cell.trained_tokens) * static_cast<double>(cell.flops_per_token);
  if (cell.budget_flops > 0)
    cell.flop_gap = (cell.budget_flops - cell.achieved_flops) / cell.budget_flops;
  cell.gpu_hours = cell.achieved_flops / spec.plan.throughput_flops_per_s / 3600.0;
  if (corpus.known()) {
    cell.epochs = static_cast<double>(cell.train_tokens) / static_cast<double>(corpus.train_tokens);
    if (cell.epochs > 1.0) {
      cell.warnings.push_back(fmt::format(
          "D = {} tokens is {:.3g} epochs of the {}{}-token training set: {} of the tokens it "
          "trains on repeat earlier ones",
          cell.train_tokens,
          cell.epochs,
          corpus.estimated ? "estimated " : "",
          corpus.train_tokens,
          percent(1.0 - 1.0 / cell.epochs)));
    }
  }

  if (cell.steps == 0) {
    cell.flags.push_back(
        fmt::format("D = {} tokens is less than one batch of {}: the model is too large for "
                    "the budget",
                    cell.train_tokens,
                    batch));
  } else if (cell.steps < spec.plan.min_steps) {
    cell.flags.push_back(fmt::format("only {} optimizer steps, fewer than plan.min_steps = {}",
                                     cell.steps,
                                     spec.plan.min_steps));
  }
  if (cell.budget_flops > 0 && cell.flop_gap > spec.plan.max_flop_gap) {
    cell.flags.push_back(
        fmt::format("achieved FLOPs {:.3f}% below the budget, more than plan.max_flop_gap = {}",
                    100.0 * cell.flop_gap,
                    percent(spec.plan.max_flop_gap)));
  }
  cell.kept = !cell.flagged() || spec.plan.keep_flagged;

  JobConfig& job = cell.job;
  job.sweep = spec.name;
  job.cell = cell.name;
  job.budget_id = cell.budget_id;
  job.budget_flops = cell.budget_flops;
  job.train_tokens = cell.train_tokens;
  job.flop_convention = spec.flop_convention;
  job.poisson_control = poisson_control;
  job.seed = pick.seed;
  job.model = model;
  job.training = pick.model->training;
  job.eval = spec.eval;
  job.data.train_shards = spec.data.train_shards;
  job.data.val_shards = spec.data.val_shards;
  job.data.bos_token = spec.data.bos_token;
  job.checkpoint_interval_steps = spec.checkpoint_interval_steps;
  job.device = spec.device;
  job.gpus = spec.resources.gpus_per_job;
  cell.job_id = job.id(facts.identity);
  if (cell.kept && cell.steps > 0) {
    for (const auto& p : job.validate()) {
      // Shards are checked by the sweep reader, which knows the file's patterns; the BOS id is
      // checked here, against each cell's vocabulary.
      if (p.rfind("data.train_shards", 0) == 0 || p.rfind("data.val_shards", 0) == 0)
        continue;
      problems.push_back(spec.file + ": cell " + cell.name + ": " + p);
    }
  }
  return cell;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos)
    return text;
  std::string out = "\"";
  for (char c : text)
    out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The shortest text that reads back as the same double.
std::string exact(double value) {
  return nlohmann::json(value).dump();
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines)
    out += (out.empty() ? "" : "; ") + line;
  return out;
}

}  // namespace

std::vector<const PlannedCell*> Plan::jobs() const {
  std::vector<const PlannedCell*> out;
  for (const auto& cell : cells) {
    if (cell.kept)
      out.push_back(&cell);
  }
  return out;
}

Plan plan_sweep(const SweepSpec& spec, const CorpusSize& corpus) {
  std::vector<std::string> problems = spec.validate();
  if (!problems.empty())
    throw SweepFileError(spec.file, problems);
  Plan plan;
  plan.sweep = spec.name;
  plan.flop_convention = spec.flop_convention;
  plan.corpus = corpus;
  // The model axes, in the order the cells walk them, each pick's facts worked out once: for the
  // sweep's axes, and for each budget that carries its own.
  struct ModelPicks {
    std::vector<AxisPick> picks;
    std::vector<ModelFacts> facts;
  };
  auto model_picks_of = [&](const SweepAxes& axes) {
    ModelPicks out;
    for (const ModelChoice* model : picks(axes.models)) {
      for (const int* d_model : picks(axes.d_model)) {
        for (const int* layers : picks(axes.n_layers)) {
          for (const int* recurrent : picks(axes.n_recurrent)) {
            for (const RecurrenceChoice* recurrence : picks(axes.mean_recurrence)) {
              out.picks.push_back(
                  {nullptr, nullptr, model, d_model, layers, recurrent, recurrence, 0});
              out.facts.push_back(model_facts(spec, out.picks.back()));
            }
          }
        }
      }
    }
    return out;
  };
  const ModelPicks shared = model_picks_of(spec.axes);
  const auto budgets = picks(spec.budgets);
  const auto token_counts = picks(spec.axes.train_tokens);
  plan.cells.reserve(budgets.size() * token_counts.size() * shared.picks.size() *
                     spec.axes.seeds.size());
  for (const Budget* budget : budgets) {
    const ModelPicks own =
        budget != nullptr && budget->has_axes ? model_picks_of(budget->axes) : ModelPicks{};
    const ModelPicks& chosen = budget != nullptr && budget->has_axes ? own : shared;
    const std::vector<AxisPick>& model_picks = chosen.picks;
    const std::vector<ModelFacts>& facts = chosen.facts;
    for (const int64_t* tokens : token_counts) {
      for (size_t m = 0; m < model_picks.size(); ++m) {
        for (uint64_t seed : spec.axes.seeds) {
          AxisPick pick = model_picks[m];
          pick.budget = budget;
          pick.train_tokens = tokens;
          pick.seed = seed;
          plan.cells.push_back(plan_cell(spec, corpus, pick, facts[m], problems));
        }
      }
    }
  }
  if (!problems.empty())
    throw SweepFileError(spec.file, problems);
  std::unordered_set<std::string> ids;
  for (const PlannedCell& cell : plan.cells) {
    PlanTotals& t = plan.totals;
    ++t.cells;
    if (cell.flagged())
      ++t.flagged;
    if (!ids.insert(cell.job_id).second) {
      problems.push_back(spec.file + ": cell " + cell.name +
                         " trains the same job as an earlier cell");
    }
    if (!cell.kept)
      continue;
    ++t.jobs;
    t.target_flops += cell.budget_flops;
    t.achieved_flops += cell.achieved_flops;
    t.trained_tokens += cell.trained_tokens;
    t.steps += cell.steps;
    t.gpu_hours += cell.gpu_hours;
    if (cell.budget_flops > 0)
      t.max_flop_gap = std::max(t.max_flop_gap, cell.flop_gap);
    t.repeating += cell.epochs > 1.0 ? 1 : 0;
    t.max_epochs = std::max(t.max_epochs, cell.epochs);
  }
  if (!problems.empty())
    throw SweepFileError(spec.file, problems);
  return plan;
}

nlohmann::json to_json(const PlannedCell& cell) {
  // The names of the jobs table, its export and `sweep status --json` (docs/cli.md).
  nlohmann::json j = {
      {"cell", cell.name},
      {"job_id", cell.job_id},
      {"model", cell.model_label},
      {"budget_id", cell.budget_id.empty() ? nlohmann::json() : nlohmann::json(cell.budget_id)},
      {"budget_flops",
       cell.budget_flops > 0 ? nlohmann::json(cell.budget_flops) : nlohmann::json()},
      {"mean_recurrence", cell.mean_recurrence},
      {"mean_backward", cell.mean_backward},
      {"fixed_depth", cell.fixed_depth},
      {"recurrence", cell.recurrence_label},
      {"parameters_total", cell.parameters.total},
      {"parameters_noncore", cell.parameters.noncore},
      {"parameters_core", cell.parameters.core},
      {"parameters_embedding", cell.parameters.embedding},
      {"flops_per_token", cell.flops_per_token},
      {"train_tokens", cell.train_tokens},
      {"steps", cell.steps},
      {"trained_tokens", cell.trained_tokens},
      {"achieved_flops", cell.achieved_flops},
      {"flop_gap", cell.flop_gap},
      {"gpu_hours", cell.gpu_hours},
      {"epochs", cell.epochs > 0 ? nlohmann::json(cell.epochs) : nlohmann::json()},
      {"seed", cell.job.seed},
      {"flags", cell.flags},
      {"warnings", cell.warnings},
      {"kept", cell.kept},
      {"round", cell.round}};
  return j;
}

nlohmann::json to_json(const Plan& plan) {
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& cell : plan.cells)
    cells.push_back(to_json(cell));
  const PlanTotals& t = plan.totals;
  const CorpusSize& corpus = plan.corpus;
  return {
      {"sweep", plan.sweep},
      {"flop_convention", to_string(plan.flop_convention)},
      {"corpus",
       {{"train_tokens", corpus.known() ? nlohmann::json(corpus.train_tokens) : nlohmann::json()},
        {"estimated", corpus.estimated},
        {"note", corpus.note}}},
      {"cells", cells},
      {"totals",
       {{"cells", t.cells},
        {"jobs", t.jobs},
        {"flagged", t.flagged},
        {"target_flops", t.target_flops},
        {"achieved_flops", t.achieved_flops},
        {"trained_tokens", t.trained_tokens},
        {"steps", t.steps},
        {"gpu_hours", t.gpu_hours},
        {"max_flop_gap", t.max_flop_gap},
        {"repeating", t.repeating},
        {"max_epochs", t.max_epochs > 0 ? nlohmann::json(t.max_epochs) : nlohmann::json()}}}};
}

std::string to_csv(const Plan& plan) {
  std::string out =
      "cell,job_id,model,budget_id,budget_flops,mean_recurrence,mean_backward,fixed_depth,"
      "recurrence,parameters_total,parameters_noncore,parameters_core,parameters_embedding,"
      "flops_per_token,train_tokens,steps,trained_tokens,achieved_flops,flop_gap,gpu_hours,"
      "epochs,seed,kept,round,flags,warnings\n";
  for (const auto& c : plan.cells) {
    out += fmt::format(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        csv_field(c.name),
        c.job_id,
        csv_field(c.model_label),
        csv_field(c.budget_id),
        exact(c.budget_flops),
        c.mean_recurrence,
        c.mean_backward,
        c.fixed_depth ? 1 : 0,
        c.recurrence_label,
        c.parameters.total,
        c.parameters.noncore,
        c.parameters.core,
        c.parameters.embedding,
        c.flops_per_token,
        c.train_tokens,
        c.steps,
        c.trained_tokens,
        exact(c.achieved_flops),
        exact(c.flop_gap),
        exact(c.gpu_hours),
        c.epochs > 0 ? exact(c.epochs) : std::string(),
        c.job.seed,
        c.kept ? 1 : 0,
        c.round,
        csv_field(joined(c.flags)),
        csv_field(joined(c.warnings)));
  }
  return out;
}

std::string to_table(const Plan& plan) {
  size_t width = 4;
  for (const auto& c : plan.cells)
    width = std::max(width, c.name.size());
  std::string out = fmt::format(
      "{:<{}}  {:>11} {:>11} {:>10} {:>9} {:>12} {:>7} {:>10} {:>10} {:>8} {:>8} {:>9}\n",
      "cell",
      width,
      "N total",
      "N noncore",
      "N core",
      "mu/bwd",
      "D tokens",
      "epochs",
      "target C",
      "achieved",
      "gap",
      "steps",
      "GPU-h");
  for (const auto& c : plan.cells) {
    // The two mu_rec = 1 controls cost the same F(1, 1) and train differently: name them apart.
    const std::string mu = c.recurrence_label == "1-fixed" ? "1 fixed"
                           : c.recurrence_label == "1-poisson"
                               ? "1 poisson"
                               : fmt::format("{}/{}", c.mean_recurrence, c.mean_backward);
    out += fmt::format(
        "{:<{}}  {:>11} {:>11} {:>10} {:>9} {:>12} {:>7} {:>10} {:>10.4g} {:>8} {:>8} "
        "{:>9.3g}{}{}\n",
        c.name,
        width,
        c.parameters.total,
        c.parameters.noncore,
        c.parameters.core,
        mu,
        c.train_tokens,
        c.epochs > 0 ? fmt::format("{:.3g}", c.epochs) : std::string("-"),
        c.budget_flops > 0 ? fmt::format("{:.4g}", c.budget_flops) : std::string("-"),
        c.achieved_flops,
        c.budget_flops > 0 ? percent(c.flop_gap) : std::string("-"),
        c.steps,
        c.gpu_hours,
        c.round > 0 ? fmt::format("  round {}", c.round) : std::string(),
        c.flagged() ? (c.kept ? "  FLAGGED (kept)" : "  FLAGGED (skipped)") : "");
  }
  const PlanTotals& t = plan.totals;
  out += fmt::format(
      "totals: {} cells, {} jobs, {} flagged; target {:.4g} FLOPs, achieved {:.4g} FLOPs "
      "(largest gap {}); {} tokens, {} steps, {:.3g} GPU-hours\n",
      t.cells,
      t.jobs,
      t.flagged,
      t.target_flops,
      t.achieved_flops,
      percent(t.max_flop_gap),
      t.trained_tokens,
      t.steps,
      t.gpu_hours);
  out += fmt::format("FLOPs: the {} convention (docs/flops.md)\n", to_string(plan.flop_convention));
  out += plan.corpus.known()
             ? fmt::format("corpus: {}{} training tokens ({}); most epochs of a job {:.3g}\n",
                           plan.corpus.estimated ? "about " : "",
                           plan.corpus.train_tokens,
                           plan.corpus.note,
                           t.max_epochs)
             : fmt::format("corpus: size unknown ({}); epochs not computed\n", plan.corpus.note);
  for (const auto& c : plan.cells) {
    if (c.flagged())
      out += fmt::format("flagged {}: {}\n", c.name, joined(c.flags));
  }
  for (const auto& c : plan.cells) {
    if (!c.warnings.empty() && c.kept)
      out += fmt::format("over one epoch {}: {}\n", c.name, joined(c.warnings));
  }
  return out;
}

}  // namespace parcae::sweeps
