// llm.c shard reading (mmap) and writing, the byte tokenizer and text-to-shard preparation.
// The header is read and written as host-order int32, which is little-endian on every machine
// this project targets (x86-64, aarch64), as llm.c assumes too.
#include "sweeps/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <utility>

#include "sweeps/atomic_file.h"
#include "sweeps/error.h"

namespace parcae::sweeps {
namespace {

std::string system_message() {
  return std::strerror(errno);
}

std::string shard_name(const std::string& split, size_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "%s_%06zu.bin", split.c_str(), index);
  return name;
}

// Writes `tokens` as shards of at most shard_tokens tokens.
std::vector<std::string> write_split(const std::vector<uint16_t>& tokens,
                                     int64_t shard_tokens,
                                     const std::filesystem::path& out_dir,
                                     const std::string& split) {
  std::vector<std::string> paths;
  for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(shard_tokens)) {
    const size_t end = std::min(tokens.size(), begin + static_cast<size_t>(shard_tokens));
    const std::vector<uint16_t> shard(tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                                      tokens.begin() + static_cast<std::ptrdiff_t>(end));
    const std::string path = (out_dir / shard_name(split, paths.size())).string();
    write_token_shard(path, shard);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace

void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (static_cast<int64_t>(tokens.size()) > kShardMaxTokens) {
    throw InputError(path,
                     "header.token_count",
                     std::to_string(tokens.size()),
                     "expected at most 2147483647 tokens in one shard");
  }
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  write_file_atomically(path,
                        {std::string_view(reinterpret_cast<const char*>(header), sizeof(header)),
                         std::string_view(reinterpret_cast<const char*>(tokens.data()),
                                          tokens.size() * sizeof(uint16_t))},
                        Durability::kFsynced);
}

TokenShard::TokenShard(const std::string& path, int vocab_size) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    throw InputError(path, "", "(file)", "cannot be opened: " + system_message());
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    throw InputError(path, "", "(file)", "cannot be read: " + system_message());
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw InputError(path, "", "(file)", "is not a regular file: expected an llm.c token shard");
  }
  const int64_t file_bytes = info.st_size;
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    throw InputError(path,
                     "header",
                     std::to_string(file_bytes) + " bytes",
                     "truncated: expected a 1024-byte llm.c shard header");
  }
  void* mapping = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED)
    throw Error("cannot map " + path + ": " + system_message());
  mapping_ = mapping;
  mapping_bytes_ = file_bytes;

  int32_t header[3];
  std::memcpy(header, mapping, sizeof(header));
  if (header[0] != kShardMagic) {
    release();
    throw InputError(path,
                     "header.magic",
                     std::to_string(header[0]),
                     "expected 20240520 (an llm.c token shard)");
  }
  if (header[1] != kShardVersion) {
    release();
    throw InputError(
        path, "header.version", std::to_string(header[1]), "expected 1 (uint16 tokens)");
  }
  const int64_t count = header[2];
  const int64_t expected_bytes = kShardHeaderBytes + 2 * count;
  if (count < 0 || file_bytes != expected_bytes) {
    release();
    throw InputError(path,
                     "size",
                     std::to_string(file_bytes) + " bytes",
                     "expected " + std::to_string(expected_bytes) + " bytes for the " +
                         std::to_string(count) + " tokens the header declares (truncated?)");
  }
  count_ = count;
  tokens_ =
      reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping) + kShardHeaderBytes);
  for (int64_t i = 0; i < count_; ++i) {
    if (tokens_[i] >= vocab_size) {
      const int64_t found = tokens_[i];
      release();
      throw InputError(path,
                       "tokens[" + std::to_string(i) + "]",
                       std::to_string(found),
                       "expected a token id < vocab_size " + std::to_string(vocab_size));
    }
  }
}

TokenShard::~TokenShard() {
  release();
}

TokenShard::TokenShard(TokenShard&& other) noexcept {
  *this = std::move(other);
}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_bytes_ = std::exchange(other.mapping_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    count_ = std::exchange(other.count_, 0);
  }
  return *this;
}

void TokenShard::release() {
  if (mapping_ != nullptr)
    ::munmap(mapping_, static_cast<size_t>(mapping_bytes_));
  mapping_ = nullptr;
  mapping_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

std::vector<uint16_t> encode_bytes(const std::string& text) {
  std::vector<uint16_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i)
    ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string decode_bytes(const std::vector<uint16_t>& ids) {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= kByteVocabSize) {
      throw InputError("",
                       "ids[" + std::to_string(i) + "]",
                       std::to_string(ids[i]),
                       "expected a byte token id < 256");
    }
    text[i] = static_cast<char>(ids[i]);
  }
  return text;
}

