// Whole-file replacement that readers and concurrent writers can rely on.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace parcae::sweeps {

enum class Durability {
  kOnRename,  // renamed into place; the data reaches the disk when the system flushes it
  kFsynced,   // flushed to the disk before the rename
};

// In the name of every file written under a temporary name before its rename into place: ours
// ("job.json.tmp.Xa81Qz") and the trainer's checkpoints ("step_00000050.pt.tmp.4242").
inline constexpr char kTemporaryMarker[] = ".tmp.";

// Removes the files of `folder` (not of its subfolders) whose names contain kTemporaryMarker:
// what a writer killed before its rename left. Only for a folder that no other process is
// writing to at the time. A missing folder is nothing to do; failures to remove are ignored,
// since such a file is never read.
void remove_temporaries(const std::string& folder);

// Writes the concatenation of `pieces` to a temporary file of its own beside `path` (so two
// processes writing one path never share one), then renames it over `path`: a reader sees the old
// file or the whole new one, never a part. The temporary is removed when anything fails.
// Throws parcae::Error naming the file and the system's reason.
void write_file_atomically(const std::string& path,
                           std::initializer_list<std::string_view> pieces,
                           Durability durability);

}  // namespace parcae::sweeps
