// The sweep file: one JSON document that declares a whole study, read into a validated SweepSpec.
//
// A sweep names its data, a base model, its FLOP budgets (each with an explicit id) or its token
// counts, the axes to vary, the training and evaluation settings shared by every cell, and the
// resources per job. The planner (planner.h) expands it into cells. Reading collects every
// problem of the file before it throws, so a sweep file is fixed in one pass; each problem names
// the file, the field path and the value. The format is documented in docs/cli.md.
//
//   {
//     "name": "tiny-cpu",
//     "data": {"train": ["../../demo/data/train_*.bin"], "val": ["../../demo/data/val_*.bin"],
//              "prepare": {"command": ["bible", "-f", "Gen1:1-Rev22:21"], "out":
//              "../../demo/data"}},
//     "model": {"preset": "parcae-tiny", "context_length": 64, "training": {"adamw_lr": 4e-3}},
//     "budgets": [{"id": "2e12", "flops": 2e12}, {"id": "4e12", "flops": 4e12}],
//     "axes": {"mean_recurrence": ["1-fixed", 2, 4, 6], "seed": [0]},
//     "training": {"batch_tokens": 4096, "micro_batch_size": 16},
//     "eval": {"depths": [1, 2, 4, 8]},
//     "resources": {"gpus_per_job": 1, "jobs_per_gpu": 1},
//     "device": "cpu",
//     "flop_convention": "reference",
//     "plan": {"min_steps": 50}
//   }
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/flop_model.h"
#include "sweeps/job_config.h"
#include "sweeps/token_shards.h"

