// What the orchestrator tests share: a fake parcae-train (a shell script that follows the
// trainer's contract without training anything), tiny sweep files, a way to run parcae-scale and
// read its progress line by line, and a FIFO the fake trainer reports to when it blocks.
//
// The fake trainer. Attempt n of a cell does what line n of $FAKE_PLAN_DIR/<cell> says (the
// last line repeats; "ok" when there is no such file):
//   ok        start, steps 1..6 (a checkpoint at 3), evaluations at T = 1, 2, 4, done; exit 0
//   slow      the same, pausing 50 ms per step
//   diverge   like ok, but done with status "diverged"
//   fail      two steps, an error event; exit 1
//   bad       an error event; exit 2 (bad input)
//   nodone    six steps and no done event; exit 0
//   garbage   like ok, with a line that is not JSON among the steps
//   preempt   steps up to 4 (checkpoint at 3), a preempted event; exit 143
//   block     steps up to 2 with a checkpoint at 2, then tells $FAKE_FIFO and waits for SIGTERM,
//             on which it reports preemption and exits 143
//   hang      steps up to 2, then writes nothing more and never exits (SIGKILL ends it)
//   unstoppable  like ok, but ignores SIGTERM: it finishes whatever it is told
// It resumes from its checkpoint like the real trainer (replaying the steps after it), and it
// records in <out>/overlaps any start while another attempt of the same job still runs.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/scratch_dir.h"

extern char** environ;

namespace parcae::test_support {

inline const char kFakeTrainer[] = R"FAKE(#!/bin/bash
set -u
job=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --job) job=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "fake-train: unknown argument $1" >&2; exit 2 ;;
  esac
done
cell=$(sed -n 's/^ *"cell": "\(.*\)",\{0,1\}$/\1/p' "$job")
steps=6
mkdir -p "$out/checkpoint"
if ! mkdir "$out/lock" 2>/dev/null; then echo "$$" >> "$out/overlaps"; fi
trap 'rmdir "$out/lock" 2>/dev/null' EXIT
n=$(( $(cat "$out/fake_attempts" 2>/dev/null || echo 0) + 1 ))
echo $n > "$out/fake_attempts"
action=ok
plan="${FAKE_PLAN_DIR:-/nonexistent}/$cell"
if [ -f "$plan" ]; then
  action=$(sed -n "${n}p" "$plan")
  [ -z "$action" ] && action=$(tail -n 1 "$plan")
