// What the libFuzzer targets share: a scratch folder of this process, and writing one input into
// it as the file a parser is given. The parsers under test read files, not buffers, so each input
// goes through the same open-and-read path a user's file does (on tmpfs where TMPDIR points).
//
// The contract every target checks: a parser either accepts an input or throws parcae::Error
// (InputError, SweepFileError) with a message. Any other exception escapes the target and
// libFuzzer reports it as a crash, as it does a sanitizer report, a signal or a timeout.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace parcae::fuzz {

// <TMPDIR>/parcae-fuzz-<pid>, made on first use; libFuzzer's forked workers each get their own.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const auto path = std::filesystem::temp_directory_path() /
                      ("parcae-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

// Writes `size` bytes of `data` to <scratch>/<name> (replacing it) and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (scratch_dir() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace parcae::fuzz
