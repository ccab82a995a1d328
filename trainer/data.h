// Training and validation rows from llm.c token shards (sweeps/token_shards.h).
//
// A row is S+1 tokens (S inputs, S shifted targets). Rows are made in one of two ways, chosen by
// the job's data.bos_token (sweeps/job_config.h):
//
// Documents (parcae.md §9; a bos_token is set). The train shards, read in order as one token
// stream, are cut into documents, each running from a bos_token to the next one (tokens before
// the first are no document). The documents are drawn as a stream of seeded permutations, one per
// epoch, each document once per epoch, and packed "BestFit-Crop" as nanochat and [R] pack them:
// a buffer holds the next kPackingBufferDocuments documents of the stream; a row takes the
// longest buffered document that fits in the room left (the oldest among equal lengths), again
// and again, and when none fits it takes the shortest one cropped to fill the row exactly; the
// cropped rest is dropped. So every row starts at a document's first token (a BOS), every
// document sits whole inside one row unless it was the one cropped, and no row is padded.
// Packing looks only at document lengths, so it is cheap next to training, and row r of the run
// is a pure function of (shards, seed, r): a resumed run (cursor in the checkpoint) packs again
// up to its cursor and reads what an uninterrupted run reads, and every rank of a data-parallel
// run packs the same global rows and reads its own.
//
// Windows (no bos_token; sweep and job files from before documents). Row r is S+1 tokens at a
// uniformly random offset, drawn with replacement from its own counter-based stream (seed, r).
// Windows start mid-document, cross documents and repeat text as D grows; they never cross
// shard boundaries.
//
// Validation is fixed once per run and the same for every run of the same shards: with
// documents, the first eval.val_sequences rows packed by the same BestFit-Crop from the
// validation documents in shard order (no permutation); with windows, the first
// eval.val_sequences consecutive, non-overlapping S+1 windows in shard order. Rows are packed
// text with no padding, so every target counts in the loss (parcae.md §2 step 10 has nothing to
// exclude).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <torch/torch.h>

#include "sweeps/job_config.h"
#include "sweeps/token_shards.h"
#include "trainer/model.h"

namespace parcae::trainer {

// Documents the packer chooses among ([R], nanochat: 1,000).
inline constexpr int64_t kPackingBufferDocuments = 1000;

// The train or validation shards as one token stream, cut into documents at `bos_token`.
class DocumentStream {
 public:
  // Opens and checks every shard (InputError naming the file on a bad one). `field` names the
  // job's shard list in errors. Throws InputError naming `job_file`, data.bos_token and the
  // shards when no token equals bos_token.
  DocumentStream(const std::vector<std::string>& shard_paths,
                 int vocab_size,
                 int bos_token,
                 const std::string& job_file,
                 const std::string& field);

  int64_t documents() const { return static_cast<int64_t>(starts_.size()) - 1; }
  int64_t tokens() const { return tokens_; }  // in all shards, before the first BOS included
  int64_t start(int64_t document) const { return starts_[static_cast<size_t>(document)]; }
  int64_t length(int64_t document) const {
    return starts_[static_cast<size_t>(document) + 1] - starts_[static_cast<size_t>(document)];
  }
  // Copies tokens [position, position + count) of the stream (across shards) into `out`.
  void copy(int64_t position, int64_t count, int64_t* out) const;

 private:
  std::vector<sweeps::TokenShard> shards_;
  std::vector<int64_t> shard_offsets_;  // stream position of each shard's first token
  std::vector<int64_t> starts_;         // stream position of every document's BOS, then the end
  int64_t tokens_ = 0;
};

// One stretch of a packed row: tokens [start, start + length) of the stream.
struct RowPiece {
  int64_t start = 0;
  int64_t length = 0;
  bool operator==(const RowPiece& other) const {
    return start == other.start && length == other.length;
  }
};

// BestFit-Crop over a stream of document indices. `next_document` yields the stream's next
// document; it returns false when the stream ends (validation), after which rows are packed from
// what is buffered until a row cannot be filled.
class BestFitPacker {
 public:
  using NextDocument = std::function<bool(int64_t& document)>;
  BestFitPacker(const DocumentStream& documents, int64_t row_tokens, int64_t buffer_documents);

