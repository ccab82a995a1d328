// parcae::sweeps — what a study is made of, before anything runs.
//
// Offers: the model description with its parameter counts and the one FLOP formula
// (flop_model.h), the job file that the orchestrator hands to parcae-train (job_config.h), the
// token shard format both sides read and write (token_shards.h), and the sweep file with its
// isoFLOP planner (sweep_spec.h, planner.h). Nothing here depends on LibTorch or SQLite.
#pragma once

#include "sweeps/atomic_file.h"   // write_file_atomically
#include "sweeps/error.h"         // parcae::Error, parcae::InputError
#include "sweeps/flop_model.h"    // ModelConfig, count_parameters, train_flops_per_token, preset
#include "sweeps/job_config.h"    // JobConfig, read_job_file, write_job_file
#include "sweeps/planner.h"       // Plan, PlannedCell, plan_sweep
#include "sweeps/refine.h"        // RefineRound, apply_refinement, assign_rounds
#include "sweeps/sweep_spec.h"    // SweepSpec, read_sweep_file, SweepFileError
#include "sweeps/token_shards.h"  // TokenShard, write_token_shard, prepare_text_shards
