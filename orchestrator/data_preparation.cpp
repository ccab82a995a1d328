// First-use preparation of a sweep's token shards (sweeps::DataPreparation): the text comes from
// files or from a command's standard output (posix_spawnp, no shell), and is tokenized (bytes or
// SentencePiece BPE, make_tokenizer) into
// a temporary folder beside the destination, which is then renamed into place, tokenizer.json
// last. An exclusive lock
// beside the destination makes two orchestrators planning at once prepare it only once; the
// second one finds the shards there when it gets the lock.
#include "orchestrator/detail/data_preparation.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "orchestrator/orchestrator.h"
#include "sweeps/error.h"
#include "sweeps/token_shards.h"

extern char** environ;

namespace parcae::orchestrator::detail {
namespace {

namespace fs = std::filesystem;

class FileLock {
 public:
  explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT, 0644)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0)
      throw Error(fmt::format("cannot lock {}: {}", path, std::strerror(errno)));
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

// tokenizer.json is written last, so a folder prepared before shards held documents, or one left
// half-written, is prepared again.
bool has_shards(const fs::path& folder) {
  std::error_code ec;
  return fs::exists(folder / "train_000000.bin", ec) && fs::exists(folder / "val_000000.bin", ec) &&
         fs::exists(folder / sweeps::kTokenizerInfoFile, ec);
}

// Runs `argv` with its standard output into `path`; InputError naming the sweep field when the
// command cannot run or fails, since the command is part of the sweep file.
void run_to_file(const std::vector<std::string>& argv,
                 const std::string& path,
                 const std::string& sweep_file) {
  const std::string shown = nlohmann::json(argv).dump();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(
      &actions, STDOUT_FILENO, path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& a : args)
    raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw InputError(sweep_file,
                     "data.prepare.command",
                     shown,
                     fmt::format("a command that runs ({})", std::strerror(rc)),
                     "install it (scripts/setup installs the demo corpus) or give text files");
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw InputError(sweep_file,
                     "data.prepare.command",
                     shown,
                     fmt::format("a command that succeeds (it {} {})",
                                 WIFEXITED(status) ? "exited with" : "died of signal",
                                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)));
  }
}

}  // namespace

bool sweep_data_prepared(const sweeps::SweepSpec& spec) {
  return !spec.data.prepare.empty() &&
         has_shards((fs::path(spec.data.folder) / spec.data.prepare.out).lexically_normal());
}

bool prepare_sweep_data(const sweeps::SweepSpec& spec, const PreparationNotice& notice) {
  const sweeps::DataPreparation& prepare = spec.data.prepare;
  if (prepare.empty())
    return false;
  const fs::path base(spec.data.folder);
  const fs::path out = (base / prepare.out).lexically_normal();
  if (has_shards(out))
    return false;
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec)
    throw Error(fmt::format("cannot create {}: {}", out.parent_path().string(), ec.message()));
  const FileLock lock(out.string() + ".lock");
  if (has_shards(out))
    return false;  // prepared by another process while this one waited for the lock
  if (notice)
    notice(fmt::format("preparing the data of {} into {} (first use)", spec.name, out.string()));

  const fs::path staging = out.string() + ".partial";
  fs::remove_all(staging);
  fs::create_directories(staging);
  std::vector<std::string> texts;
  for (const auto& file : prepare.text_files)
    texts.push_back((base / file).lexically_normal().string());
  if (!prepare.command.empty()) {
    const std::string text = (staging / "source.txt").string();
    run_to_file(prepare.command, text, spec.file);
    texts = {text};
  }
  const fs::path shards = staging / "shards";
  sweeps::TokenizerOptions tokenizer_options = prepare.tokenizer;
  if (!tokenizer_options.model.empty())
    tokenizer_options.model = (base / tokenizer_options.model).lexically_normal().string();
  const std::unique_ptr<sweeps::TextTokenizer> tokenizer =
      make_tokenizer(tokenizer_options, texts, spec.file, "data.prepare.");
  sweeps::TextPreparation options;
  options.val_fraction = prepare.val_fraction;
  options.documents = prepare.documents;
  options.held_out = prepare.held_out;
  const sweeps::PreparedShards written =
      sweeps::prepare_text_shards(texts, shards.string(), options, *tokenizer);
  // Existing files in `out` (a README, other shards) are kept; the new files move in one by one,
  // tokenizer.json last, so has_shards() is true only once all are in place.
  fs::create_directories(out);
  std::vector<std::string> moved = written.train_shards;
  moved.insert(moved.end(), written.val_shards.begin(), written.val_shards.end());
  for (const auto& entry : fs::directory_iterator(shards)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".bin" && name != sweeps::kTokenizerInfoFile)
      moved.push_back(entry.path().string());  // the tokenizer's model
  }
  moved.push_back(written.tokenizer_info);
  for (const auto& file : moved)
    fs::rename(file, out / fs::path(file).filename());
  fs::remove_all(staging);
  if (notice) {
    notice(fmt::format("{} train and {} validation tokens ({} and {} documents, BOS {}) in {}",
                       written.train_tokens,
                       written.val_tokens,
                       written.train_documents,
                       written.val_documents,
                       written.bos_token,
                       out.string()));
  }
  return true;
}

}  // namespace parcae::orchestrator::detail