namespace parcae::sweeps {

// A value of the mean_recurrence axis: mu_rec with mu_bwd = ceil(mu_rec / 2) and Poisson depths,
// or one of the two mu_rec = 1 controls (parcae.md §6):
//   "1-fixed"    exactly T = 1 (decision 7), the project's fixed-depth control;
//   "1-poisson"  T = max(Poisson(1), 1), mean depth 1 + 1/e = 1.37, charged as T = 1: the control
//                [R]'s code trains as "mu_rec = 1".
// Both cost F(1, 1) (flop_model.h), so they compare the same budget like for like. Both are
// controls: their own series beside the mu_rec axis, not points of its isoFLOP parabolas
// (scaling-laws.md §2 step 1). A bare 1 trains as "1-poisson" does but is a point of the axis,
// like 2 or 4, as is the mu_rec = 1 a refinement round reaches.
struct RecurrenceChoice {
  int mean_recurrence = 1;
  bool fixed = false;            // "1-fixed"
  bool poisson_control = false;  // "1-poisson"
  bool control() const { return fixed || poisson_control; }
  // "4", "1", "1-fixed" or "1-poisson": the spelling used in files, plan tables and the exports.
  std::string label() const;
};

// A value of the model axis, or the base model when the sweep has no model axis.
struct ModelChoice {
  std::string label;  // the config's name; unique within a sweep
  ModelConfig config;
  // The preset's training settings (flop_model.h preset_training), then the sweep's "training",
  // then the model's own "training" object, each key of a later one replacing the earlier:
  // every cell of this model trains with these.
  TrainingConfig training;
  std::string preset;           // the preset the model starts from; empty for a full object
  nlohmann::json own_training;  // the model's "training" object as written; null when absent
};

// The axes; the planner takes their Cartesian product (budgets or train_tokens first, seeds last).
// An empty list means the axis is not varied.
struct SweepAxes {
  std::vector<ModelChoice> models;  // never empty after reading: the base model when not varied
  // Width d of each model: head_dim is kept, so n_heads = d / head_dim (d must be a multiple of
  // it); d_ff keeps its ratio to d (4d in every preset); ve_gate_channels = min(its value, d).
  std::vector<int> d_model;
  std::vector<int> n_layers;     // Transformer family: L
  std::vector<int> n_recurrent;  // looped family: L_R
  std::vector<RecurrenceChoice> mean_recurrence;
  std::vector<int64_t> train_tokens;  // fixed-data cells; exclusive with budgets
  std::vector<uint64_t> seeds = {0};
};

// One isoFLOP group. The id is what tables and fits group by; it is never recovered from the
// number by rounding. Given in the file as {"id": "1e18", "flops": 1e18}, as a bare number (the id
// is then its shortest %g spelling, e.g. "1e18"), or from a generator (ids of at most three
// significant digits, "2.15e11", more only where two would collide). A budget object may carry
// its own "axes" of model shape (model, d_model, n_layers, n_recurrent, mean_recurrence), which
// replace the sweep's for its cells: the size grid that shifts with C of every isoFLOP study.
struct Budget {
  std::string id;
  double flops = 0.0;  // C, training FLOPs under the convention of flop_model.h
  bool has_axes = false;
  SweepAxes axes;  // when has_axes: the sweep's axes with this budget's replacements
};

// How to make a sweep's shards when they are not there yet: tokenize some text (files, or the
// standard output of a command run without a shell), cut into documents, each after a BOS, into
// `out` (token_shards.h), with tokenizer.json beside the shards. The orchestrator runs it once,
// on first use, and the shards are reused from then on.
struct DataPreparation {
  std::vector<std::string> text_files;  // as written; relative to the data folder
  std::vector<std::string> command;     // argv, e.g. ["bible", "-f", "Gen1:1-Rev22:21"]
  std::string out;                      // folder of the shards, relative to the data folder
  double val_fraction = 0.1;            // held out, whole documents
  DocumentSplit documents = DocumentSplit::kFile;  // "file", "line" or "paragraph"
  HeldOut held_out = HeldOut::kTail;               // "tail" or "sample" (token_shards.h)
  // "tokenizer", "vocab_size", "tokenizer_model" (relative to the data folder) in the file.
  TokenizerOptions tokenizer;
  bool empty() const { return text_files.empty() && command.empty(); }
};

// Token shards as written in the file (patterns, relative to the data folder) and as found.
struct DataSpec {
  std::vector<std::string> train_patterns;
  std::vector<std::string> val_patterns;
  std::vector<std::string> train_shards;  // absolute, sorted, one entry per matching file
  std::vector<std::string> val_shards;
  DataPreparation prepare;  // empty when the shards must already exist
  std::string folder;       // absolute folder relative paths are resolved against
  // The id that starts every document, copied into every job (DataConfig::bos_token): packed
  // documents (parcae.md §9). Omitted: random windows, as sweep files written before had.
  int bos_token = kNoBosToken;
};

struct Resources {
  int gpus_per_job = 1;  // GPUs one job trains on
  int jobs_per_gpu = 1;  // jobs packed onto one GPU by the local launcher (gpus_per_job == 1 only)
};

// How the planner judges cells and estimates cost.
struct PlanSettings {
  int64_t min_steps = 200;     // cells with fewer optimizer steps are flagged
  double max_flop_gap = 0.01;  // cells whose achieved FLOPs miss the budget by more are flagged
  bool keep_flagged = false;   // record flagged cells as jobs anyway (they stay flagged)
  // Assumed sustained training FLOP/s of one GPU (or of one CPU job), for GPU-hour estimates.
  // The default is 40% of an H100's dense bf16 peak of 989.4e12 (parcae.md §11).
  double throughput_flops_per_s = 3.9576e14;
};

// Closed-loop refinement (the sweep file's "refine" block, docs/cli.md): after the grid, `sweep
// run` fits x* = k C^a along `axis` and adds cells in rounds (sweeps/refine.h) until the 95%
// interval of the exponent a is at most exponent_ci_width wide, or a cap is reached.
struct RefineSettings {
  std::string axis = "mean_recurrence";  // the swept variable; the one refinement supports
  double exponent_ci_width = 0.05;       // until.exponent_ci_width: ci_high - ci_low of a
  int max_rounds = 6;                    // rounds after the grid
  double max_flops = 0.0;                // cap on the sweep's planned FLOPs; 0 = none
  double step = 2.0;                     // geometric step along the axis beyond an edge, > 1
};

// The most cells one sweep may expand into (budgets or token counts x model picks x seeds). Each
// cell is a database row, a run folder and a trainer; a grid past this is a slip of a generator.
constexpr int64_t kMaxCellsPerSweep = 100000;

struct SweepSpec {
  std::string file;  // the file it was read from, as given
  std::string name;  // [A-Za-z0-9._-]+: it names folders and database rows
  std::string description;
  DataSpec data;
  std::vector<Budget> budgets;  // empty when the cells are defined by axes.train_tokens
  SweepAxes axes;
  TrainingConfig
      training;  // the file's "training" alone; each model's own is ModelChoice::training
  EvalConfig eval;
  Resources resources;
  std::string device = "auto";  // "auto", "cpu" or "cuda", copied into every job
  // How budgets become tokens ("reference", the default, or "paper"; flop_model.h), copied into
  // every job, which counts the FLOPs it spends the same way.
  FlopConvention flop_convention = FlopConvention::kReference;
  int64_t checkpoint_interval_steps = 0;
  PlanSettings plan;
  bool has_refine = false;  // the file has a "refine" block
  RefineSettings refine;
  nlohmann::json source;  // the document as read, stored with the sweep in the database

