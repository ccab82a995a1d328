// The local launcher: trainer processes on this machine, each in its own process group (so a
// terminal's Ctrl-C reaches only the orchestrator, which then stops them cleanly) with its output
// appended to trainer.log. Exits are noticed through pidfds, which also work for processes that
// are not our children (adopted after a restart); without pidfd support it polls.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "orchestrator/detail/launcher.h"
#include "orchestrator/detail/process.h"
#include "sweeps/error.h"

extern char** environ;

namespace parcae::orchestrator::detail {
namespace {

struct Tracked {
  int attempt = 0;
  int64_t pid = 0;
  std::string identity;  // "<pid>/<start ticks>"
  int pidfd = -1;
  bool child = false;
  int hold = -1;  // our end of the socket a held child waits on; -1 once released
};

std::string gpu_list(const std::vector<int>& gpus) {
  std::string out;
  for (int g : gpus)
    out += (out.empty() ? "" : ",") + std::to_string(g);
  return out;
}

class LocalLauncher : public Launcher {
 public:
  ~LocalLauncher() override {
    for (auto& [job, t] : tracked_) {
      if (t.pidfd >= 0)
        ::close(t.pidfd);
      if (t.hold >= 0)
        ::close(t.hold);
    }
  }

  std::string backend() const override { return "local"; }

  Launched launch(const LaunchRequest& request) override {
    // Everything the child needs is built before fork(): after it, only async-signal-safe calls.
    std::vector<std::string> args = {
        request.trainer, "--job", request.job_file, "--out", request.out_dir};
    std::map<std::string, std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const size_t eq = entry.find('=');
      if (eq != std::string::npos)
        env[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    env["CUDA_VISIBLE_DEVICES"] = gpu_list(request.gpus);
    for (const auto& [key, value] : request.environment)
      env[key] = value;
    std::vector<std::string> env_entries;
    for (const auto& [key, value] : env)
      env_entries.push_back(key + "=" + value);
    std::vector<char*> argv, envp;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_entries)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string exec_failed = "parcae-scale: cannot execute " + request.trainer + ": ";

    const int log =
        ::open(request.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
      throw Error("cannot open " + request.log_file + ": " + std::strerror(errno));
    // A socket pair rather than a pipe: send() with MSG_NOSIGNAL cannot raise SIGPIPE here when
    // the held child is already gone.
    int hold[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hold) != 0) {
      ::close(log);
      throw Error(std::string("socketpair: ") + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log);
      ::close(hold[0]);
      ::close(hold[1]);
      throw Error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::close(hold[1]);
      // Held until the orchestrator has recorded this process; EOF without the go byte means it
      // died first, and the job will be resumed by the next `sweep run` instead.
      char go = 0;
      ssize_t got = 0;
      do {
        got = ::read(hold[0], &go, 1);
      } while (got < 0 && errno == EINTR);
      if (got != 1 || go != 'g')
        ::_exit(125);
      ::close(hold[0]);
      ::setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGPIPE, SIG_DFL);
      const int null_in = ::open("/dev/null", O_RDONLY);
      if (null_in >= 0)
        ::dup2(null_in, 0);
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::execve(argv[0], argv.data(), envp.data());
      const char* reason = std::strerror(errno);
      (void)!::write(2, exec_failed.data(), exec_failed.size());
      (void)!::write(2, reason, std::strlen(reason));
      (void)!::write(2, "\n", 1);
      ::_exit(127);
    }
    ::close(log);
    ::close(hold[0]);
    // Also set from this side, so that a signal to the group cannot race the child's setpgid.
    ::setpgid(pid, pid);
    Tracked t;
    t.attempt = request.attempt;
    t.pid = pid;
    t.child = true;
    t.pidfd = open_pidfd(pid);
    t.identity = process_identity(pid);
    if (t.identity.empty())
      t.identity = std::to_string(pid) + "/0";  // already exited
    t.hold = hold[1];
    tracked_[request.job_id] = t;
    return {pid, t.identity};
  }

