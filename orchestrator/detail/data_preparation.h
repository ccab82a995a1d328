// First-use preparation of a sweep's data (the sweep file's data.prepare), for plan_sweep_file.
#pragma once

#include <functional>
#include <string>

#include "sweeps/sweep_spec.h"

namespace parcae::orchestrator::detail {

using PreparationNotice = std::function<void(const std::string&)>;

// Writes the shards of spec.data.prepare when its folder has none yet (train_000000.bin,
// val_000000.bin and tokenizer.json); true when it wrote them. `spec` must have been read without
// requiring data. Throws InputError for a command that cannot run or fails, or text that cannot be
// read.
bool prepare_sweep_data(const sweeps::SweepSpec& spec, const PreparationNotice& notice);

// True when spec.data.prepare's folder already holds its shards (a dry run can then count them).
bool sweep_data_prepared(const sweeps::SweepSpec& spec);

}  // namespace parcae::orchestrator::detail