  // Packs one row of row_tokens into `pieces` (cleared first). False when the stream ran out
  // before the row was full (only a finite stream does).
  bool pack(const NextDocument& next_document, std::vector<RowPiece>& pieces);

 private:
  const DocumentStream& documents_;
  int64_t row_tokens_;
  int64_t buffer_documents_;
  // (length, order of arrival, document): ordered by length, then arrival.
  std::set<std::tuple<int64_t, int64_t, int64_t>> buffer_;
  int64_t arrivals_ = 0;
};

class TrainRows {
 public:
  // Opens and checks every shard. Throws InputError naming `job_file` and data.train_shards when
  // windows are asked for and no shard holds seq + 1 tokens, or when documents are asked for and
  // the shards hold no bos_token.
  TrainRows(const sweeps::DataConfig& data,
            int vocab_size,
            int64_t seq,
            uint64_t seed,
            const std::string& job_file);

  // The next `rows` rows, (rows, seq + 1) int64 on the CPU; advances the cursor by `rows`.
  torch::Tensor next(int64_t rows);
  // Rows of the given run-wide indices, in that order, (indices, seq + 1); no cursor change.
  // With documents, rows are packed in order and kept from the smallest index asked for, so
  // asking for an index below an earlier call's smallest one packs again from row 0. `pinned`
  // puts the rows in page-locked memory, from which a GPU copies them without a staging copy.
  torch::Tensor at(const std::vector<int64_t>& rows, bool pinned = false);

  int64_t cursor() const { return cursor_; }  // rows drawn so far
  void set_cursor(int64_t cursor) { cursor_ = cursor; }
  bool packs_documents() const { return stream_.has_value(); }
  // Documents: how many there are, and the epochs begun so far by the packing (the documents
  // drawn from the permutations divided by the document count; up to a buffer ahead of the
  // rows read).
  int64_t documents() const { return stream_ ? stream_->documents() : 0; }
  double epochs_drawn() const;
  int64_t tokens() const;  // tokens in the train shards
  // For the start event: {"packing": "documents" | "windows", "tokens": .., "documents": ..}.
  nlohmann::json summary() const;

 private:
  // Windows.
  void read_window(int64_t row, int64_t* out) const;
  // Documents.
  void restart_packing();
  bool next_document(int64_t& document);
  // Packs forward until rows [first, last] are in packed_, dropping the rows before `first`.
  void pack_rows(int64_t first, int64_t last);

  int64_t seq_;
  uint64_t seed_;
  int64_t cursor_ = 0;

  std::vector<sweeps::TokenShard> shards_;  // windows
  std::vector<int64_t> window_offsets_;     // first global window index of each shard
  int64_t total_windows_ = 0;

  std::optional<DocumentStream> stream_;  // documents
  std::optional<BestFitPacker> packer_;
  std::vector<int64_t> permutation_;  // of the current epoch
  int64_t epoch_ = -1;
  int64_t drawn_ = 0;                         // documents drawn in the current epoch
  std::deque<std::vector<RowPiece>> packed_;  // rows [packed_first_, + packed_.size())
  int64_t packed_first_ = 0;
};

// The validation rows, (rows, seq + 1) int64 on the CPU. Opens and checks every shard; throws
// InputError naming `job_file` and eval.val_sequences when the shards hold fewer rows, and
// data.bos_token when documents are asked for and the shards hold no bos_token.
torch::Tensor validation_rows(const sweeps::DataConfig& data,
                              int vocab_size,
                              int64_t seq,
                              int rows,
                              const std::string& job_file);

// h0 of validation rows [first, first + rows), (rows, seq, d) on `model`'s device. Row r's draw
// comes from its own stream (eval_seed, r), so every run sees the same h0 on the same row,
// whatever its micro_batch_size and world size (parcae.md §10).
torch::Tensor evaluation_initial_state(const LanguageModelImpl& model,
                                       uint64_t eval_seed,
                                       int64_t first,
                                       int64_t rows,
                                       int64_t seq,
                                       const torch::Device& device);

}  // namespace parcae::trainer
