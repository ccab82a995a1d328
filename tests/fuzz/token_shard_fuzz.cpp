// libFuzzer target: opening a token shard (header checks, size against count, every token id
// against the vocabulary) on arbitrary bytes, and reading every token of one that opens.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sweeps/error.h"
#include "sweeps/token_shards.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace parcae::sweeps;
  const std::string path = parcae::fuzz::write_input("shard.bin", data, size);
  try {
    const TokenShard shard(path, kByteVocabSize);
    // An opened shard promises ids below the vocabulary and a size that fits the file.
    if (kShardHeaderBytes + 2 * shard.size() != static_cast<int64_t>(size))
      std::abort();
    for (int64_t i = 0; i < shard.size(); ++i) {
      if (shard[i] >= kByteVocabSize)
        std::abort();
    }
  } catch (const parcae::Error&) {
  }
  return 0;
}
