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
//
// Given the size of the training corpus, each cell also reports the epochs its D implies,
// epochs = D / corpus tokens, and a cell over one epoch carries a warning with the fraction of
// the tokens it trains on that repeat earlier ones, 1 - 1/epochs (the loader walks a permutation
// of the corpus per epoch, without replacement). Repetition is a warning, not a flag: such a cell
// is still a job, but an isoFLOP grid that mixes repeated and fresh data says so before it runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sweeps/job_config.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {

// The training corpus the cells draw from. measure_corpus() finds it; a default one is unknown.
struct CorpusSize {
  int64_t train_tokens = 0;  // tokens of the training split; 0 when unknown
  bool estimated = false;    // from the text data.prepare would tokenize, before the shards exist
  std::string note;          // how it was found, or why it is unknown; one line
  bool known() const { return train_tokens > 0; }
};

// Reads the token count from the header of every training shard the spec found (llm.c format,
// token_shards.h; only the 1 KiB header is read). A spec without shards (planned before its
// data.prepare has run, or without data) gets an estimate from data.prepare's text files at one
// token per byte, the byte tokenizer's rate, less the held-out fraction; a prepare command's
// output cannot be known before it runs, so that corpus is unknown, with a note saying when it
// will be. A shard whose header is not an llm.c header leaves the corpus unknown, with the
// file, field and value in the note (the trainer refuses that shard when it opens it).
CorpusSize measure_corpus(const SweepSpec& spec);

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
  std::string recurrence_label;    // "4", "1", "1-fixed", "1-poisson"; "-" for a transformer
  ParameterCounts parameters;      // N split (flop_model.h)
  int64_t flops_per_token = 0;     // F, training FLOPs per token
  int64_t train_tokens = 0;        // D
  int64_t steps = 0;               // floor(D / batch_tokens)
  int64_t trained_tokens = 0;      // steps * batch_tokens
  double achieved_flops = 0.0;     // trained_tokens * F
  double flop_gap = 0.0;           // (C - achieved) / C; 0 for a fixed-data cell
  double gpu_hours = 0.0;          // achieved / throughput_flops_per_s / 3600 (all GPUs of the job)
  double epochs = 0.0;             // D / corpus tokens; 0 when the corpus size is unknown
  std::vector<std::string> flags;  // why the cell is not sensible; empty when it is
  std::vector<std::string> warnings;  // worth knowing, not a reason to skip (more than one epoch)
  bool kept = true;                   // recorded as a job (false for flagged cells by default)
  int round = 0;                      // refinement round that added the cell; 0 = the grid

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
  int64_t repeating = 0;      // jobs that train on more than one epoch of the corpus
  double max_epochs = 0.0;    // the most epochs of any job; 0 when the corpus size is unknown
};

struct Plan {
  std::string sweep;
  FlopConvention flop_convention = FlopConvention::kReference;  // how C became D (flop_model.h)
  CorpusSize corpus;
  std::vector<PlannedCell> cells;  // budget (or tokens), model, layers, mu_rec, seed order
  PlanTotals totals;
  // Cells that become jobs, in order.
  std::vector<const PlannedCell*> jobs() const;
};

// Expands the Cartesian product of the spec's axes into cells. Throws SweepFileError when a
// cell's job fails JobConfig::validate() (for example batch_tokens not a multiple of the context
// length), naming the cell; a cell that merely has too few steps is flagged, not thrown. With an
// unknown corpus the cells carry no epochs.
Plan plan_sweep(const SweepSpec& spec, const CorpusSize& corpus = {});

// {"sweep": NAME, "cells": [...], "totals": {...}}; numbers unrounded.
nlohmann::json to_json(const PlannedCell& cell);
nlohmann::json to_json(const Plan& plan);
// One header line, then one line per cell (RFC 4180 quoting).
std::string to_csv(const Plan& plan);
// The human table: one line per cell, then the totals and the flagged cells with their reasons.
std::string to_table(const Plan& plan);

}  // namespace parcae::sweeps
