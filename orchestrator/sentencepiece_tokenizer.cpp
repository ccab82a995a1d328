// SentencePiece BPE for `data prepare` (Debian's libsentencepiece-dev), and make_tokenizer() /
// load_tokenizer(), which pick between it and the byte tokenizer. The model is learned into
// memory and written beside the shards as tokenizer.model by save(), so that a folder of shards
// always carries what decodes it.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "orchestrator/orchestrator.h"
#include "sweeps/atomic_file.h"
#include "sweeps/error.h"

namespace parcae::orchestrator {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFile = "tokenizer.model";
// uint16 shards hold ids below 65536.
constexpr int kMaxVocabSize = 65536;

class SentencePieceTokenizer : public sweeps::TextTokenizer {
 public:
  // `serialized` is a ModelProto; `origin` names where it came from in errors.
  SentencePieceTokenizer(const std::string& serialized,
                         const std::string& origin,
                         const std::string& field)
      : serialized_(serialized) {
    const auto status = processor_.LoadFromSerializedProto(serialized_);
    if (!status.ok())
      throw InputError(origin, field, "(model)", "a SentencePiece model: " + status.ToString());
    if (processor_.GetPieceSize() > kMaxVocabSize) {
      throw InputError(origin,
                       field,
                       std::to_string(processor_.GetPieceSize()) + " pieces",
                       "at most 65536 pieces, the most a uint16 shard holds");
    }
    if (processor_.bos_id() < 0) {
      throw InputError(
          origin, field, "bos_id = -1", "a model with a BOS piece (documents start with it)");
    }
  }

  std::string name() const override { return "sentencepiece"; }
  int vocab_size() const override { return processor_.GetPieceSize(); }
  int bos_token() const override { return processor_.bos_id(); }

  std::vector<uint16_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok())
      throw Error("SentencePiece cannot encode a document: " + status.ToString());
    return std::vector<uint16_t>(ids.begin(), ids.end());
  }

  std::string decode(const std::vector<uint16_t>& ids) const override {
    std::vector<int> pieces;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] >= vocab_size()) {
        throw InputError("",
                         "ids[" + std::to_string(i) + "]",
                         std::to_string(ids[i]),
                         "expected an id < " + std::to_string(vocab_size()));
      }
      pieces.push_back(ids[i]);
    }
    std::string text;
    const auto status = processor_.Decode(pieces, &text);
    if (!status.ok())
      throw Error("SentencePiece cannot decode: " + status.ToString());
    return text;
  }

  nlohmann::json save(const std::string& dir) const override {
    sweeps::write_file_atomically(
        (fs::path(dir) / kModelFile).string(), {serialized_}, sweeps::Durability::kFsynced);
    return {{"model", kModelFile}};
  }

 private:
  std::string serialized_;
  sentencepiece::SentencePieceProcessor processor_;
};

std::string read_binary(const std::string& path,
                        const std::string& file,
                        const std::string& field) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(file, field, "\"" + path + "\"", "a readable SentencePiece .model file");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Learns BPE from the text files. The settings keep the text exact (identity normalization, no
// whitespace folding or dummy prefix, byte fallback for anything unseen), so decode(encode(x)) is
// x; digits are split one by one, the nearest SentencePiece has to the paper's \p{N}{1,2}.
std::string learn_model(const sweeps::TokenizerOptions& options,
                        const std::vector<std::string>& text_files,
                        const std::string& file,
                        const std::string& field_prefix) {
  std::string inputs;
  for (const auto& text : text_files)
    inputs += (inputs.empty() ? "" : ",") + text;
  const std::unordered_map<std::string, std::string> arguments = {
      {"input", inputs},
      {"model_prefix", ""},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      // A small corpus may not hold vocab_size pieces: take what it holds.
      {"hard_vocab_limit", "false"},
      {"max_sentence_length", "1000000"},
      {"input_sentence_size", "10000000"},
      {"shuffle_input_sentence", "true"},
      {"minloglevel", "2"},
  };
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(arguments, nullptr, &serialized);
  if (!status.ok()) {
    throw InputError(file,
                     field_prefix + "tokenizer",
                     "\"sentencepiece\"",
                     "text SentencePiece can learn from: " + status.ToString(),
                     "give more text or a smaller vocab_size");
  }
  return serialized;
}

}  // namespace

std::unique_ptr<sweeps::TextTokenizer> make_tokenizer(const sweeps::TokenizerOptions& options,
                                                      const std::vector<std::string>& text_files,
                                                      const std::string& file,
                                                      const std::string& field_prefix) {
  if (options.kind == "bytes")
    return std::make_unique<sweeps::ByteTokenizer>();
  if (options.kind != "sentencepiece") {
    throw InputError(file,
                     field_prefix + "tokenizer",
                     "\"" + options.kind + "\"",
                     "expected \"bytes\" or \"sentencepiece\"");
  }
  if (!options.model.empty()) {
    return std::make_unique<SentencePieceTokenizer>(
        read_binary(options.model, file, field_prefix + "tokenizer_model"),
        options.model,
        "(model)");
  }
  // 256 byte pieces, 3 specials and at least one merge.
  if (options.vocab_size < 260 || options.vocab_size > kMaxVocabSize) {
    throw InputError(file,
                     field_prefix + "vocab_size",
                     std::to_string(options.vocab_size),
                     "expected 260..65536 (256 byte pieces, BOS, EOS, UNK and merges; the paper "
                     "uses 32768)");
  }
  return std::make_unique<SentencePieceTokenizer>(
      learn_model(options, text_files, file, field_prefix), file, field_prefix + "tokenizer");
}

std::unique_ptr<sweeps::TextTokenizer> load_tokenizer(const std::string& shard_dir) {
  const std::string info_path = (fs::path(shard_dir) / sweeps::kTokenizerInfoFile).string();
  std::ifstream in(info_path);
  if (!in) {
    throw InputError(
        info_path, "", "(file)", "cannot be opened: shards made by `parcae-scale data prepare`");
  }
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(info_path, "", "(file)", std::string("is not valid JSON: ") + e.what());
  }
  const std::string kind = info.value("tokenizer", "");
  if (kind == "bytes")
    return std::make_unique<sweeps::ByteTokenizer>();
  if (kind == "sentencepiece") {
    const std::string model = (fs::path(shard_dir) / info.value("model", kModelFile)).string();
    return std::make_unique<SentencePieceTokenizer>(
        read_binary(model, info_path, "model"), model, "(model)");
  }
  throw InputError(
      info_path, "tokenizer", "\"" + kind + "\"", "expected \"bytes\" or \"sentencepiece\"");
}

}  // namespace parcae::orchestrator
