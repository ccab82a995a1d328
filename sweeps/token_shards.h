// Token shards in llm.c's format, the byte-level tokenizer, and turning text files into shards.
//
// A shard is a 256-int32 little-endian header (magic 20240520, version 1, token count, the rest
// zero) followed by that many uint16 token ids, the format of llm.c's `dev/data/*.py` and of
// nanochat-style pipelines, so shards people already made work unchanged. The trainer reads
// shards through TokenShard, which checks every shard on open and names the file in each error;
// `parcae-scale data prepare` writes them through prepare_text_shards. Nothing here needs
// LibTorch, so the machine that prepares data never needs it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parcae::sweeps {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;  // 1024
// The header stores the count as int32, so one shard holds at most 2^31 - 1 tokens.
inline constexpr int64_t kShardMaxTokens = 2147483647;

// Writes `tokens` as one shard at `path`, atomically and fsynced (atomic_file.h), so a reader
// never sees half a shard. Throws InputError (file named) when there are more than
// kShardMaxTokens tokens and parcae::Error when the file cannot be written.
void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens);

// A read-only, memory-mapped shard. Opening checks, in order: the file opens and holds a whole
// header; magic == 20240520; version == 1; file size == 1024 + 2 * count; every token id is
// < vocab_size. Each failure throws InputError naming the file, the header field or token
// position, the value found and what was expected. Move-only; the mapping lives as long as the
// object.
class TokenShard {
 public:
  TokenShard(const std::string& path, int vocab_size);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }  // tokens
  const uint16_t* tokens() const { return tokens_; }
  uint16_t operator[](int64_t i) const { return tokens_[i]; }

 private:
  void release();

  std::string path_;
  void* mapping_ = nullptr;
  int64_t mapping_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
};

// Byte-level tokenizer: vocabulary of 256, byte b is token id b. It needs no vocabulary file,
// so any text becomes training data; the price is about 4.7x more tokens than the paper's BPE.
inline constexpr int kByteVocabSize = 256;
std::vector<uint16_t> encode_bytes(const std::string& text);
// Throws InputError when an id is >= 256.
std::string decode_bytes(const std::vector<uint16_t>& ids);

// What prepare_text_shards wrote: absolute shard paths in order, and token counts.
struct PreparedShards {
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
};

// Reads `text_files` in the given order, concatenates their bytes, tokenizes them with the byte
// tokenizer and writes `out_dir/train_NNNNNN.bin` and `out_dir/val_NNNNNN.bin` with at most
// `shard_tokens` tokens each. The held-out split is the last round(val_fraction * total) tokens,
// one contiguous tail, so no validation window overlaps a training window.
// Throws InputError when a file cannot be read, when there is no text, when val_fraction is not
// in (0, 1), when shard_tokens is not in [1, kShardMaxTokens], or when either split would be
// empty; parcae::Error when out_dir cannot be written.
PreparedShards prepare_text_shards(const std::vector<std::string>& text_files,
                                   const std::string& out_dir,
                                   double val_fraction = 0.1,
                                   int64_t shard_tokens = 100000000);

}  // namespace parcae::sweeps