  void release(const std::string& job_id) override {
    const auto it = tracked_.find(job_id);
    if (it == tracked_.end() || it->second.hold < 0)
      return;
    const char go = 'g';
    (void)!::send(it->second.hold, &go, 1, MSG_NOSIGNAL);
    ::close(it->second.hold);
    it->second.hold = -1;
  }

  bool adopt(const std::string& job_id, int attempt, const std::string& backend_id) override {
    const size_t slash = backend_id.find('/');
    if (slash == std::string::npos)
      return false;
    int64_t pid = 0;
    try {
      pid = std::stoll(backend_id.substr(0, slash));
    } catch (const std::exception&) {
      return false;
    }
    Tracked t;
    t.attempt = attempt;
    t.pid = pid;
    t.identity = backend_id;
    t.pidfd = open_pidfd(pid);
    // Checked after opening the pidfd: if the identity still matches now, the pidfd refers to it.
    if (!identity_alive(backend_id)) {
      if (t.pidfd >= 0)
        ::close(t.pidfd);
      return false;
    }
    tracked_[job_id] = t;
    return true;
  }

  std::vector<Exited> wait(double timeout_s) override {
    std::vector<Exited> exited = collect();
    if (!exited.empty() || tracked_.empty()) {
      if (exited.empty())
        sleep_or_signal(timeout_s);
      return exited;
    }
    std::vector<pollfd> fds;
    bool all_have_pidfd = true;
    for (const auto& [job, t] : tracked_) {
      if (t.pidfd >= 0) {
        fds.push_back({t.pidfd, POLLIN, 0});
      } else {
        all_have_pidfd = false;
      }
    }
    // Without pidfds for every process, wake up at least every 100 ms to poll them.
    const double wait_s = all_have_pidfd ? timeout_s : std::min(timeout_s, 0.1);
    ::poll(fds.data(), fds.size(), static_cast<int>(wait_s * 1000));
    return collect();
  }

  void signal(const std::string& job_id, int signal_number) override {
    const auto it = tracked_.find(job_id);
    if (it == tracked_.end())
      return;
    const Tracked& t = it->second;
    if (!t.child && !identity_alive(t.identity))
      return;  // never signal a reused pid
    if (::kill(static_cast<pid_t>(-t.pid), signal_number) != 0)
      ::kill(static_cast<pid_t>(t.pid), signal_number);
  }

  std::vector<std::string> active() const override {
    std::vector<std::string> out;
    for (const auto& [job, t] : tracked_)
      out.push_back(job);
    return out;
  }

 private:
  // Processes that have ended, removed from tracking.
  std::vector<Exited> collect() {
    std::vector<Exited> out;
    for (auto it = tracked_.begin(); it != tracked_.end();) {
      Tracked& t = it->second;
      std::optional<int> code;
      bool ended = false;
      if (t.child) {
        int status = 0;
        const pid_t r = ::waitpid(static_cast<pid_t>(t.pid), &status, WNOHANG);
        if (r == t.pid) {
          ended = true;
          code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else if (r < 0 && errno == ECHILD) {
          ended = true;  // reaped elsewhere; the exit status is lost
        }
      } else {
        ended = !identity_alive(t.identity);
      }
      if (!ended) {
        ++it;
        continue;
      }
      if (t.pidfd >= 0)
        ::close(t.pidfd);
      if (t.hold >= 0)
        ::close(t.hold);
      out.push_back({it->first, t.attempt, code});
      it = tracked_.erase(it);
    }
    return out;
  }

  static void sleep_or_signal(double seconds) {
    if (seconds > 0)
      ::poll(nullptr, 0, static_cast<int>(seconds * 1000));
  }

  std::map<std::string, Tracked> tracked_;
};

}  // namespace

std::unique_ptr<Launcher> make_local_launcher() {
  return std::make_unique<LocalLauncher>();
}

}  // namespace parcae::orchestrator::detail