  // Every semantic problem at once, each "FILE: FIELD = VALUE: EXPECTED"; empty when valid.
  std::vector<std::string> validate() const;
};

// Options that are not part of the file.
struct SweepReadOptions {
  // Folder that relative data patterns are resolved against; empty = the sweep file's folder.
  std::string data_dir;
  // Expand data patterns and require each to match at least one file. Off only for planning
  // reports that never reach a trainer (tests of the arithmetic).
  bool require_data = true;
  // Command-line changes to the document, applied before it is read (apply_overrides).
  std::vector<std::string> overrides;
};

// All the problems of one sweep file. what() lists them one per line; the InputError parts
// (file, field, value) are those of the first problem.
class SweepFileError : public InputError {
 public:
  SweepFileError(const std::string& file, std::vector<std::string> problems);
  const char* what() const noexcept override { return all_.c_str(); }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
  std::string all_;
};

// Applies Hydra-style overrides to a sweep file's document, in order: `KEY=VALUE` sets a key (a
// path of keys and list indices, `training.batch_tokens` or `budgets.0.flops`), `+KEY=VALUE` adds
// one that must be absent, `++KEY=VALUE` sets either way, `~KEY` removes one. VALUE is JSON when
// it parses as JSON, else text; where the document has text, a scalar VALUE stays text. A model
// given as a preset name becomes {"preset": NAME} when a key inside it is set. Throws InputError
// naming `file`, the path and the override.
void apply_overrides(nlohmann::json& document,
                     const std::vector<std::string>& overrides,
                     const std::string& file);

// Reads, parses and validates a sweep file. // and /* */ comments are allowed; options.overrides
// are applied before validation, so the spec's source is the document as changed. Throws
// SweepFileError listing every problem (unknown fields with a did-you-mean, wrong types, bad
// values, data patterns matching nothing), or InputError when the file cannot be read or is not
// JSON.
SweepSpec read_sweep_file(const std::string& path, const SweepReadOptions& options = {});

// The same from a parsed document; `file` names it in messages and locates relative data paths.
SweepSpec sweep_spec_from_json(const nlohmann::json& document,
                               const std::string& file,
                               const SweepReadOptions& options = {});

// The values of a generator, in order: {"logspace": [lo, hi, n]} (geometric, both ends
// included), {"linspace": [lo, hi, n]} and {"range": [start, stop, step]} (stop included when
// reached). Throws InputError naming `file` and `field` for a malformed generator.
std::vector<double> expand_generator(const nlohmann::json& generator,
                                     const std::string& file,
                                     const std::string& field);

// "1e18", "2.5e18", "6.4e19", "4096": the shortest %g spelling of a budget, used as a generated id.
std::string budget_id_for(double flops);
// Ids for generated budgets: each with the fewest significant digits, at least three, at which
// all are distinct ("1e11", "2.15e11", "4.64e11", "1e12" for a logspace of four).
std::vector<std::string> budget_ids_for(const std::vector<double>& flops);

}  // namespace parcae::sweeps
