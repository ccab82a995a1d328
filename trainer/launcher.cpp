// Rank variables from the environment, and the fork/exec launcher of a job's ranks.
#include "trainer/launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/run_contract.h"
#include "trainer/events.h"
#include "trainer/trainer.h"

extern char** environ;

namespace parcae::trainer {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(20);

std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0')
    return std::nullopt;
  return std::string(value);
}

int integer_variable(const char* name, const std::string& text, int minimum) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < minimum) {
    throw InputError("(environment)",
                     name,
                     "'" + text + "'",
                     "expected an integer >= " + std::to_string(minimum));
  }
  return value;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty())
      items.push_back(item);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return items;
}

int severity(int code) {
  switch (code) {
    case kExitDone:
      return 0;
    case kExitPreempted:
      return 1;
    case kExitBadInput:
      return 2;
    default:
      return 3;
  }
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The type and step of the last complete event in DIR/events.jsonl, or ("", 0).
std::pair<std::string, int64_t> last_event(const std::string& out_dir) {
  std::ifstream in(out_dir + "/" + sweeps::kEventsFileName);
  std::pair<std::string, int64_t> last{"", 0};
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (event.is_object() && event.contains("event") && event.contains("step")) {
      last = {event["event"].get<std::string>(), event["step"].get<int64_t>()};
    }
  }
  return last;
}

// Appends an `error` event, unless the last event already is one (rank 0 wrote its own).
void append_error_event(const std::string& out_dir, const std::string& message) {
  const auto [type, step] = last_event(out_dir);
  if (type == sweeps::kEventError)
    return;
  try {
    std::filesystem::create_directories(out_dir);
    EventLog events(out_dir + "/" + sweeps::kEventsFileName);
    events.write(sweeps::kEventError, step, {{"message", message}});
  } catch (const std::exception&) {
    // The exit code still reports the failure.
  }
}

struct Rank {
  pid_t pid = -1;
  int code = 0;
  bool running = false;
  bool killed_by_launcher = false;
};

}  // namespace

std::optional<RankOptions> ranks_from_environment() {
  RankOptions ranks;
  if (const auto rank = environment("RANK")) {
    ranks.source = "RANK";
    ranks.rank = integer_variable("RANK", *rank, 0);
    const auto world = environment("WORLD_SIZE");
    if (!world)
      throw InputError("(environment)", "WORLD_SIZE", "(unset)", "expected it beside RANK");
    ranks.world_size = integer_variable("WORLD_SIZE", *world, 1);
    const auto local = environment("LOCAL_RANK");
    ranks.local_rank = local ? integer_variable("LOCAL_RANK", *local, 0) : ranks.rank;
  } else if (const auto procid = environment("SLURM_PROCID")) {
    const auto tasks = environment("SLURM_NTASKS");
    if (!tasks || integer_variable("SLURM_NTASKS", *tasks, 1) == 1)
      return std::nullopt;
    ranks.source = "SLURM_PROCID";
    ranks.rank = integer_variable("SLURM_PROCID", *procid, 0);
    ranks.world_size = integer_variable("SLURM_NTASKS", *tasks, 1);
    const auto local = environment("SLURM_LOCALID");
    ranks.local_rank = local ? integer_variable("SLURM_LOCALID", *local, 0) : 0;
  } else {
    return std::nullopt;
  }
  if (ranks.rank >= ranks.world_size) {
    throw InputError("(environment)",
                     ranks.source,
                     std::to_string(ranks.rank),
                     "expected a rank below the world size " + std::to_string(ranks.world_size));
  }
  if (const auto addr = environment("MASTER_ADDR"))
    ranks.master_addr = *addr;
  if (const auto port = environment("MASTER_PORT")) {
    ranks.master_port = integer_variable("MASTER_PORT", *port, 1);
  } else if (ranks.world_size > 1) {
    throw InputError("(environment)",
                     "MASTER_PORT",
                     "(unset)",
                     "expected the TCP port of rank 0's store",
                     "export MASTER_ADDR and MASTER_PORT before srun");
  }
  return ranks;
}

