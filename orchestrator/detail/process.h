// Identities of local processes that survive the death of the orchestrator that started them.
//
// A pid alone can be reused, so a process is named "<pid>/<start ticks>", the start time in clock
// ticks since boot from /proc/<pid>/stat; the pair names one process for the machine's uptime.
// An orchestrator is "<host>/<pid>/<start ticks>". The scheduler records both with each attempt,
// and on restart asks whether the orchestrator that launched a `running` job is still alive (then
// the job is left to it), and whether the trainer is (then it is adopted) or is gone (then the job
// is resumed from its checkpoint). Linux only, like the rest of the local backend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace parcae::orchestrator::detail {

// This machine's host name.
std::string host_name();

// Start time of a live (non-zombie) process in clock ticks since boot; nullopt when it is gone.
std::optional<uint64_t> process_start_ticks(int64_t pid);

// "<pid>/<start ticks>" of a live process; "" when it is gone.
std::string process_identity(int64_t pid);

// True when the process named by a "<pid>/<start ticks>" identity is alive.
bool identity_alive(const std::string& identity);

// "<host>/<pid>/<start ticks>" of this process.
std::string self_owner();

enum class OwnerState {
  kSelf,     // this process
  kAlive,    // another live process on this host
  kDead,     // gone
  kUnknown,  // on another host: cannot tell
};
OwnerState owner_state(const std::string& owner);

// The folder of the running executable (/proc/self/exe), "" when unknown.
std::string executable_dir();

// A pidfd for `pid` (readable once the process exits), or -1 when the kernel has none.
int open_pidfd(int64_t pid);

}  // namespace parcae::orchestrator::detail
