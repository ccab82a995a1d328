// Atomic checkpoint writing, discovery and loading.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "sweeps/atomic_file.h"
#include "sweeps/error.h"
#include "sweeps/run_contract.h"

namespace parcae::trainer {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPrefix = "step_";
constexpr const char* kSuffix = ".pt";

std::string file_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%08lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return name;
}

// (step, path) of every finished checkpoint in `folder`, oldest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& folder) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code error;
  if (!fs::is_directory(folder, error))
    return found;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    const size_t prefix = std::strlen(kPrefix), suffix = std::strlen(kSuffix);
    if (name.size() <= prefix + suffix || name.rfind(kPrefix, 0) != 0 ||
        name.compare(name.size() - suffix, suffix, kSuffix) != 0) {
      continue;
    }
    const std::string digits = name.substr(prefix, name.size() - prefix - suffix);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit))
      continue;
    found.emplace_back(std::stoll(digits), entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0)
    throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  const int result = ::fsync(fd);
  ::close(fd);
  if (result != 0)
    throw Error("cannot fsync " + path.string() + ": " + std::strerror(errno));
}

// Writes `archive` to `path` and flushes it to the disk. LibTorch's own file writer aborts the
// process when a write falls short (a full disk), so the bytes go through this function, which
// keeps the first error, lets LibTorch finish, then removes the partial file and throws
// parcae::Error naming the path and the system's reason.
void write_archive(torch::serialize::OutputArchive& archive, const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error("cannot write checkpoint " + path.string() + ": " + std::strerror(errno));
  int first_error = 0;
  archive.save_to([&](const void* data, size_t size) -> size_t {
    const char* bytes = static_cast<const char*>(data);
    size_t left = size;
    while (first_error == 0 && left > 0) {
      const ssize_t written = ::write(fd, bytes, left);
      if (written < 0 && errno == EINTR)
        continue;
      if (written < 0) {
        first_error = errno;
        break;
      }
      bytes += written;
      left -= static_cast<size_t>(written);
    }
    return size;  // always all of it: the error is reported below, not by LibTorch
  });
  if (first_error == 0 && ::fsync(fd) != 0)
    first_error = errno;
  if (::close(fd) != 0 && first_error == 0)
    first_error = errno;
  if (first_error != 0) {
    std::error_code ignored;
    fs::remove(path, ignored);
    throw Error("cannot write checkpoint " + path.string() + ": " + std::strerror(first_error));
  }
}

}  // namespace

void remove_temporaries(const std::string& dir) {
  sweeps::remove_temporaries(dir);
  sweeps::remove_temporaries((fs::path(dir) / sweeps::kCheckpointDirName).string());
}

nlohmann::json to_json(const CheckpointMeta& meta) {
  return {{"format", meta.format},
          {"job_id", meta.job_id},
          {"step", meta.step},
          {"data_cursor", meta.data_cursor},
          {"tokens", meta.tokens},
          {"flops", meta.flops},
          {"loss_train", meta.loss_train},
          {"wall_time_s", meta.wall_time_s},
          {"seed", meta.seed},
          {"rank", meta.rank},
          {"world_size", meta.world_size},
          {"job", meta.job}};
}

CheckpointMeta checkpoint_meta_from_json(const nlohmann::json& value) {
  CheckpointMeta meta;
  meta.format = value.at("format").get<int>();
  meta.job_id = value.at("job_id").get<std::string>();
  meta.step = value.at("step").get<int64_t>();
  meta.data_cursor = value.at("data_cursor").get<int64_t>();
  meta.tokens = value.at("tokens").get<int64_t>();
  meta.flops = value.at("flops").get<double>();
  meta.loss_train = value.at("loss_train").is_null() ? 0.0 : value.at("loss_train").get<double>();
  meta.wall_time_s = value.at("wall_time_s").get<double>();
  meta.seed = value.at("seed").get<uint64_t>();
  meta.rank = value.at("rank").get<int>();
  meta.world_size = value.at("world_size").get<int>();
  meta.job = value.at("job");
  return meta;
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const auto found = list_checkpoints(fs::path(dir) / sweeps::kCheckpointDirName);
  if (found.empty())
    return std::nullopt;
  return found.back().second.string();
}

std::string save_checkpoint(const std::string& dir,
                            LanguageModelImpl& model,
                            const MuonAdamW& optimizer,
                            const CheckpointMeta& meta) {
  const fs::path folder = fs::absolute(fs::path(dir) / sweeps::kCheckpointDirName);
  std::error_code error;
  fs::create_directories(folder, error);
  if (error)
    throw Error("cannot create " + folder.string() + ": " + error.message());
  const fs::path final_path = folder / file_name(meta.step);
  // The pid keeps two writers apart; remove_temporaries() deletes what a killed one left.
  const fs::path temporary =
      folder / (file_name(meta.step) + sweeps::kTemporaryMarker + std::to_string(::getpid()));

  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  optimizer.save(optimizer_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("meta", c10::IValue(to_json(meta).dump()));
  write_archive(archive, temporary);
  fs::rename(temporary, final_path, error);
  if (error) {
    fs::remove(temporary, error);
    throw Error("cannot rename " + temporary.string() + ": " + error.message());
  }
  fsync_path(folder, O_RDONLY | O_DIRECTORY);

  const auto found = list_checkpoints(folder);
  for (size_t i = 0; i + kKeepCheckpoints < found.size(); ++i)
    fs::remove(found[i].second, error);
  return final_path.string();
}

CheckpointMeta load_checkpoint(const std::string& path,
                               const std::string& expected_job_id,
                               const std::string& job_file,
                               LanguageModelImpl& model,
                               MuonAdamW& optimizer,
                               const torch::Device& device) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device);
  } catch (const c10::Error& e) {
    throw Error("cannot read checkpoint " + path + ": " + e.what_without_backtrace());
  }
  c10::IValue meta_text;
  archive.read("meta", meta_text);
  const CheckpointMeta meta =
      checkpoint_meta_from_json(nlohmann::json::parse(meta_text.toStringRef()));
  if (meta.job_id != expected_job_id) {
    throw InputError(path,
                     "job_id",
                     "'" + meta.job_id + "'",
                     "expected '" + expected_job_id + "', the id of " + job_file,
                     "this run folder belongs to another job; use a fresh --out");
  }
  if (meta.format != kCheckpointFormat) {
    throw InputError(path,
                     "format",
                     std::to_string(meta.format),
                     "expected checkpoint format " + std::to_string(kCheckpointFormat));
  }
  torch::serialize::InputArchive model_archive, optimizer_archive;
  archive.read("model", model_archive);
  archive.read("optimizer", optimizer_archive);
  model.load(model_archive);
  optimizer.load(optimizer_archive);
  return meta;
}

}  // namespace parcae::trainer
