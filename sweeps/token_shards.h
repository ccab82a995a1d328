// Token shards in llm.c's format, the byte-level tokenizer, and turning text files into shards.
//
// A shard is a 256-int32 little-endian header (magic 20240520, version 1, token count, the rest
// zero) followed by that many uint16 token ids, the format of llm.c's `dev/data/*.py` and of
// nanochat-style pipelines, so shards people already made work unchanged. Shards hold documents,
// each starting at a BOS id (llm.c's GPT-2 shards start each one with <|endoftext|>, 50256),
// which the trainer's packing reads (trainer/data.h, DataConfig::bos_token). The trainer reads
// shards through TokenShard, which checks every shard on open and names the file in each error;
// `parcae-scale data prepare` writes them through prepare_text_shards. Nothing here needs
// LibTorch, so the machine that prepares data never needs it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

// Tokens in the shards, from their headers alone (magic and version checked, InputError naming
// the file otherwise): the corpus size D is compared against, for the epochs a cell implies.
int64_t shard_token_count(const std::string& path);
int64_t corpus_token_count(const std::vector<std::string>& paths);

// What turns a document's text into ids and back, for prepare_text_shards. encode() adds no BOS;
// the preparation puts bos_token() before every document.
class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  virtual std::string name() const = 0;  // "bytes", "sentencepiece": tokenizer.json's "tokenizer"
  virtual int vocab_size() const = 0;
  virtual int bos_token() const = 0;
  virtual std::vector<uint16_t> encode(const std::string& text) const = 0;
  // Throws InputError on an id outside the vocabulary.
  virtual std::string decode(const std::vector<uint16_t>& ids) const = 0;
  // Writes what is needed to decode the shards into `dir` (the model file) and returns the
  // fields it adds to tokenizer.json (such as {"model": "tokenizer.model"}).
  virtual nlohmann::json save(const std::string& dir) const = 0;
};

// Byte-level tokenizer: vocabulary of 256, byte b is token id b, and the ASCII control byte STX
// ("start of text", 0x02), which text does not contain, is the BOS. It needs no vocabulary file,
// so any text becomes training data; the price is about 4.7x more tokens than the paper's BPE.
inline constexpr int kByteVocabSize = 256;
inline constexpr int kByteBosToken = 0x02;
std::vector<uint16_t> encode_bytes(const std::string& text);
// Throws InputError when an id is >= 256.
std::string decode_bytes(const std::vector<uint16_t>& ids);

class ByteTokenizer : public TextTokenizer {
 public:
  std::string name() const override { return "bytes"; }
  int vocab_size() const override { return kByteVocabSize; }
  int bos_token() const override { return kByteBosToken; }
  std::vector<uint16_t> encode(const std::string& text) const override {
    return encode_bytes(text);
  }
  std::string decode(const std::vector<uint16_t>& ids) const override { return decode_bytes(ids); }
  nlohmann::json save(const std::string&) const override { return nlohmann::json::object(); }
};

// How a text file is cut into documents: the whole file, each line, or each paragraph (text
// between blank lines). Empty documents (blank lines, runs of blank lines) are dropped.
enum class DocumentSplit { kFile, kLine, kParagraph };
std::string to_string(DocumentSplit split);
// "file", "line" or "paragraph"; InputError naming `file` and `field` otherwise.
DocumentSplit document_split_from_string(const std::string& text,
                                         const std::string& file,
                                         const std::string& field);
std::vector<std::string> split_documents(const std::string& text, DocumentSplit split);

// Which documents are held out for validation. The tail (the last documents) suits text whose
// order carries no meaning, or a split in time; text written in order (one book, a corpus sorted
// by source) puts a different distribution in its tail, so its validation loss measures a shift
// and not the training distribution. "sample" holds out documents drawn across the whole text by
// a fixed permutation, the same on every machine.
enum class HeldOut { kTail, kSample };
std::string to_string(HeldOut held_out);
// "tail" or "sample"; InputError naming `file` and `field` otherwise.
HeldOut held_out_from_string(const std::string& text,
                             const std::string& file,
                             const std::string& field);

// The file beside the shards that says how they were made: {"tokenizer", "vocab_size",
// "bos_token", "documents", ...the tokenizer's own fields}. Written last, so a folder that has it
// holds every shard.
inline constexpr const char* kTokenizerInfoFile = "tokenizer.json";

// Which tokenizer prepares text (built by orchestrator::make_tokenizer, which links
// SentencePiece; this library does not).
struct TokenizerOptions {
  std::string kind = "bytes";  // "bytes" (ByteTokenizer) or "sentencepiece" (BPE, parcae.md §9)
  int vocab_size = 32768;      // sentencepiece learned from the text: the paper's V, <= 65536
  std::string model;           // sentencepiece: an existing .model file, loaded, not learned
};

struct TextPreparation {
  double val_fraction = 0.1;  // held out, in tokens, rounded to whole documents
  int64_t shard_tokens = 100000000;
  DocumentSplit documents = DocumentSplit::kFile;
  HeldOut held_out = HeldOut::kTail;
};

// What prepare_text_shards wrote: absolute shard paths in order, and token counts.
struct PreparedShards {
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t train_documents = 0;
  int64_t val_documents = 0;
  int bos_token = 0;
  int vocab_size = 0;
  std::string tokenizer_info;  // absolute path of tokenizer.json
};

// Reads `text_files` in the given order, cuts each into documents, tokenizes every document as
// bos_token followed by tokenizer.encode(text), and writes the token stream as
// `out_dir/train_NNNNNN.bin` and `out_dir/val_NNNNNN.bin` of at most `shard_tokens` tokens each
// (a document may go on in the next shard, as in llm.c's shards), then the tokenizer's files and
// tokenizer.json. The held-out split is the fewest documents whose tokens reach
// round(val_fraction * total), taken from the end (HeldOut::kTail) or in the order of a fixed
// permutation (kSample), so no document is in both splits; each split keeps the text's order.
// Throws InputError when a file cannot be read, when there is no text, when a document encodes
// to the BOS id (the byte 0x02 in byte-level text), when val_fraction is not in (0, 1), when
// shard_tokens is not in [1, kShardMaxTokens], or when either split would hold no document;
// parcae::Error when out_dir cannot be written.
PreparedShards prepare_text_shards(const std::vector<std::string>& text_files,
                                   const std::string& out_dir,
                                   const TextPreparation& options,
                                   const TextTokenizer& tokenizer);

}  // namespace parcae::sweeps
