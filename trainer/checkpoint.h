// Checkpoints under DIR/checkpoint/: everything a resumed run needs to continue exactly where an
// uninterrupted one would be (model, optimizer state incl. Muon buffers, step, data cursor,
// FLOPs and tokens spent, the job itself).
//
// One file per checkpoint, `step_NNNNNNNN.pt`, a LibTorch archive with the nested archives
// "model" and "optimizer" and a JSON string "meta". It is written to `.tmp`, fsynced, renamed,
// and the folder fsynced, before the caller reports it, so a kill at any point leaves either the
// previous checkpoint or the new one. The newest kKeepCheckpoints are kept. The randomness of a
// run is counter-based (trainer/sampling.h), so (seed, step, data cursor) is its whole RNG state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "trainer/model.h"
#include "trainer/optimizer.h"

namespace parcae::trainer {

inline constexpr int kCheckpointFormat = 1;
inline constexpr int kKeepCheckpoints = 2;

struct CheckpointMeta {
  int format = kCheckpointFormat;
  std::string job_id;
  int64_t step = 0;          // optimizer steps completed
  int64_t data_cursor = 0;   // training rows drawn so far, all ranks together
  int64_t tokens = 0;        // training tokens consumed
  double flops = 0.0;        // training FLOPs spent, tokens * train_flops_per_token
  double loss_train = 0.0;   // mean train loss of the last completed step
  double wall_time_s = 0.0;  // training wall time of every session so far
  uint64_t seed = 0;
  int rank = 0;        // the writer: always rank 0
  int world_size = 1;  // of the run that wrote it; a resume may use another
  nlohmann::json job;  // the job file as parsed, for humans and audits
};

nlohmann::json to_json(const CheckpointMeta& meta);
CheckpointMeta checkpoint_meta_from_json(const nlohmann::json& value);

// Removes what an interrupted write left in run folder `dir` and in its checkpoint folder: files
// with ".tmp." in their names, which are never read (a write is renamed into place only when
// whole). Called when a trainer starts, as the only writer of its run folder.
void remove_temporaries(const std::string& dir);

// The newest `step_*.pt` in dir/checkpoint, or nullopt when there is none.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// Writes a checkpoint for meta.step atomically, removes all but the newest kKeepCheckpoints,
// and returns its path. Throws parcae::Error on I/O failure.
std::string save_checkpoint(const std::string& dir,
                            LanguageModelImpl& model,
                            const MuonAdamW& optimizer,
                            const CheckpointMeta& meta);

// Loads a checkpoint into `model` and `optimizer` (already built for the job, on `device`).
// Throws InputError naming the file and both ids when it belongs to another job (before
// touching the model), and parcae::Error when it cannot be read.
CheckpointMeta load_checkpoint(const std::string& path,
                               const std::string& expected_job_id,
                               const std::string& job_file,
                               LanguageModelImpl& model,
                               MuonAdamW& optimizer,
                               const torch::Device& device);

}  // namespace parcae::trainer
