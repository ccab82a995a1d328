// The append-only JSON Lines writer of DIR/events.jsonl.
#include "trainer/events.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "sweeps/error.h"

namespace parcae::trainer {

double unix_time_s() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double>(now).count();
}

EventLog::EventLog(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error("cannot open " + path + " for appending: " + std::strerror(errno));
}

EventLog::~EventLog() {
  if (fd_ >= 0)
    ::close(fd_);
}

void EventLog::write(const std::string& type, int64_t step, const nlohmann::json& fields) {
  nlohmann::json event = {{"event", type}, {"time", unix_time_s()}, {"step", step}};
  for (const auto& [key, value] : fields.items())
    event[key] = value;
  // nlohmann writes NaN and infinities as null already; the line ends the event.
  const std::string line = event.dump() + "\n";
  const off_t size_before = ::lseek(fd_, 0, SEEK_END);
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t written = ::write(fd_, line.data() + done, line.size() - done);
    if (written < 0) {
      if (errno == EINTR)
        continue;
      const int reason = errno;
      // A part of a line (a full disk takes what fits) is cut off, so the file stays whole lines.
      if (done > 0 && size_before >= 0)
        (void)::ftruncate(fd_, size_before);
      throw Error("cannot append to " + path_ + ": " + std::strerror(reason));
    }
    done += static_cast<size_t>(written);
  }
}

}  // namespace parcae::trainer
