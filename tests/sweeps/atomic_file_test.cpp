// Tests of whole-file replacement: concurrent writers of one path never collide on a temporary,
// a reader only ever sees a whole file, and a failed write leaves nothing behind.
#include "sweeps/atomic_file.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "tests/support/scratch_dir.h"

namespace parcae::sweeps {
namespace {

using test_support::ScratchDir;
using ::testing::AnyOf;
using ::testing::HasSubstr;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names_in(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    names.push_back(entry.path().filename().string());
  return names;
}

TEST(AtomicFile, PiecesAreWrittenInOrderAndReadableByOthers) {
  const ScratchDir dir;
  const std::string path = dir.file("job.json");
  write_file_atomically(path, {"{\"a\": ", "1}", "\n"}, Durability::kFsynced);
  EXPECT_EQ(read_text(path), "{\"a\": 1}\n");
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
  write_file_atomically(path, {"second"}, Durability::kOnRename);
  EXPECT_EQ(read_text(path), "second");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"job.json"});
}

TEST(AtomicFile, TwoWritersOfOnePathNeverFailAndReadersSeeOneWholeFile) {
  const ScratchDir dir;
  const std::string path = dir.file("shared.txt");
  const std::string first(100000, 'a');
  const std::string second(100000, 'b');
  write_file_atomically(path, {first}, Durability::kOnRename);
  std::atomic<bool> writing{true};
  std::string errors[2];
  auto writer = [&](int who) {
    try {
      for (int i = 0; i < 200; ++i)
        write_file_atomically(path, {who == 0 ? first : second}, Durability::kOnRename);
    } catch (const std::exception& e) {
      errors[who] = e.what();
    }
  };
  std::thread a(writer, 0), b(writer, 1);
  std::thread reader([&] {
    while (writing) {
      const std::string seen = read_text(path);
      ASSERT_THAT(seen, AnyOf(first, second)) << "a reader saw " << seen.size() << " bytes";
    }
  });
  a.join();
  b.join();
  writing = false;
  reader.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"shared.txt"});
}

TEST(AtomicFile, AFolderThatDoesNotExistIsAnErrorNamingThePath) {
  const ScratchDir dir;
  const std::string path = dir.file("missing/job.json");
  try {
    write_file_atomically(path, {"x"}, Durability::kOnRename);
    FAIL() << "a write into a missing folder was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{});
}

TEST(AtomicFile, ATargetThatIsAFolderIsAnErrorAndLeavesNoTemporary) {
  const ScratchDir dir;
  std::filesystem::create_directory(dir.file("taken"));
  EXPECT_THROW(write_file_atomically(dir.file("taken"), {"x"}, Durability::kFsynced), Error);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"taken"});
}

// What a writer killed between its write and its rename left is removed, and nothing else: not
// the finished files, not what is in subfolders.
TEST(AtomicFile, RemoveTemporariesTakesOnlyTheLeftoversOfInterruptedWrites) {
  const ScratchDir dir;
  write_file_atomically(dir.file("job.json"), {"{}"}, Durability::kOnRename);
  for (const char* name : {"job.json.tmp.Xa81Qz", "train_000000.bin.tmp.QQ12ab"}) {
    std::ofstream(dir.file(name)) << "half written";
  }
  std::filesystem::create_directories(dir.file("checkpoint"));
  std::ofstream(dir.file("checkpoint/step_00000003.pt.tmp.4242")) << "half a checkpoint";
  remove_temporaries(dir.path());
  EXPECT_THAT(names_in(dir.path()), ::testing::UnorderedElementsAre("job.json", "checkpoint"));
  EXPECT_TRUE(std::filesystem::exists(dir.file("checkpoint/step_00000003.pt.tmp.4242")));
  remove_temporaries(dir.file("no-such-folder"));
}

}  // namespace
}  // namespace parcae::sweeps
