// Tests of the llm.c shard format, the byte tokenizer and text-to-shard preparation: shards
// round-trip, every corruption the reader checks for is reported with the file's name, and
// prepared splits hold exactly the text's bytes.
#include "sweeps/token_shards.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

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

TEST(PrepareTextShards, SplitsTheTextIntoTrainAndATailOfValidation) {
  const ScratchDir dir;
  std::string first(2500, 'a'), second;
  for (int i = 0; i < 500; ++i)
    second += static_cast<char>('0' + i % 10);
  std::ofstream(dir.file("one.txt")) << first;
  std::ofstream(dir.file("two.txt")) << second;

  const PreparedShards prepared = prepare_text_shards({dir.file("one.txt"), dir.file("two.txt")},
                                                      dir.file("shards"),
                                                      /*val_fraction=*/0.1,
                                                      /*shard_tokens=*/1000);
  EXPECT_EQ(prepared.train_tokens, 2700);
  EXPECT_EQ(prepared.val_tokens, 300);
  ASSERT_EQ(prepared.train_shards.size(), 3u);  // 1000 + 1000 + 700
  ASSERT_EQ(prepared.val_shards.size(), 1u);
  EXPECT_EQ(prepared.train_shards[0], dir.file("shards/train_000000.bin"));

  std::string train, val;
  for (const auto& path : prepared.train_shards) {
    const TokenShard shard(path, kByteVocabSize);
    train += decode_bytes(std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size()));
  }
  const TokenShard val_shard(prepared.val_shards[0], kByteVocabSize);
  val = decode_bytes(
      std::vector<uint16_t>(val_shard.tokens(), val_shard.tokens() + val_shard.size()));
  EXPECT_EQ(train + val, first + second);
  EXPECT_EQ(val, second.substr(200));
}

TEST(PrepareTextShards, RejectsAMissingFileAndABadFraction) {
  const ScratchDir dir;
  std::ofstream(dir.file("t.txt")) << "some text to split";
  try {
    prepare_text_shards({dir.file("missing.txt")}, dir.file("out"), 0.1, 1000);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("missing.txt")), std::string::npos);
  }
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), 0.0, 1000), InputError);
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), 1.0, 1000), InputError);
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), 0.1, 0), InputError);
  // 18 bytes: 0.01 of it rounds to no validation token at all.
  EXPECT_THROW(prepare_text_shards({dir.file("t.txt")}, dir.file("out"), 0.01, 1000), InputError);
}

TEST(PrepareTextShards, RemovesShardsAKilledEarlierRunLeftHalfWritten) {
  const ScratchDir dir;
  std::ofstream(dir.file("one.txt")) << std::string(3000, 'a');
  std::filesystem::create_directories(dir.file("shards"));
  std::ofstream(dir.file("shards/train_000000.bin.tmp.Zz9yX1")) << "half a shard";
  prepare_text_shards({dir.file("one.txt")}, dir.file("shards"), 0.1, 1000);
  EXPECT_FALSE(std::filesystem::exists(dir.file("shards/train_000000.bin.tmp.Zz9yX1")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("shards/train_000000.bin")));
}

}  // namespace
}  // namespace parcae::sweeps
