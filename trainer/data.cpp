// Training rows (packed documents or random windows) with a resumable cursor, and the fixed
// validation rows.
#include "trainer/data.h"

#include <algorithm>
#include <limits>

#include "sweeps/error.h"
#include "trainer/sampling.h"
#include "trainer/torch_compat.h"

namespace parcae::trainer {
namespace {

// The third key word of the data stream: 0 for a window position, 1 for an epoch's permutation.
constexpr uint64_t kWindowKey = 0;
constexpr uint64_t kPermutationKey = 1;

}  // namespace

DocumentStream::DocumentStream(const std::vector<std::string>& shard_paths,
                               int vocab_size,
                               int bos_token,
                               const std::string& job_file,
                               const std::string& field) {
  for (const auto& path : shard_paths) {
    shards_.emplace_back(path, vocab_size);
    const sweeps::TokenShard& shard = shards_.back();
    shard_offsets_.push_back(tokens_);
    const uint16_t* tokens = shard.tokens();
    for (int64_t i = 0; i < shard.size(); ++i) {
      if (tokens[i] == bos_token)
        starts_.push_back(tokens_ + i);
    }
    tokens_ += shard.size();
  }
  if (starts_.empty()) {
    throw InputError(job_file,
                     "data.bos_token",
                     std::to_string(bos_token),
                     "an id that starts the documents of " + field + ", but none of its " +
                         std::to_string(tokens_) + " tokens is " + std::to_string(bos_token),
                     "give the id the shards' tool put before every document (BOS; 50256 for "
                     "GPT-2 shards of llm.c and nanochat; the tokenizer.json beside shards from "
                     "`parcae-scale data prepare` names it), or omit bos_token for random "
                     "windows");
  }
  starts_.push_back(tokens_);
}

void DocumentStream::copy(int64_t position, int64_t count, int64_t* out) const {
  auto shard =
      static_cast<size_t>(std::upper_bound(shard_offsets_.begin(), shard_offsets_.end(), position) -
                          shard_offsets_.begin() - 1);
  while (count > 0) {
    const sweeps::TokenShard& s = shards_[shard];
    const int64_t local = position - shard_offsets_[shard];
    const int64_t n = std::min(count, s.size() - local);
    const uint16_t* tokens = s.tokens() + local;
    for (int64_t t = 0; t < n; ++t)
      out[t] = tokens[t];
    out += n;
    position += n;
    count -= n;
    ++shard;  // a document may go on in the next shard, as llm.c's tools write them
  }
}

BestFitPacker::BestFitPacker(const DocumentStream& documents,
                             int64_t row_tokens,
                             int64_t buffer_documents)
    : documents_(documents), row_tokens_(row_tokens), buffer_documents_(buffer_documents) {}

bool BestFitPacker::pack(const NextDocument& next_document, std::vector<RowPiece>& pieces) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  pieces.clear();
  int64_t room = row_tokens_;
  while (room > 0) {
    int64_t document = 0;
    while (static_cast<int64_t>(buffer_.size()) < buffer_documents_ && next_document(document))
      buffer_.emplace(documents_.length(document), arrivals_++, document);
    if (buffer_.empty())
      return false;
    auto it = buffer_.upper_bound({room, kMax, kMax});
    if (it != buffer_.begin()) {
      // The longest document that fits whole; among equal lengths the one buffered first.
      const int64_t length = std::get<0>(*std::prev(it));
      it = buffer_.lower_bound({length, kMin, kMin});
      pieces.push_back({documents_.start(std::get<2>(*it)), length});
      room -= length;
    } else {
      // None fits: crop the shortest to fill the row. Its rest is dropped, as in [R].
      it = buffer_.begin();
      pieces.push_back({documents_.start(std::get<2>(*it)), room});
      room = 0;
    }
    buffer_.erase(it);
  }
  return true;
}

