// The size of a sweep's training corpus, for the epochs column of a plan (planner.h). It reads
// only shard headers, so a plan over terabytes of shards stays quick, and it is kept apart from
// the planner, which does no I/O.
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "sweeps/error.h"
#include "sweeps/planner.h"
#include "sweeps/token_shards.h"

namespace parcae::sweeps {
namespace {

namespace fs = std::filesystem;

// The token count of one llm.c shard, from its header alone.
int64_t shard_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<int32_t, 3> head{};
  if (!in || !in.read(reinterpret_cast<char*>(head.data()), sizeof(head)))
    throw InputError(path, "header", "(unreadable)", "expected an llm.c token shard header");
  if (head[0] != kShardMagic) {
    throw InputError(path,
                     "header.magic",
                     std::to_string(head[0]),
                     fmt::format("expected {} (an llm.c token shard)", kShardMagic));
  }
  if (head[2] < 0)
    throw InputError(path, "header.tokens", std::to_string(head[2]), "expected >= 0");
  return head[2];
}

}  // namespace

CorpusSize measure_corpus(const SweepSpec& spec) {
  CorpusSize corpus;
  const DataSpec& data = spec.data;
  if (!data.train_shards.empty()) {
    try {
      for (const auto& shard : data.train_shards)
        corpus.train_tokens += shard_tokens(shard);
    } catch (const InputError& e) {
      // Planning needs no shard contents, and the trainer refuses a bad shard with this same
      // message when it opens it; the plan reports it in place of the corpus size.
      corpus.train_tokens = 0;
      corpus.note = e.what();
      return corpus;
    }
    corpus.note = fmt::format("counted in {} shard{}",
                              data.train_shards.size(),
                              data.train_shards.size() == 1 ? "" : "s");
    return corpus;
  }
  const DataPreparation& prepare = data.prepare;
  if (prepare.empty()) {
    corpus.note = "the training shards were not read";
    return corpus;
  }
  if (!prepare.command.empty()) {
    corpus.note = fmt::format(
        "the shards do not exist yet; data.prepare makes them from `{}` on the first plan that "
        "is not a dry run",
        prepare.command.front());
    return corpus;
  }
  double bytes = 0.0;
  for (const auto& file : prepare.text_files) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(data.folder) / file, ec);
    if (ec) {
      corpus.note = fmt::format("the shards do not exist yet and {} cannot be read", file);
      return corpus;
    }
    bytes += static_cast<double>(size);
  }
  corpus.train_tokens = static_cast<int64_t>(bytes * (1.0 - prepare.val_fraction));
  corpus.estimated = corpus.train_tokens > 0;
  corpus.note = "estimated before the shards exist, from data.prepare's text at one token per byte";
  return corpus;
}

}  // namespace parcae::sweeps
