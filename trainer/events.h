// DIR/events.jsonl, the trainer's contract with the orchestrator (docs/events.md).
//
// One JSON object per line, appended (a resumed run appends to the same file), each line
// written with a single write(2) on an O_APPEND descriptor so that a reader tailing the file
// never sees two events interleaved, and a kill leaves at most one incomplete last line. Every
// event carries "event", "time" (unix seconds) and "step". No LibTorch here.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "sweeps/run_contract.h"

namespace parcae::trainer {

using sweeps::kEventsVersion;  // sweeps/run_contract.h

// Seconds since the unix epoch, with sub-second resolution.
double unix_time_s();

class EventLog {
 public:
  // Creates or appends to `path`; throws parcae::Error when it cannot be opened.
  explicit EventLog(const std::string& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Writes {"event": type, "time": now, "step": step, ...fields} as one line. Non-finite
  // numbers are written as null. Throws parcae::Error when the write fails.
  void write(const std::string& type, int64_t step, const nlohmann::json& fields);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace parcae::trainer