TrainRows::TrainRows(const sweeps::DataConfig& data,
                     int vocab_size,
                     int64_t seq,
                     uint64_t seed,
                     const std::string& job_file)
    : seq_(seq), seed_(seed) {
  if (data.documents()) {
    stream_.emplace(data.train_shards, vocab_size, data.bos_token, job_file, "data.train_shards");
    restart_packing();
    return;
  }
  int64_t tokens = 0;
  for (const auto& path : data.train_shards) {
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

int64_t TrainRows::tokens() const {
  if (stream_)
    return stream_->tokens();
  int64_t tokens = 0;
  for (const auto& shard : shards_)
    tokens += shard.size();
  return tokens;
}

nlohmann::json TrainRows::summary() const {
  nlohmann::json summary = {{"packing", stream_ ? "documents" : "windows"}, {"tokens", tokens()}};
  if (stream_)
    summary["documents"] = stream_->documents();
  return summary;
}

double TrainRows::epochs_drawn() const {
  if (!stream_ || epoch_ < 0)
    return 0.0;
  return static_cast<double>(epoch_) +
         static_cast<double>(drawn_) / static_cast<double>(stream_->documents());
}

torch::Tensor TrainRows::next(int64_t rows) {
  std::vector<int64_t> indices(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    indices[static_cast<size_t>(r)] = cursor_ + r;
  cursor_ += rows;
  return at(indices);
}

torch::Tensor TrainRows::at(const std::vector<int64_t>& rows, bool pinned) {
  const auto count = static_cast<int64_t>(rows.size());
  torch::Tensor out = torch::empty(
      {count, seq_ + 1}, torch::TensorOptions().dtype(torch::kLong).pinned_memory(pinned));
  if (count == 0)
    return out;
  int64_t* data = out.data_ptr<int64_t>();
  if (!stream_) {
    for (int64_t r = 0; r < count; ++r)
      read_window(rows[static_cast<size_t>(r)], data + r * (seq_ + 1));
    return out;
  }
  const int64_t lowest = *std::min_element(rows.begin(), rows.end());
  if (lowest < packed_first_)
    restart_packing();
  pack_rows(lowest, *std::max_element(rows.begin(), rows.end()));
  for (int64_t r = 0; r < count; ++r) {
    int64_t* row = data + r * (seq_ + 1);
    const auto index = static_cast<size_t>(rows[static_cast<size_t>(r)] - packed_first_);
    for (const RowPiece& piece : packed_[index]) {
      stream_->copy(piece.start, piece.length, row);
      row += piece.length;
    }
  }
  return out;
}

void TrainRows::read_window(int64_t row, int64_t* out) const {
  // The third key word, fixed at 0, is part of the stream's definition (as in sampling.cpp).
  SplitMix64 rng(stream_seed(
      {seed_, static_cast<uint64_t>(Stream::kData), kWindowKey, static_cast<uint64_t>(row)}));
  // 64-bit modulo: the bias is below windows / 2^64, nothing at any real shard size.
  const auto window = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(total_windows_));
  const auto shard =
      static_cast<size_t>(std::upper_bound(window_offsets_.begin(), window_offsets_.end(), window) -
                          window_offsets_.begin() - 1);
  const uint16_t* tokens = shards_[shard].tokens() + (window - window_offsets_[shard]);
  for (int64_t t = 0; t <= seq_; ++t)
    out[t] = tokens[t];
}

void TrainRows::restart_packing() {
  packer_.emplace(*stream_, seq_ + 1, kPackingBufferDocuments);
  permutation_.clear();
  epoch_ = -1;
  drawn_ = 0;
  packed_.clear();
  packed_first_ = 0;
}

bool TrainRows::next_document(int64_t& document) {
  const int64_t n = stream_->documents();
  if (epoch_ < 0 || drawn_ == n) {
    // Fisher-Yates from the epoch's own stream, so epoch e is the same permutation in any run
    // with this seed, however it got there.
    ++epoch_;
    drawn_ = 0;
    permutation_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      permutation_[static_cast<size_t>(i)] = i;
    SplitMix64 rng(stream_seed({seed_,
                                static_cast<uint64_t>(Stream::kData),
                                kPermutationKey,
                                static_cast<uint64_t>(epoch_)}));
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(i + 1));
      std::swap(permutation_[static_cast<size_t>(i)], permutation_[static_cast<size_t>(j)]);
    }
  }
  document = permutation_[static_cast<size_t>(drawn_++)];
  return true;
}