int64_t shard_token_count(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(path, "", "(file)", "cannot be opened: " + system_message());
  int32_t header[3] = {};
  if (!in.read(reinterpret_cast<char*>(header), sizeof(header))) {
    throw InputError(path, "header", "(truncated)", "expected a 1024-byte llm.c shard header");
  }
  if (header[0] != kShardMagic) {
    throw InputError(path,
                     "header.magic",
                     std::to_string(header[0]),
                     "expected 20240520 (an llm.c token shard)");
  }
  if (header[1] != kShardVersion) {
    throw InputError(
        path, "header.version", std::to_string(header[1]), "expected 1 (uint16 tokens)");
  }
  return header[2];
}

int64_t corpus_token_count(const std::vector<std::string>& paths) {
  int64_t tokens = 0;
  for (const auto& path : paths)
    tokens += shard_token_count(path);
  return tokens;
}

std::string to_string(DocumentSplit split) {
  switch (split) {
    case DocumentSplit::kFile:
      return "file";
    case DocumentSplit::kLine:
      return "line";
    case DocumentSplit::kParagraph:
      return "paragraph";
  }
  return "?";
}

DocumentSplit document_split_from_string(const std::string& text,
                                         const std::string& file,
                                         const std::string& field) {
  for (const DocumentSplit split :
       {DocumentSplit::kFile, DocumentSplit::kLine, DocumentSplit::kParagraph}) {
    if (text == to_string(split))
      return split;
  }
  throw InputError(file, field, "\"" + text + "\"", "expected \"file\", \"line\" or \"paragraph\"");
}

std::string to_string(HeldOut held_out) {
  return held_out == HeldOut::kSample ? "sample" : "tail";
}

HeldOut held_out_from_string(const std::string& text,
                             const std::string& file,
                             const std::string& field) {
  for (const HeldOut held_out : {HeldOut::kTail, HeldOut::kSample}) {
    if (text == to_string(held_out))
      return held_out;
  }
  throw InputError(file, field, "\"" + text + "\"", "expected \"tail\" or \"sample\"");
}

std::vector<std::string> split_documents(const std::string& text, DocumentSplit split) {
  std::vector<std::string> documents;
  auto add = [&](std::string document) {
    if (document.find_first_not_of(" \t\r\n") != std::string::npos)
      documents.push_back(std::move(document));
  };
  if (split == DocumentSplit::kFile) {
    add(text);
    return documents;
  }
  std::string current;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    end = end == std::string::npos ? text.size() : end + 1;
    const std::string line = text.substr(begin, end - begin);
    begin = end;
    const bool blank = line.find_first_not_of(" \t\r\n") == std::string::npos;
    if (split == DocumentSplit::kLine) {
      add(line);
    } else if (blank) {
      add(std::move(current));
      current.clear();
    } else {
      current += line;
    }
  }
  add(std::move(current));
  return documents;
}

