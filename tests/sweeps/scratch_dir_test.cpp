// The tests' scratch folder: it exists while the test runs and is gone afterwards with nested
// folders, files and symbolic links in it (a link's target outside is left alone).
#include "tests/support/scratch_dir.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace parcae::test_support {
namespace {

namespace fs = std::filesystem;

TEST(ScratchDir, IsRemovedWithEverythingInItButNotWhatALinkPointsTo) {
  const ScratchDir outside;
  write_text(outside.file("kept.txt"), "kept");
  std::string path;
  {
    const ScratchDir dir;
    path = dir.path();
    EXPECT_TRUE(fs::is_directory(path));
    write_text(dir.file("a/b/c.txt"), "deep");
    write_text(dir.file("top.txt"), "top");
    ASSERT_EQ(::symlink(outside.path().c_str(), dir.file("a/link").c_str()), 0);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(read_text(outside.file("kept.txt")), "kept");
}

}  // namespace
}  // namespace parcae::test_support
