#include "sweeps/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "sweeps/error.h"

namespace parcae::sweeps {
namespace {

// Writes all of `bytes` to fd, retrying short and interrupted writes.
bool write_all(int fd, const char* bytes, size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, bytes, size);
    if (written < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

}  // namespace

void remove_temporaries(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(folder, error))
    return;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    if (entry.path().filename().string().find(kTemporaryMarker) != std::string::npos)
      fs::remove(entry.path(), error);
  }
}

void write_file_atomically(const std::string& path,
                           std::initializer_list<std::string_view> pieces,
                           Durability durability) {
  std::string pattern = path + kTemporaryMarker + "XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0)
    throw Error("cannot write " + pattern + ": " + std::strerror(errno));
  const std::string temporary(name.data());
  // mkstemp makes the file private; these files are read by other tools and users.
  bool ok = ::fchmod(fd, 0644) == 0;
  for (std::string_view piece : pieces)
    ok = ok && write_all(fd, piece.data(), piece.size());
  if (ok && durability == Durability::kFsynced)
    ok = ::fsync(fd) == 0;
  const std::string reason = ok ? "" : std::strerror(errno);
  ::close(fd);
  if (!ok) {
    std::remove(temporary.c_str());
    throw Error("cannot write " + temporary + ": " + reason);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string rename_reason = std::strerror(errno);
    std::remove(temporary.c_str());
    throw Error("cannot rename " + temporary + " to " + path + ": " + rename_reason);
  }
}

}  // namespace parcae::sweeps
