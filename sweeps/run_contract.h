// The contract between the orchestrator and parcae-train, written once: what a run folder holds,
// what the trainer's exit codes mean, and the names and version of its events (docs/events.md,
// docs/trainer.md). The trainer writes by these names, and the planner, the scheduler, the Slurm
// backend and the ingest read by them, so a rename is one edit here.
#pragma once

namespace parcae::sweeps {

// A run folder, <jobs root>/<sweep>/<job id>/.
inline constexpr const char* kJobFileName = "job.json";  // the JobConfig, written at planning
inline constexpr const char* kEventsFileName = "events.jsonl";   // one event per line, appended
inline constexpr const char* kCheckpointDirName = "checkpoint";  // the trainer's checkpoints
inline constexpr const char* kTrainerLogName = "trainer.log";    // the trainer's stdout and stderr

// Exit codes of parcae-train.
inline constexpr int kExitDone = 0;         // finished; the last event says done or diverged
inline constexpr int kExitError = 1;        // failed; the last event is an error
inline constexpr int kExitBadInput = 2;     // bad job file, data or run folder; nothing trained
inline constexpr int kExitPreempted = 143;  // 128 + SIGTERM: checkpointed, run again to resume

// The events of events.jsonl; every one carries "event", "time" (unix s) and "step".
inline constexpr int kEventsVersion = 1;  // in the start event; bumped when a field changes meaning
inline constexpr const char* kEventStart = "start";
inline constexpr const char* kEventStep = "step";
inline constexpr const char* kEventEval = "eval";
inline constexpr const char* kEventCheckpoint = "checkpoint";
inline constexpr const char* kEventDone = "done";
inline constexpr const char* kEventPreempted = "preempted";
inline constexpr const char* kEventError = "error";

// The "status" of a done event.
inline constexpr const char* kStatusDone = "done";
inline constexpr const char* kStatusDiverged = "diverged";

}  // namespace parcae::sweeps