PreparedShards prepare_text_shards(const std::vector<std::string>& text_files,
                                   const std::string& out_dir,
                                   const TextPreparation& options,
                                   const TextTokenizer& tokenizer) {
  if (text_files.empty())
    throw InputError("", "text", "(none)", "expected at least one text file");
  const double val_fraction = options.val_fraction;
  if (!(val_fraction > 0.0 && val_fraction < 1.0)) {
    throw InputError(
        "", "val_fraction", std::to_string(val_fraction), "expected a number in (0, 1)");
  }
  if (options.shard_tokens < 1 || options.shard_tokens > kShardMaxTokens) {
    throw InputError("",
                     "shard_tokens",
                     std::to_string(options.shard_tokens),
                     "expected between 1 and 2147483647");
  }
  const auto bos = static_cast<uint16_t>(tokenizer.bos_token());
  std::vector<uint16_t> tokens;
  std::vector<size_t> document_starts;
  for (const auto& file : text_files) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
      throw InputError(file, "", "(file)", "cannot be opened for reading");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad())
      throw InputError(file, "", "(file)", "cannot be read");
    const std::vector<std::string> documents = split_documents(text, options.documents);
    for (size_t d = 0; d < documents.size(); ++d) {
      const std::vector<uint16_t> ids = tokenizer.encode(documents[d]);
      const auto found = std::find(ids.begin(), ids.end(), bos);
      if (found != ids.end()) {
        throw InputError(
            file,
            "document " + std::to_string(d) + ", token " + std::to_string(found - ids.begin()),
            std::to_string(bos),
            "text without the BOS id " + std::to_string(bos) + " of the " + tokenizer.name() +
                " tokenizer (for bytes: the control byte 0x02)",
            "remove that byte from the text, or use the sentencepiece tokenizer");
      }
      document_starts.push_back(tokens.size());
      tokens.push_back(bos);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
  }
  const auto total = static_cast<int64_t>(tokens.size());
  const auto wanted_val =
      static_cast<int64_t>(std::llround(val_fraction * static_cast<double>(total)));
  const size_t n_documents = document_starts.size();
  const auto document_tokens = [&](size_t d) {
    const size_t end = d + 1 < n_documents ? document_starts[d + 1] : tokens.size();
    return static_cast<int64_t>(end - document_starts[d]);
  };
  // The order documents are held out in: from the last backwards, or a permutation drawn with
  // mt19937_64 (its output is fixed by the standard, unlike std::shuffle's use of it).
  std::vector<size_t> order(n_documents);
  std::iota(order.rbegin(), order.rend(), size_t{0});
  if (options.held_out == HeldOut::kSample) {
    std::mt19937_64 rng(0x9e3779b97f4a7c15ULL);
    for (size_t i = n_documents; i > 1; --i)
      std::swap(order[i - 1], order[static_cast<size_t>(rng() % i)]);
  }
  std::vector<bool> is_val(n_documents, false);
  int64_t val_tokens = 0;
  size_t val_documents = 0;
  for (size_t i = 0; i < n_documents && val_tokens < wanted_val; ++i) {
    is_val[order[i]] = true;
    val_tokens += document_tokens(order[i]);
    ++val_documents;
  }
  if (n_documents < 2 || val_documents == n_documents || wanted_val < 1) {
    throw InputError(
        text_files.front(),
        "",
        std::to_string(n_documents) + " documents, " + std::to_string(total) + " tokens",
        "too little text to hold out " + std::to_string(val_fraction) +
            " of it in whole documents and keep both splits non-empty",
        "give more text, or cut it into more documents (--documents line)");
  }
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error)
    throw Error("cannot create " + out_dir + ": " + error.message());
  const std::filesystem::path out = std::filesystem::absolute(out_dir);
  // Shards a killed run of this left half written.
  remove_temporaries(out.string());

  std::vector<uint16_t> train_stream;
  std::vector<uint16_t> val_stream;
  train_stream.reserve(static_cast<size_t>(total - val_tokens));
  val_stream.reserve(static_cast<size_t>(val_tokens));
  for (size_t d = 0; d < n_documents; ++d) {
    auto& stream = is_val[d] ? val_stream : train_stream;
    const auto begin = tokens.begin() + static_cast<std::ptrdiff_t>(document_starts[d]);
    stream.insert(stream.end(), begin, begin + static_cast<std::ptrdiff_t>(document_tokens(d)));
  }
  PreparedShards prepared;
  prepared.train_shards = write_split(train_stream, options.shard_tokens, out, "train");
  prepared.val_shards = write_split(val_stream, options.shard_tokens, out, "val");
  prepared.train_tokens = static_cast<int64_t>(train_stream.size());
  prepared.val_tokens = static_cast<int64_t>(val_stream.size());
  prepared.train_documents = static_cast<int64_t>(n_documents - val_documents);
  prepared.val_documents = static_cast<int64_t>(val_documents);
  prepared.bos_token = tokenizer.bos_token();
  prepared.vocab_size = tokenizer.vocab_size();
  nlohmann::json info = {{"tokenizer", tokenizer.name()},
                         {"vocab_size", tokenizer.vocab_size()},
                         {"bos_token", tokenizer.bos_token()},
                         {"documents", to_string(options.documents)},
                         {"held_out", to_string(options.held_out)},
                         {"train_tokens", prepared.train_tokens},
                         {"val_tokens", prepared.val_tokens},
                         {"train_documents", prepared.train_documents},
                         {"val_documents", prepared.val_documents}};
  info.update(tokenizer.save(out.string()));
  prepared.tokenizer_info = (out / kTokenizerInfoFile).string();
  write_file_atomically(prepared.tokenizer_info, {info.dump(2), "\n"}, Durability::kFsynced);
  return prepared;
}

}  // namespace parcae::sweeps
