// Tests of the llm.c shard format, the byte tokenizer and text-to-shard preparation: shards
// round-trip, every corruption the reader checks for is reported with the file's name, and
// prepared splits hold exactly the text's bytes.
#include "sweeps/token_shards.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "tests/support/scratch_dir.h"

namespace parcae::sweeps {
namespace {

using test_support::ScratchDir;

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The error message of opening `path`, or "" when it opens.
std::string open_error(const std::string& path, int vocab_size) {
  try {
    TokenShard shard(path, vocab_size);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(TokenShards, AShardRoundTripsWithTheLlmcHeader) {
  const ScratchDir dir;
  const std::vector<uint16_t> tokens = {0, 1, 255, 1000, 65535, 7};
  write_token_shard(dir.file("a.bin"), tokens);

  const std::vector<char> bytes = read_bytes(dir.file("a.bin"));
  ASSERT_EQ(bytes.size(), 1024u + 2 * tokens.size());
  int32_t header[256];
  std::memcpy(header, bytes.data(), sizeof(header));
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], static_cast<int32_t>(tokens.size()));
  for (int i = 3; i < 256; ++i)
    EXPECT_EQ(header[i], 0) << "header[" << i << "]";

  const TokenShard shard(dir.file("a.bin"), 65536);
  ASSERT_EQ(shard.size(), static_cast<int64_t>(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_EQ(shard[static_cast<int64_t>(i)], tokens[i]);
  // No temporary is left beside the shard.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"a.bin"});
}

TEST(TokenShards, AnEmptyShardOpensWithNoTokens) {
  const ScratchDir dir;
  write_token_shard(dir.file("empty.bin"), {});
  EXPECT_EQ(TokenShard(dir.file("empty.bin"), 256).size(), 0);
}

TEST(TokenShards, BadMagicIsReportedWithTheFileName) {
  const ScratchDir dir;
  write_token_shard(dir.file("bad_magic.bin"), {1, 2, 3});
  std::vector<char> bytes = read_bytes(dir.file("bad_magic.bin"));
  const int32_t wrong = 20240519;
  std::memcpy(bytes.data(), &wrong, 4);
  write_bytes(dir.file("bad_magic.bin"), bytes);

  const std::string message = open_error(dir.file("bad_magic.bin"), 256);
  EXPECT_NE(message.find(dir.file("bad_magic.bin")), std::string::npos) << message;
  EXPECT_NE(message.find("header.magic = 20240519"), std::string::npos) << message;
  EXPECT_NE(message.find("20240520"), std::string::npos) << message;
}

TEST(TokenShards, AnUnknownVersionIsReportedWithTheFileName) {
  const ScratchDir dir;
  write_token_shard(dir.file("v2.bin"), {1, 2, 3});
  std::vector<char> bytes = read_bytes(dir.file("v2.bin"));
  const int32_t version = 2;
  std::memcpy(bytes.data() + 4, &version, 4);
  write_bytes(dir.file("v2.bin"), bytes);

  const std::string message = open_error(dir.file("v2.bin"), 256);
  EXPECT_NE(message.find(dir.file("v2.bin")), std::string::npos) << message;
  EXPECT_NE(message.find("header.version = 2"), std::string::npos) << message;
}

TEST(TokenShards, ATruncatedShardIsReportedWithTheFileName) {
  const ScratchDir dir;
  write_token_shard(dir.file("cut.bin"), {1, 2, 3, 4});
  std::vector<char> bytes = read_bytes(dir.file("cut.bin"));
  bytes.resize(bytes.size() - 3);  // half a token and one whole token missing
  write_bytes(dir.file("cut.bin"), bytes);

  const std::string message = open_error(dir.file("cut.bin"), 256);
  EXPECT_NE(message.find(dir.file("cut.bin")), std::string::npos) << message;
  EXPECT_NE(message.find("size = 1029 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("expected 1032 bytes"), std::string::npos) << message;
}

TEST(TokenShards, AFileShorterThanTheHeaderIsReportedWithTheFileName) {
  const ScratchDir dir;
  write_bytes(dir.file("stub.bin"), std::vector<char>(100, 'x'));
  const std::string message = open_error(dir.file("stub.bin"), 256);
  EXPECT_NE(message.find(dir.file("stub.bin")), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(TokenShards, ATokenOutsideTheVocabularyIsReportedWithItsPosition) {
  const ScratchDir dir;
  write_token_shard(dir.file("big.bin"), {10, 20, 256, 30});
  const std::string message = open_error(dir.file("big.bin"), 256);
  EXPECT_NE(message.find(dir.file("big.bin")), std::string::npos) << message;
  EXPECT_NE(message.find("tokens[2] = 256"), std::string::npos) << message;
  EXPECT_EQ(open_error(dir.file("big.bin"), 257), "");
}

TEST(TokenShards, AMissingFileIsReportedWithItsName) {
  const ScratchDir dir;
  const std::string message = open_error(dir.file("nowhere.bin"), 256);
  EXPECT_NE(message.find(dir.file("nowhere.bin")), std::string::npos) << message;
}

TEST(ByteTokenizer, EveryByteIsItsOwnTokenAndDecodesBack) {
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  const std::vector<uint16_t> ids = encode_bytes(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(ids[static_cast<size_t>(b)], b);
  EXPECT_EQ(decode_bytes(ids), all);
  EXPECT_THROW(decode_bytes({65, 300}), InputError);
}

// The documents of a token stream: the pieces after each BOS, decoded.
std::vector<std::string> documents_of(const std::vector<std::string>& shards) {
  std::vector<uint16_t> tokens;
  for (const auto& path : shards) {
    const TokenShard shard(path, kByteVocabSize);
    tokens.insert(tokens.end(), shard.tokens(), shard.tokens() + shard.size());
  }
  std::vector<std::string> documents;
  EXPECT_FALSE(tokens.empty());
  EXPECT_EQ(tokens.front(), kByteBosToken);
  std::vector<uint16_t> current;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] == kByteBosToken && i > 0) {
      documents.push_back(decode_bytes(current));
      current.clear();
    } else if (tokens[i] != kByteBosToken) {
      current.push_back(tokens[i]);
    }
  }
  documents.push_back(decode_bytes(current));
  return documents;
}

TEST(PrepareTextShards, EveryDocumentFollowsABosAndValidationIsTheLastWholeDocuments) {
  const ScratchDir dir;
  std::string first(2500, 'a'), second;
  for (int i = 0; i < 500; ++i)
    second += static_cast<char>('0' + i % 10);
  std::ofstream(dir.file("one.txt")) << first;
  std::ofstream(dir.file("two.txt")) << second;

  TextPreparation options;
  options.val_fraction = 0.1;
  options.shard_tokens = 1000;
  const PreparedShards prepared = prepare_text_shards(
      {dir.file("one.txt"), dir.file("two.txt")}, dir.file("shards"), options, ByteTokenizer());
  // Two documents (one per file) of 2501 and 501 tokens: the second is the held-out tail.
  EXPECT_EQ(prepared.train_tokens, 2501);
  EXPECT_EQ(prepared.val_tokens, 501);
  EXPECT_EQ(prepared.train_documents, 1);
  EXPECT_EQ(prepared.val_documents, 1);
  EXPECT_EQ(prepared.bos_token, kByteBosToken);
  ASSERT_EQ(prepared.train_shards.size(), 3u);  // 1000 + 1000 + 501: the document goes on
  ASSERT_EQ(prepared.val_shards.size(), 1u);
  EXPECT_EQ(prepared.train_shards[0], dir.file("shards/train_000000.bin"));
  EXPECT_EQ(corpus_token_count(prepared.train_shards), 2501);
  EXPECT_EQ(shard_token_count(prepared.val_shards[0]), 501);

  EXPECT_EQ(documents_of(prepared.train_shards), std::vector<std::string>{first});
  EXPECT_EQ(documents_of(prepared.val_shards), std::vector<std::string>{second});

  std::ifstream info_file(prepared.tokenizer_info);
  const nlohmann::json info = nlohmann::json::parse(info_file);
  EXPECT_EQ(info.at("tokenizer"), "bytes");
  EXPECT_EQ(info.at("bos_token"), kByteBosToken);
  EXPECT_EQ(info.at("vocab_size"), 256);
  EXPECT_EQ(info.at("documents"), "file");
  EXPECT_EQ(info.at("held_out"), "tail");
}

TEST(PrepareTextShards, LinesAndParagraphsBecomeDocumentsAndBlankOnesAreDropped) {
  const std::string text = "first line\nsecond line\n\n\nthird\nfourth\n  \nfifth";
  EXPECT_EQ(split_documents(text, DocumentSplit::kFile), std::vector<std::string>{text});
  EXPECT_EQ(
      split_documents(text, DocumentSplit::kLine),
      (std::vector<std::string>{"first line\n", "second line\n", "third\n", "fourth\n", "fifth"}));
  EXPECT_EQ(split_documents(text, DocumentSplit::kParagraph),
            (std::vector<std::string>{"first line\nsecond line\n", "third\nfourth\n", "fifth"}));
  EXPECT_TRUE(split_documents("\n \n", DocumentSplit::kLine).empty());

  const ScratchDir dir;
  std::string verses;
  for (int i = 0; i < 40; ++i)
    verses += "verse " + std::to_string(i) + "\n";
  std::ofstream(dir.file("verses.txt")) << verses;
  TextPreparation options;
  options.documents = DocumentSplit::kLine;
  options.val_fraction = 0.1;
  const PreparedShards prepared =
      prepare_text_shards({dir.file("verses.txt")}, dir.file("shards"), options, ByteTokenizer());
  EXPECT_EQ(prepared.train_documents + prepared.val_documents, 40);
  std::vector<std::string> all = documents_of(prepared.train_shards);
  for (const auto& document : documents_of(prepared.val_shards))
    all.push_back(document);
  EXPECT_EQ(all, split_documents(verses, DocumentSplit::kLine));
  // The fewest last documents holding 10% of the tokens.
  EXPECT_GE(prepared.val_tokens, std::llround(0.1 * (prepared.train_tokens + prepared.val_tokens)));
  EXPECT_LT(prepared.val_tokens - 10,
            std::llround(0.1 * (prepared.train_tokens + prepared.val_tokens)));
}

TEST(PrepareTextShards, ASampledHeldOutSplitSpansTheTextAndIsTheSameOnEveryRun) {
  // A text in order, as a book is: 1,000 numbered lines.
  const ScratchDir dir;
  std::string lines;
  for (int i = 0; i < 1000; ++i)
    lines += "line " + std::to_string(i) + "\n";
  std::ofstream(dir.file("book.txt")) << lines;
  TextPreparation options;
  options.documents = DocumentSplit::kLine;
  options.val_fraction = 0.1;
  options.held_out = HeldOut::kSample;
  const PreparedShards prepared =
      prepare_text_shards({dir.file("book.txt")}, dir.file("a"), options, ByteTokenizer());
  const std::vector<std::string> train = documents_of(prepared.train_shards);
  const std::vector<std::string> val = documents_of(prepared.val_shards);

  // The two splits hold every document once, each in the text's order.
  const std::vector<std::string> all = split_documents(lines, DocumentSplit::kLine);
  std::vector<std::string> merged = train;
  merged.insert(merged.end(), val.begin(), val.end());
  std::vector<std::string> sorted_all = all;
  std::sort(merged.begin(), merged.end());
  std::sort(sorted_all.begin(), sorted_all.end());
  EXPECT_EQ(merged, sorted_all);
  const auto index_of = [&](const std::string& d) {
    return std::find(all.begin(), all.end(), d) - all.begin();
  };
  for (size_t i = 1; i < val.size(); ++i)
    EXPECT_LT(index_of(val[i - 1]), index_of(val[i]));
  EXPECT_EQ(prepared.val_documents, static_cast<int64_t>(val.size()));

  // The fewest drawn documents reaching 10% of the tokens, one line being at most 9 tokens.
  const int64_t wanted = std::llround(0.1 * (prepared.train_tokens + prepared.val_tokens));
  EXPECT_GE(prepared.val_tokens, wanted);
  EXPECT_LT(prepared.val_tokens - 10, wanted);
  // Drawn across the text: every tenth of it holds some held-out lines, and none holds most.
  std::vector<int> per_tenth(10, 0);
  for (const auto& d : val)
    ++per_tenth[static_cast<size_t>(index_of(d) / 100)];
  for (int count : per_tenth) {
    EXPECT_GE(count, 2);
    EXPECT_LE(count, 30);
  }

  // The same text gives the same split, on any run.
  const PreparedShards again =
      prepare_text_shards({dir.file("book.txt")}, dir.file("b"), options, ByteTokenizer());
  EXPECT_EQ(documents_of(again.val_shards), val);
  std::ifstream info_file(prepared.tokenizer_info);
  EXPECT_EQ(nlohmann::json::parse(info_file).at("held_out"), "sample");

  EXPECT_EQ(held_out_from_string("sample", "f", "x"), HeldOut::kSample);
  EXPECT_EQ(held_out_from_string("tail", "f", "x"), HeldOut::kTail);
  try {
    held_out_from_string("random", "sweep.json", "data.prepare.held_out");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("data.prepare.held_out"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("\"random\""), std::string::npos);
  }
}

TEST(PrepareTextShards, RejectsAMissingFileABadFractionAndTextHoldingTheBos) {
  const ScratchDir dir;
  std::ofstream(dir.file("t.txt")) << "some text to split\nin two lines\n";
  TextPreparation options;
  options.documents = DocumentSplit::kLine;
  options.shard_tokens = 1000;
  const ByteTokenizer bytes;
  try {
    prepare_text_shards({dir.file("missing.txt")}, dir.file("out"), options, bytes);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("missing.txt")), std::string::npos);
  }
  for (const double fraction : {0.0, 1.0}) {
    TextPreparation bad = options;
    bad.val_fraction = fraction;
    EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), bad, bytes), InputError);
  }
  TextPreparation no_shard = options;
  no_shard.shard_tokens = 0;
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), no_shard, bytes),
               InputError);
  // One document cannot be split into two non-empty splits of whole documents.
  TextPreparation one_document = options;
  one_document.documents = DocumentSplit::kFile;
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), one_document, bytes),
               InputError);

  std::ofstream(dir.file("stx.txt")) << "clean line\nbad \x02 line\n";
  try {
    prepare_text_shards({dir.file("stx.txt")}, dir.file("out"), options, bytes);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(dir.file("stx.txt")), std::string::npos) << message;
    EXPECT_NE(message.find("document 1, token 4"), std::string::npos) << message;
  }
}

TEST(PrepareTextShards, RemovesShardsAKilledEarlierRunLeftHalfWritten) {
  const ScratchDir dir;
  std::ofstream lines(dir.file("one.txt"));
  for (int i = 0; i < 30; ++i)
    lines << std::string(100, 'a') << "\n";
  lines.close();
  std::filesystem::create_directories(dir.file("shards"));
  std::ofstream(dir.file("shards/train_000000.bin.tmp.Zz9yX1")) << "half a shard";
  TextPreparation options;
  options.documents = DocumentSplit::kLine;
  options.val_fraction = 0.1;
  options.shard_tokens = 1000;
  prepare_text_shards({dir.file("one.txt")}, dir.file("shards"), options, ByteTokenizer());
  EXPECT_FALSE(std::filesystem::exists(dir.file("shards/train_000000.bin.tmp.Zz9yX1")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("shards/train_000000.bin")));
}

}  // namespace
}  // namespace parcae::sweeps
