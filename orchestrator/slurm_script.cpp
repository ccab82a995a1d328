// The Slurm backend's text work (orchestrator/detail/slurm.h): quoting, the batch script and its
// template, and reading what scontrol, squeue, sacct and the run logs print.
#include <sstream>

#include <fmt/format.h>

#include "orchestrator/detail/slurm.h"
#include "sweeps/error.h"

namespace parcae::orchestrator::detail {

const char kDefaultBatchTemplate[] = R"TEMPLATE(#!/bin/bash
# A parcae-scale batch script: runs parcae-train for one job of a sweep (one task of an array).
# The sbatch options are on sbatch's command line; #SBATCH lines added here are read too (the
# command line wins). To change it, start from `parcae-scale sweep slurm-template` and pass the
# copy with `sweep run --backend slurm --template FILE`. docs/slurm.md describes the contract.
{{parcae_variables}}
set -u
mkdir -p "$PARCAE_OUT_DIR"
run_log=$PARCAE_OUT_DIR/slurm-runs.log
if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
  slurm_id=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
else
  slurm_id=$SLURM_JOB_ID
fi
restart=${SLURM_RESTART_COUNT:-0}
echo "start $slurm_id $restart $(hostname -s) $(date +%s)" >>"$run_log"
if [ -z "${OMP_NUM_THREADS:-}" ]; then export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}; fi

# The trainer runs in the background so that this shell can pass on what Slurm sends it: USR2
# before the time limit (--signal=B:USR2@...), TERM on requeue, preemption or scancel. On TERM the
# trainer saves a checkpoint and exits 143; the next run resumes from it.
trainer_pid=0
stop_trainer() { if [ "$trainer_pid" -gt 0 ]; then kill -TERM "$trainer_pid" 2>/dev/null; fi; }
trap stop_trainer USR2 TERM INT
if [ "$PARCAE_TASKS" -gt 1 ]; then
  # One rank per GPU; parcae-train reads SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID.
  MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  MASTER_PORT=$((PARCAE_MASTER_PORT_BASE + SLURM_JOB_ID % 1000))
  export MASTER_ADDR MASTER_PORT
  srun --ntasks="$PARCAE_TASKS" --kill-on-bad-exit=1 \
    "$PARCAE_TRAINER" --job "$PARCAE_OUT_DIR/job.json" --out "$PARCAE_OUT_DIR" \
    >>"$PARCAE_OUT_DIR/trainer.log" 2>&1 &
else
  "$PARCAE_TRAINER" --job "$PARCAE_OUT_DIR/job.json" --out "$PARCAE_OUT_DIR" \
    >>"$PARCAE_OUT_DIR/trainer.log" 2>&1 &
fi
trainer_pid=$!
while true; do
  wait "$trainer_pid"
  code=$?
  # A trapped signal cuts wait short while the trainer is still saving: wait again.
  if kill -0 "$trainer_pid" 2>/dev/null; then continue; fi
  if [ "$code" -gt 128 ]; then
    wait "$trainer_pid" 2>/dev/null
    again=$?
    if [ "$again" -ne 127 ]; then code=$again; fi
  fi
  break
done
echo "end $slurm_id $restart $code $(date +%s)" >>"$run_log"
exit "$code"
)TEMPLATE";

namespace {

constexpr char kVariablesLine[] = "{{parcae_variables}}";

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return "";
  const size_t last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(separator, start);
    out.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos)
      return out;
    start = at + 1;
  }
}

std::optional<int> to_int(const std::string& text) {
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used != text.size())
      return std::nullopt;
    return value;
  } catch (const std::logic_error&) {
    return std::nullopt;
  }
}

}  // namespace

