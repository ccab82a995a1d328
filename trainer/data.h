// Training and validation rows from llm.c token shards (sweeps/token_shards.h).
//
// Training draws windows of S+1 tokens (S inputs, S shifted targets) at uniformly random
// positions in the training shards. Row r of the run, counted over the global batches of every
// step, comes from its own counter-based stream (run seed, r), so the only data state is the
// cursor, saved in checkpoints: a resumed run reads exactly the rows an uninterrupted run reads,
// and the ranks of a data-parallel run read disjoint rows of the same sequence, so that any world
// size reads the rows of one rank. Windows never cross shard boundaries. Validation is the first
// eval.val_sequences consecutive, non-overlapping S+1 windows of the validation shards, in shard
// order: the same rows for every run. Windows are packed text with no padding, so every target
// counts in the loss (parcae.md §2 step 10 has nothing to exclude).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "sweeps/token_shards.h"

namespace parcae::trainer {

class TrainWindows {
 public:
  // Opens and checks every shard (InputError naming the file on a bad one). Throws InputError
  // naming `job_file` and data.train_shards when no shard holds seq + 1 tokens.
  TrainWindows(const std::vector<std::string>& shard_paths,
               int vocab_size,
               int64_t seq,
               uint64_t seed,
               const std::string& job_file);

  // The next `rows` windows, (rows, seq + 1) int64 on the CPU; advances the cursor by `rows`.
  torch::Tensor next(int64_t rows);
  // Rows of the given run-wide indices, in that order, (indices, seq + 1); no cursor change.
  torch::Tensor at(const std::vector<int64_t>& rows) const;

  int64_t cursor() const { return cursor_; }  // rows drawn so far
  void set_cursor(int64_t cursor) { cursor_ = cursor; }
  int64_t windows() const { return total_windows_; }  // distinct start positions

 private:
  std::vector<sweeps::TokenShard> shards_;
  std::vector<int64_t> window_offsets_;  // first global window index of each shard
  int64_t total_windows_ = 0;
  int64_t seq_;
  uint64_t seed_;
  int64_t cursor_ = 0;
};

// The validation rows, (rows, seq + 1) int64 on the CPU. Opens and checks every shard; throws
// InputError naming `job_file` and eval.val_sequences when the shards hold fewer windows.
torch::Tensor validation_rows(const std::vector<std::string>& shard_paths,
                              int vocab_size,
                              int64_t seq,
                              int rows,
                              const std::string& job_file);

}  // namespace parcae::trainer
