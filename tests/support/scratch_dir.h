// A temporary folder for one test, removed with everything in it when the test ends.
#pragma once

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace parcae::test_support {

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "parcae-test-XXXXXX").string();
    // A temp folder that cannot be written (a read-only /tmp, a TMPDIR that names nothing) must
    // fail the test with its reason, not hand a null path to what follows.
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot create a scratch folder " + pattern + ": " +
                               std::strerror(errno) + " (set TMPDIR to a writable folder)");
    }
    path_ = pattern;
  }
  // Removed with nftw, not std::filesystem::remove_all: PyTorch's wheel of LibTorch 2.11 exports
  // its own copy of libstdc++'s filesystem functions from libtorch.so, and a test binary linked
  // with it binds remove_all to that copy, which jumps to a null address.
  ~ScratchDir() {
    ::nftw(
        path_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); },
        16,
        FTW_DEPTH | FTW_PHYS);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline void append_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace parcae::test_support