std::string shell_quote(const std::string& value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string render_batch_script(const std::string& template_text,
                                const std::string& template_name,
                                const BatchScript& script) {
  if (script.tasks.empty())
    throw Error("render_batch_script: no tasks");
  std::string variables;
  variables += "PARCAE_SWEEP=" + shell_quote(script.sweep) + "\n";
  variables += "PARCAE_TRAINER=" + shell_quote(script.trainer) + "\n";
  variables += fmt::format("PARCAE_TASKS={}\n", script.ranks);
  variables += fmt::format("PARCAE_MASTER_PORT_BASE={}\n", script.master_port_base);
  const auto assign = [](const BatchTask& task) {
    return "PARCAE_JOB_ID=" + shell_quote(task.job_id) + "; PARCAE_CELL=" + shell_quote(task.cell) +
           "; PARCAE_OUT_DIR=" + shell_quote(task.out_dir);
  };
  if (script.tasks.size() == 1) {
    variables += assign(script.tasks.front()) + "\n";
  } else {
    variables += "case \"${SLURM_ARRAY_TASK_ID:-}\" in\n";
    for (size_t i = 0; i < script.tasks.size(); ++i)
      variables += fmt::format("  {}) {} ;;\n", i, assign(script.tasks[i]));
    variables +=
        "  *) echo \"parcae: no job for array task '${SLURM_ARRAY_TASK_ID:-}'\" >&2; exit 2 ;;\n";
    variables += "esac\n";
  }
  variables += "export PARCAE_SWEEP PARCAE_JOB_ID PARCAE_CELL PARCAE_OUT_DIR";

  std::string out;
  int found = 0;
  for (const std::string& line : split(template_text, '\n')) {
    if (trim(line) == kVariablesLine) {
      ++found;
      out += variables + "\n";
    } else {
      out += line + "\n";
    }
  }
  if (found != 1) {
    throw InputError(template_name,
                     "template",
                     fmt::format("{} lines {}", found, kVariablesLine),
                     fmt::format("expected exactly one line that is {}", kVariablesLine),
                     "it is replaced by the job's variables; see docs/slurm.md");
  }
  if (!out.empty() && out.back() == '\n' && !template_text.empty() && template_text.back() == '\n')
    out.pop_back();
  return out;
}

SlurmLimits parse_slurm_config(const std::string& text) {
  SlurmLimits limits;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos)
      continue;
    const std::string key = trim(line.substr(0, eq));
    const std::string value = trim(line.substr(eq + 1));
    if (key == "MaxArraySize") {
      if (const auto n = to_int(value))
        limits.max_array_size = *n;
    } else if (key == "MaxJobCount") {
      if (const auto n = to_int(value))
        limits.max_job_count = *n;
    } else if (key == "ClusterName") {
      limits.cluster_name = value;
    }
  }
  return limits;
}

std::vector<std::pair<size_t, size_t>> split_into_arrays(size_t count, int max_array_size) {
  const size_t size = static_cast<size_t>(std::max(1, max_array_size));
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t first = 0; first < count; first += size)
    out.emplace_back(first, std::min(count, first + size));
  return out;
}

std::vector<SlurmRun> parse_run_log(const std::string& text, const std::string& slurm_id) {
  std::vector<SlurmRun> runs;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind, id, restart_text, third, time_text;
    if (!(words >> kind >> id >> restart_text >> third >> time_text) || id != slurm_id)
      continue;
    const auto restart = to_int(restart_text);
    if (!restart)
      continue;
    if (kind == "start") {
      SlurmRun run;
      run.slurm_id = id;
      run.restart = *restart;
      run.host = third;
      try {
        run.started_at = std::stod(time_text);
      } catch (const std::logic_error&) {
      }
      runs.push_back(run);
    } else if (kind == "end") {
      const auto code = to_int(third);
      if (!code)
        continue;
      // The end of the latest run with this restart count that has none yet.
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->restart == *restart && !it->exit_code) {
          it->exit_code = *code;
          break;
        }
      }
    }
  }
  return runs;
}

SlurmStateClass classify_slurm_state(const std::string& state) {
  static const char* const queued[] = {
      "PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"};
  static const char* const active[] = {"RUNNING",
                                       "CONFIGURING",
                                       "COMPLETING",
                                       "SUSPENDED",
                                       "SIGNALING",
                                       "STAGE_OUT",
                                       "STOPPED",
                                       "RESIZING"};
  for (const char* name : queued) {
    if (state == name)
      return SlurmStateClass::kQueued;
  }
  for (const char* name : active) {
    if (state == name)
      return SlurmStateClass::kActive;
  }
  return SlurmStateClass::kFinished;
}

std::map<std::string, SlurmJobState> parse_job_states(const std::string& text) {
  std::map<std::string, SlurmJobState> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const std::vector<std::string> fields = split(trim(line), '|');
    if (fields.size() < 2 || fields[0].empty() || fields[0].find('.') != std::string::npos)
      continue;
    SlurmJobState state;
    state.state = trim(fields[1]);
    const size_t space = state.state.find(' ');
    if (space != std::string::npos)
      state.state = state.state.substr(0, space);  // "CANCELLED by 0"
    if (fields.size() > 2)
      state.reason = trim(fields[2]);
    out[fields[0]] = state;
  }
  return out;
}

}  // namespace parcae::orchestrator::detail
