// Process identities from /proc, host names and pidfds.
#include "orchestrator/detail/process.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace parcae::orchestrator::detail {

std::string host_name() {
  char buffer[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buffer, sizeof(buffer) - 1) != 0)
    return "localhost";
  return buffer;
}

std::optional<uint64_t> process_start_ticks(int64_t pid) {
  if (pid <= 0)
    return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text))
    return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces: parse after the last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string state;
  fields >> state;  // field 3
  if (state == "Z" || state == "X")
    return std::nullopt;
  std::string skip;
  for (int field = 4; field < 22; ++field)
    fields >> skip;
  uint64_t ticks = 0;
  if (!(fields >> ticks))
    return std::nullopt;
  return ticks;
}

std::string process_identity(int64_t pid) {
  const auto ticks = process_start_ticks(pid);
  return ticks ? std::to_string(pid) + "/" + std::to_string(*ticks) : "";
}

bool identity_alive(const std::string& identity) {
  const size_t slash = identity.find('/');
  if (slash == std::string::npos)
    return false;
  try {
    const int64_t pid = std::stoll(identity.substr(0, slash));
    const auto ticks = process_start_ticks(pid);
    return ticks && std::to_string(*ticks) == identity.substr(slash + 1);
  } catch (const std::exception&) {
    return false;
  }
}

std::string self_owner() {
  return host_name() + "/" + process_identity(::getpid());
}

OwnerState owner_state(const std::string& owner) {
  if (owner == self_owner())
    return OwnerState::kSelf;
  const size_t slash = owner.find('/');
  if (slash == std::string::npos)
    return OwnerState::kDead;
  if (owner.substr(0, slash) != host_name())
    return OwnerState::kUnknown;
  return identity_alive(owner.substr(slash + 1)) ? OwnerState::kAlive : OwnerState::kDead;
}

std::string executable_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "" : exe.parent_path().string();
}

int open_pidfd(int64_t pid) {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0);
  return fd < 0 ? -1 : static_cast<int>(fd);
#else
  (void)pid;
  return -1;
#endif
}

}  // namespace parcae::orchestrator::detail
