// The run folders of planned jobs, shared by planning a sweep file and recording a refinement
// round: each new job's job.json is written as soon as the job is recorded.
#pragma once

#include <string>

#include "results/results.h"

namespace parcae::orchestrator::detail {

// Writes <out_dir>/job.json for every planned job of `sweep` that has none and never started.
void write_job_files(const results::Store& store, const std::string& sweep);

}  // namespace parcae::orchestrator::detail
