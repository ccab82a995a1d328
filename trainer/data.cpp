// Random training windows with a resumable cursor, and the fixed validation rows.
#include "trainer/data.h"

#include <algorithm>

#include "sweeps/error.h"
#include "trainer/sampling.h"

namespace parcae::trainer {

TrainWindows::TrainWindows(const std::vector<std::string>& shard_paths,
                           int vocab_size,
                           int64_t seq,
                           uint64_t seed,
                           const std::string& job_file)
    : seq_(seq), seed_(seed) {
  int64_t tokens = 0;
  for (const auto& path : shard_paths) {
    shards_.emplace_back(path, vocab_size);
    window_offsets_.push_back(total_windows_);
    total_windows_ += std::max<int64_t>(0, shards_.back().size() - seq);
    tokens += shards_.back().size();
  }
  if (total_windows_ == 0) {
    throw InputError(job_file,
                     "data.train_shards",
                     std::to_string(tokens) + " tokens",
                     "expected a shard with at least context_length + 1 = " +
                         std::to_string(seq + 1) + " tokens");
  }
}

torch::Tensor TrainWindows::next(int64_t rows) {
  std::vector<int64_t> indices(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    indices[static_cast<size_t>(r)] = cursor_ + r;
  cursor_ += rows;
  return at(indices);
}

torch::Tensor TrainWindows::at(const std::vector<int64_t>& rows) const {
  const auto count = static_cast<int64_t>(rows.size());
  torch::Tensor out = torch::empty({count, seq_ + 1}, torch::kLong);
  auto data = out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < count; ++r) {
    // The third key word, fixed at 0, is part of the stream's definition (as in sampling.cpp).
    SplitMix64 rng(stream_seed({seed_,
                                static_cast<uint64_t>(Stream::kData),
                                0,
                                static_cast<uint64_t>(rows[static_cast<size_t>(r)])}));
    // 64-bit modulo: the bias is below windows / 2^64, nothing at any real shard size.
    const auto window = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(total_windows_));
    const auto shard = static_cast<size_t>(
        std::upper_bound(window_offsets_.begin(), window_offsets_.end(), window) -
        window_offsets_.begin() - 1);
    const uint16_t* tokens = shards_[shard].tokens() + (window - window_offsets_[shard]);
    for (int64_t t = 0; t <= seq_; ++t)
      data[r][t] = tokens[t];
  }
  return out;
}

torch::Tensor validation_rows(const std::vector<std::string>& shard_paths,
                              int vocab_size,
                              int64_t seq,
                              int rows,
                              const std::string& job_file) {
  // Counted before the tensor is allocated: a request the shards cannot meet is refused without
  // asking for its memory first.
  int64_t available = 0;
  for (const auto& path : shard_paths)
    available += sweeps::TokenShard(path, vocab_size).size() / (seq + 1);
  if (available < rows) {
    throw InputError(job_file,
                     "eval.val_sequences",
                     std::to_string(rows),
                     "the validation shards hold only " + std::to_string(available) +
                         " windows of context_length + 1 = " + std::to_string(seq + 1) + " tokens",
                     "lower eval.val_sequences or add validation text");
  }
  torch::Tensor out = torch::empty({rows, seq + 1}, torch::kLong);
  auto data = out.accessor<int64_t, 2>();
  int64_t filled = 0;
  for (const auto& path : shard_paths) {
    const sweeps::TokenShard shard(path, vocab_size);
    for (int64_t start = 0; start + seq + 1 <= shard.size() && filled < rows;
         start += seq + 1, ++filled) {
      for (int64_t t = 0; t <= seq; ++t)
        data[filled][t] = shard[start + t];
    }
  }
  if (filled < rows) {
    throw InputError(job_file,
                     "eval.val_sequences",
                     std::to_string(rows),
                     "the validation shards hold only " + std::to_string(filled) +
                         " windows of context_length + 1 = " + std::to_string(seq + 1) + " tokens",
                     "lower eval.val_sequences or add validation text");
  }
  return out;
}

}  // namespace parcae::trainer