fi
ev="$out/events.jsonl"
emit() { printf '%s\n' "$1" >> "$ev"; }
start=0; resumed=false
if [ -f "$out/checkpoint/step" ]; then start=$(cat "$out/checkpoint/step"); resumed=true; fi
emit "{\"event\":\"start\",\"time\":$(date +%s),\"step\":$start,\"job_id\":\"fake\",\"resumed\":$resumed,\"versions\":{\"parcae\":\"fake\",\"libtorch\":\"none\",\"cuda\":\"none\"},\"device\":\"cpu\",\"world_size\":1,\"parameters\":{\"total\":1,\"noncore\":1,\"core\":0,\"embedding\":0},\"flops_per_token\":1000,\"max_steps\":$steps,\"train_tokens\":$((steps * 4096)),\"seed\":0,\"budget_flops\":0}"
step() {
  emit "{\"event\":\"step\",\"time\":$(date +%s),\"step\":$1,\"tokens\":$(($1 * 4096)),\"flops\":$(($1 * 4096000)),\"loss\":$((20 - $1)).5,\"lr_adamw\":0.008,\"lr_muon\":0.008,\"grad_norm\":1.5,\"tokens_per_s\":1000,\"skipped\":false,\"mean_depth\":2}"
}
checkpoint() {
  echo "$1" > "$out/checkpoint/step.tmp"; mv "$out/checkpoint/step.tmp" "$out/checkpoint/step"
  emit "{\"event\":\"checkpoint\",\"time\":$(date +%s),\"step\":$1,\"path\":\"$out/checkpoint\"}"
}
run_steps() {  # from to [pause]
  for ((s = $1; s <= $2; s++)); do
    step $s
    [ $s -eq 3 ] && checkpoint 3
    [ -n "${3:-}" ] && sleep "$3"
  done
}
finish() {  # status
  for d in 1 2 4; do
    emit "{\"event\":\"eval\",\"time\":$(date +%s),\"step\":$steps,\"tokens\":$((steps * 4096)),\"depth\":$d,\"loss\":$((10 + d)).25}"
  done
  emit "{\"event\":\"done\",\"time\":$(date +%s),\"step\":$steps,\"status\":\"$1\",\"tokens\":$((steps * 4096)),\"flops\":$((steps * 4096000)),\"loss_train\":14.5,\"loss_val\":11.25,\"wall_time_s\":0.5}"
}
case "$action" in
  ok) run_steps $((start + 1)) $steps; finish done; exit 0 ;;
  slow) run_steps $((start + 1)) $steps 0.05; finish done; exit 0 ;;
  diverge) run_steps $((start + 1)) $steps; finish diverged; exit 0 ;;
  nodone) run_steps $((start + 1)) $steps; exit 0 ;;
  garbage) step $((start + 1)); emit "this line is not json"; run_steps $((start + 2)) $steps; finish done; exit 0 ;;
  fail) run_steps $((start + 1)) $((start + 2)); emit "{\"event\":\"error\",\"time\":1,\"step\":2,\"message\":\"simulated crash\"}"; exit 1 ;;
  bad) emit "{\"event\":\"error\",\"time\":1,\"step\":0,\"message\":\"job.json: model.d_model = 0: expected > 0\"}"; exit 2 ;;
  preempt) run_steps $((start + 1)) 4; emit "{\"event\":\"preempted\",\"time\":1,\"step\":4}"; exit 143 ;;
  block)
    trap 'emit "{\"event\":\"preempted\",\"time\":1,\"step\":2}"; exit 143' TERM
    for ((s = start + 1; s <= 2; s++)); do step $s; done
    checkpoint 2
    [ -n "${FAKE_FIFO:-}" ] && echo "$cell" > "$FAKE_FIFO"
    while true; do sleep 0.02; done ;;
  hang) run_steps $((start + 1)) $((start + 2)); while true; do sleep 1; done ;;
  unstoppable) trap '' TERM; run_steps $((start + 1)) $steps; finish done; exit 0 ;;
  *) echo "fake-train: unknown action '$action'" >&2; exit 2 ;;
esac
)FAKE";

// Writes the fake trainer into `dir` and returns its path.
inline std::string write_fake_trainer(const std::string& dir) {
  const std::string path = dir + "/fake-train";
  write_text(path, kFakeTrainer);
  ::chmod(path.c_str(), 0755);
  return path;
}

// What attempt n of `cell` does (see the file comment).
inline void plan_actions(const std::string& plan_dir,
                         const std::string& cell,
                         const std::vector<std::string>& actions) {
  std::string text;
  for (const auto& a : actions)
    text += a + "\n";
  write_text(plan_dir + "/" + cell, text);
}

// A sweep of parcae-micro cells at budget 2e11 over `mus`, with data files in <dir>/data.
// Cell names are "C2e11-mu<mu>-seed0".
inline std::string write_sweep(const std::string& dir,
                               const std::string& name,
                               const std::vector<int>& mus) {
  write_text(dir + "/data/train_000.bin", "fake shard");
  write_text(dir + "/data/val_000.bin", "fake shard");
  const nlohmann::json sweep = {
      {"name", name},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", {{{"id", "2e11"}, {"flops", 2e11}}}},
      {"axes", {{"mean_recurrence", mus}}},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 50}}}};
  const std::string path = dir + "/" + name + ".json";
  write_text(path, sweep.dump(2));
  return path;
}

inline std::string cli_path() {
  return std::string(PARCAE_BINARY_DIR) + "/bin/parcae-scale";
}

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// The environment of this process with `extra` set.
inline std::vector<std::string> environment_with(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const size_t eq = entry.find('=');
    if (eq != std::string::npos)
      env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [k, v] : extra)
    env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env)
    out.push_back(k + "=" + v);
  return out;
}