void TrainRows::pack_rows(int64_t first, int64_t last) {
  const BestFitPacker::NextDocument next = [this](int64_t& document) {
    return next_document(document);
  };
  while (!packed_.empty() && packed_first_ < first) {
    packed_.pop_front();
    ++packed_first_;
  }
  // Rows before `first` (a resume replaying up to its cursor) are packed and dropped at once, so
  // the memory held is one step's rows however far the cursor is.
  std::vector<RowPiece> skipped;
  for (; packed_.empty() && packed_first_ < first; ++packed_first_)
    TORCH_CHECK(packer_->pack(next, skipped), "the training document stream ended");
  while (packed_first_ + static_cast<int64_t>(packed_.size()) <= last) {
    packed_.emplace_back();
    // The permutations never end, so every row fills.
    TORCH_CHECK(packer_->pack(next, packed_.back()), "the training document stream ended");
  }
}

torch::Tensor validation_rows(const sweeps::DataConfig& data,
                              int vocab_size,
                              int64_t seq,
                              int rows,
                              const std::string& job_file) {
  // Counted before the tensor is allocated: a request the shards cannot meet is refused without
  // asking for its memory first. Windows stay inside one shard; packed rows may cross shards, as
  // documents do, and hold seq + 1 distinct tokens each, so the total bounds them.
  int64_t tokens = 0, windows = 0;
  for (const auto& path : data.val_shards) {
    const int64_t size = sweeps::TokenShard(path, vocab_size).size();
    tokens += size;
    windows += size / (seq + 1);
  }
  const int64_t available = data.documents() ? tokens / (seq + 1) : windows;
  if (available < rows) {
    throw InputError(job_file,
                     "eval.val_sequences",
                     std::to_string(rows),
                     "the validation shards hold only " + std::to_string(available) +
                         (data.documents() ? " rows" : " windows") +
                         " of context_length + 1 = " + std::to_string(seq + 1) + " tokens",
                     "lower eval.val_sequences or add validation text");
  }
  torch::Tensor out = torch::empty({rows, seq + 1}, torch::kLong);
  auto accessor = out.accessor<int64_t, 2>();
  int64_t filled = 0;
  std::string unit;
  if (data.documents()) {
    const DocumentStream stream(
        data.val_shards, vocab_size, data.bos_token, job_file, "data.val_shards");
    BestFitPacker packer(stream, seq + 1, kPackingBufferDocuments);
    int64_t next = 0;
    const BestFitPacker::NextDocument in_order = [&](int64_t& document) {
      if (next == stream.documents())
        return false;
      document = next++;
      return true;
    };
    std::vector<RowPiece> pieces;
    int64_t* base = out.data_ptr<int64_t>();
    while (filled < rows && packer.pack(in_order, pieces)) {
      int64_t* row = base + filled * (seq + 1);
      for (const RowPiece& piece : pieces) {
        stream.copy(piece.start, piece.length, row);
        row += piece.length;
      }
      ++filled;
    }
    unit = "rows packed from " + std::to_string(stream.documents()) + " documents";
  } else {
    for (const auto& path : data.val_shards) {
      const sweeps::TokenShard shard(path, vocab_size);
      for (int64_t start = 0; start + seq + 1 <= shard.size() && filled < rows;
           start += seq + 1, ++filled) {
        for (int64_t t = 0; t <= seq; ++t)
          accessor[filled][t] = shard[start + t];
      }
    }
    unit = "windows";
  }
  if (filled < rows) {
    throw InputError(job_file,
                     "eval.val_sequences",
                     std::to_string(rows),
                     "the validation shards hold only " + std::to_string(filled) + " " + unit +
                         " of context_length + 1 = " + std::to_string(seq + 1) + " tokens",
                     "lower eval.val_sequences or add validation text");
  }
  return out;
}

torch::Tensor evaluation_initial_state(const LanguageModelImpl& model,
                                       uint64_t eval_seed,
                                       int64_t first,
                                       int64_t rows,
                                       int64_t seq,
                                       const torch::Device& device) {
  std::vector<torch::Tensor> states;
  for (int64_t r = first; r < first + rows; ++r) {
    // Four key words, where the draws keyed by micro-batch had three: the streams never meet.
    at::Generator generator = compat::make_generator(
        device,
        stream_seed(
            {eval_seed, static_cast<uint64_t>(Stream::kEvalState), 1, static_cast<uint64_t>(r)}));
    states.push_back(model.sample_initial_state(1, seq, generator));
  }
  return torch::cat(states, 0);
}

}  // namespace parcae::trainer