int worse_exit_code(int a, int b) {
  return severity(b) > severity(a) ? b : a;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw Error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    throw Error("cannot find a free port on 127.0.0.1: " + reason);
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

int launch_ranks(const LaunchOptions& options) {
  std::vector<std::string> devices;
  if (options.assign_gpus) {
    if (const auto visible = environment("CUDA_VISIBLE_DEVICES")) {
      devices = split_list(*visible);
      if (static_cast<int>(devices.size()) < options.ranks) {
        const InputError error(
            "(environment)",
            "CUDA_VISIBLE_DEVICES",
            "'" + *visible + "'",
            "expected at least gpus = " + std::to_string(options.ranks) + " devices",
            "give the job as many GPUs as its gpus field");
        append_error_event(options.out_dir, error.what());
        throw error;
      }
    } else {
      for (int r = 0; r < options.ranks; ++r)
        devices.push_back(std::to_string(r));
    }
  }
  const int port = free_local_port();

  // Everything each child needs is built before fork(): after it, only async-signal-safe calls.
  std::map<std::string, std::string> base;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const size_t eq = entry.find('=');
    if (eq != std::string::npos)
      base[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  base["WORLD_SIZE"] = std::to_string(options.ranks);
  base["MASTER_ADDR"] = "127.0.0.1";
  base["MASTER_PORT"] = std::to_string(port);
  std::vector<std::string> args = {options.executable};
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<Rank> ranks(static_cast<size_t>(options.ranks));
  auto kill_all = [&](int signal_number, bool mark) {
    for (auto& rank : ranks) {
      if (rank.running) {
        ::kill(rank.pid, signal_number);
        rank.killed_by_launcher = rank.killed_by_launcher || mark;
      }
    }
  };
  for (int r = 0; r < options.ranks; ++r) {
    std::map<std::string, std::string> env = base;
    env["RANK"] = std::to_string(r);
    env["LOCAL_RANK"] = std::to_string(r);
    if (options.assign_gpus)
      env["CUDA_VISIBLE_DEVICES"] = devices[static_cast<size_t>(r)];
    std::vector<std::string> entries;
    for (const auto& [key, value] : env)
      entries.push_back(key + "=" + value);
    std::vector<char*> envp;
    for (auto& e : entries)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string reason = std::strerror(errno);
      kill_all(SIGKILL, true);
      for (auto& rank : ranks) {
        if (rank.running)
          ::waitpid(rank.pid, nullptr, 0);
      }
      throw Error("cannot start rank " + std::to_string(r) + ": fork: " + reason);
    }
    if (pid == 0) {
      // A rank must not outlive its launcher: a survivor would wait in a collective forever.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent)
        ::_exit(128 + SIGKILL);
      // Held until the rank has installed its handlers (the mask survives exec), so that a stop
      // sent while it starts is acted on rather than killing it unsaved.
      sigset_t stops;
      sigemptyset(&stops);
      for (const int number : {SIGTERM, SIGINT, SIGUSR2})
        sigaddset(&stops, number);
      ::sigprocmask(SIG_BLOCK, &stops, nullptr);
      ::execve(argv[0], argv.data(), envp.data());
      const char* reason = std::strerror(errno);
      (void)!::write(2, "parcae-train: cannot execute the rank: ", 39);
      (void)!::write(2, reason, std::strlen(reason));
      (void)!::write(2, "\n", 1);
      ::_exit(127);
    }
    ranks[static_cast<size_t>(r)].pid = pid;
    ranks[static_cast<size_t>(r)].running = true;
    if (options.progress != nullptr) {
      *options.progress << "parcae-train: started rank " << r << " of " << options.ranks << " (pid "
                        << pid
                        << (options.assign_gpus ? ", CUDA_VISIBLE_DEVICES=" + devices[r] : "")
                        << ", MASTER_PORT=" << port << ")" << std::endl;
    }
  }

  bool forwarded_stop = false;
  bool failed = false;
  int failed_rank = -1;
  auto failure_time = std::chrono::steady_clock::now();
  int running = options.ranks;
  while (running > 0) {
    if (!forwarded_stop && options.stop_requested != nullptr && options.stop_requested->load()) {
      forwarded_stop = true;
      kill_all(SIGTERM, false);
    }
    if (failed && std::chrono::steady_clock::now() - failure_time >
                      std::chrono::seconds(kFailureGraceSeconds)) {
      kill_all(SIGKILL, true);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno != EINTR && errno != ECHILD)
      throw Error(std::string("waitpid: ") + std::strerror(errno));
    if (pid <= 0) {
      std::this_thread::sleep_for(kPollInterval);
      continue;
    }
    for (size_t r = 0; r < ranks.size(); ++r) {
      Rank& rank = ranks[r];
      if (rank.pid != pid || !rank.running)
        continue;
      rank.running = false;
      rank.code = exit_code_of(status);
      --running;
      if (options.progress != nullptr) {
        *options.progress << "parcae-train: rank " << r << " exited with code " << rank.code
                          << std::endl;
      }
      // Bad input and failures stop the job; done and preempted ranks are waited for.
      if (!rank.killed_by_launcher && severity(rank.code) >= severity(kExitBadInput) && !failed) {
        failed = true;
        failed_rank = static_cast<int>(r);
        failure_time = std::chrono::steady_clock::now();
      }
    }
  }

  int code = kExitDone;
  for (const auto& rank : ranks) {
    if (!rank.killed_by_launcher)
      code = worse_exit_code(code, rank.code);
  }
  if (failed) {
    append_error_event(options.out_dir,
                       "rank " + std::to_string(failed_rank) + " of " +
                           std::to_string(options.ranks) + " exited with code " +
                           std::to_string(ranks[static_cast<size_t>(failed_rank)].code) +
                           "; the other ranks were stopped");
  }
  return code;
}

}  // namespace parcae::trainer