// The argv and envp of an exec of `program` with `args` and this environment plus `env`: they
// point into argv_text and env_text, which must outlive them.
struct ExecArguments {
  std::vector<std::string> argv_text, env_text;
  std::vector<char*> argv, envp;

  ExecArguments(const std::string& program,
                const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env)
      : argv_text{program}, env_text(environment_with(env)) {
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    for (auto& a : argv_text)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_text)
      envp.push_back(e.data());
    envp.push_back(nullptr);
  }
  ExecArguments(const ExecArguments&) = delete;
  ExecArguments& operator=(const ExecArguments&) = delete;
};

// parcae-scale running in the background with its stdout and stderr on pipes.
class CliProcess {
 public:
  CliProcess(const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env = {},
             const std::string& program = cli_path()) {
    ExecArguments exec(program, args, env);
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out_pipe[1], 1);
      ::dup2(err_pipe[1], 2);
      ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    out_fd_ = out_pipe[0];
    err_fd_ = err_pipe[0];
  }
  ~CliProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    if (out_fd_ >= 0)
      ::close(out_fd_);
    if (err_fd_ >= 0)
      ::close(err_fd_);
  }
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  pid_t pid() const { return pid_; }

  // The next line of stderr, or false at end of file. Blocks; stdout is drained meanwhile.
  bool read_err_line(std::string& line) {
    while (true) {
      const size_t newline = err_.find('\n');
      if (newline != std::string::npos) {
        line = err_.substr(0, newline);
        err_.erase(0, newline + 1);
        seen_err_ += line + "\n";
        return true;
      }
      if (!pump()) {
        if (err_.empty())
          return false;
        line = err_;
        seen_err_ += line;
        err_.clear();
        return true;
      }
    }
  }

  void kill(int signal_number) { ::kill(pid_, signal_number); }

  // Reads everything to the end and reaps the process.
  CliResult wait() {
    while (pump()) {
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    CliResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = out_;
    result.err = seen_err_ + err_;
    return result;
  }

 private:
  // Reads what is available from either pipe; false once both are closed.
  bool pump() {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (out_fd_ < 0 && err_fd_ < 0)
      return false;
    ::poll(fds, 2, -1);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
        continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0) {
        ::close(fds[i].fd);
        (i == 0 ? out_fd_ : err_fd_) = -1;
      } else {
        (i == 0 ? out_ : err_).append(buffer, static_cast<size_t>(n));
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  std::string out_;
  std::string err_;
  std::string seen_err_;
};

inline CliResult run_cli(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {}) {
  CliProcess process(args, env);
  return process.wait();
}

// Another program than parcae-scale (the trainer), run the same way.
inline CliResult run_program(const std::string& program,
                             const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env = {}) {
  CliProcess process(args, env, program);
  return process.wait();
}

// A FIFO that blocked fake trainers write their cell names to.
class BlockFifo {
 public:
  explicit BlockFifo(const std::string& path) : path_(path) { ::mkfifo(path.c_str(), 0600); }
  const std::string& path() const { return path_; }

  // Waits until `count` trainers have reported; returns their cell names. A trainer that never
  // reports fails the test after `limit_s` instead of hanging it.
  std::vector<std::string> wait_for(size_t count, double limit_s = 120) {
    std::vector<std::string> cells;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int>(limit_s * 1000));
    // Opened read-write so that open() does not block and reads do not see EOF between writers.
    const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    std::string buffer;
    while (cells.size() < count) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        break;
      char chunk[256];
      const ssize_t n = ::read(fd, chunk, sizeof(chunk));
      if (n <= 0)
        break;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        cells.push_back(buffer.substr(0, newline));
        buffer.erase(0, newline + 1);
      }
    }
    ::close(fd);
    if (cells.size() < count)
      throw std::runtime_error("fake trainers did not block in time");
    return cells;
  }

 private:
  std::string path_;
};

}  // namespace parcae::test_support
