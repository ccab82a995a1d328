// Tests of the trainer's rows (trainer/data.h) on small multi-document corpora: packed rows start
// at a BOS and cut no document except the one BestFit-Crop crops, each epoch draws every
// document once, rows replay from a cursor and read the same in any order (resume, ranks),
// validation is fixed, GPT-2 shards split at their end-of-text id, and shards without the BOS are
// refused. Also the power iteration behind the RDM's log rho.
#include "trainer/data.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "sweeps/token_shards.h"
#include "tests/support/scratch_dir.h"
#include "trainer/injection_diagnostics.h"
#include "trainer/model.h"
#include "trainer/sampling.h"

namespace parcae::trainer {
namespace {

using test_support::ScratchDir;

constexpr int kVocab = 8192;
constexpr uint16_t kBos = 1;

// Document k is [BOS, 2 + k, then its own running tokens]: the second token names it, so a row
// can be read back into (document, offset) pieces without the packer's help.
struct Corpus {
  std::vector<std::vector<uint16_t>> documents;
  sweeps::DataConfig data;
};

uint16_t payload(int64_t document, int64_t position) {
  return static_cast<uint16_t>(4096 + (document * 31 + position) % 4000);
}

// `count` documents of 2 .. max_length tokens, written as `shards` shards (documents continue
// across shard boundaries, as llm.c's tools write them), and a validation split of 40 more.
Corpus write_corpus(const ScratchDir& dir, int count, int max_length, int shards, uint64_t seed) {
  Corpus corpus;
  SplitMix64 rng(seed);
  std::vector<uint16_t> stream;
  for (int k = 0; k < count + 40; ++k) {
    const auto length =
        static_cast<int64_t>(2 + rng.next() % static_cast<uint64_t>(max_length - 1));
    std::vector<uint16_t> document = {kBos, static_cast<uint16_t>(2 + k)};
    for (int64_t t = 2; t < length; ++t)
      document.push_back(payload(k, t));
    corpus.documents.push_back(document);
    if (k < count)
      stream.insert(stream.end(), document.begin(), document.end());
  }
  const size_t per_shard = stream.size() / static_cast<size_t>(shards) + 1;
  for (int s = 0; s < shards; ++s) {
    const size_t begin = std::min(stream.size(), static_cast<size_t>(s) * per_shard);
    const size_t end = std::min(stream.size(), begin + per_shard);
    const std::string path = dir.file("train_" + std::to_string(s) + ".bin");
    sweeps::write_token_shard(path,
                              std::vector<uint16_t>(stream.begin() + begin, stream.begin() + end));
    corpus.data.train_shards.push_back(path);
  }
  std::vector<uint16_t> val;
  for (int k = count; k < count + 40; ++k)
    val.insert(val.end(), corpus.documents[k].begin(), corpus.documents[k].end());
  sweeps::write_token_shard(dir.file("val.bin"), val);
  corpus.data.val_shards = {dir.file("val.bin")};
  corpus.data.bos_token = kBos;
  return corpus;
}

struct Segment {
  int64_t document = 0;
  int64_t length = 0;
};

// Cuts a row at its BOS tokens and checks each segment against the document it names: the
// tokens are that document's first ones. Returns the segments; a segment of the BOS alone (a
// document cropped to one token at the row's end) names no document (-1).
std::vector<Segment> read_row(const torch::Tensor& row, const Corpus& corpus) {
  std::vector<Segment> segments;
  const int64_t n = row.size(0);
  for (int64_t t = 0; t < n; ++t) {
    const auto token = row[t].item<int64_t>();
    if (token == kBos)
      segments.push_back({-1, 0});
    EXPECT_FALSE(segments.empty()) << "a row starts at token " << token << ", not at a BOS";
    if (segments.empty())
      return segments;
    Segment& segment = segments.back();
    if (segment.length == 1)
      segment.document = token - 2;
    if (segment.document >= 0) {
      const auto& document = corpus.documents[static_cast<size_t>(segment.document)];
      EXPECT_LT(segment.length, static_cast<int64_t>(document.size()));
      EXPECT_EQ(token, document[static_cast<size_t>(segment.length)])
          << "document " << segment.document << " position " << segment.length;
    }
    ++segment.length;
  }
  return segments;
}

TEST(PackedDocuments, EveryRowStartsAtABosAndOnlyTheCroppedDocumentIsCut) {
  const ScratchDir dir;
  // 1,500 documents of 2..150 tokens in rows of 64: many fit whole, many must be cropped.
  const Corpus corpus = write_corpus(dir, 1500, 150, 3, /*seed=*/5);
  TrainRows rows(corpus.data, kVocab, /*seq=*/63, /*seed=*/11, "job.json");
  ASSERT_TRUE(rows.packs_documents());
  EXPECT_EQ(rows.documents(), 1500);
  const torch::Tensor batch = rows.next(800);
  std::map<int64_t, int> uses;
  int64_t cropped = 0, whole = 0;
  for (int64_t r = 0; r < batch.size(0); ++r) {
    ASSERT_EQ(batch[r][0].item<int64_t>(), kBos) << "row " << r;
    const std::vector<Segment> segments = read_row(batch[r], corpus);
    ASSERT_FALSE(segments.empty());
    for (size_t i = 0; i < segments.size(); ++i) {
      if (segments[i].document < 0) {
        EXPECT_EQ(i + 1, segments.size()) << "row " << r << ": a lone BOS mid-row";
        ++cropped;
        continue;
      }
      const auto full =
          static_cast<int64_t>(corpus.documents[static_cast<size_t>(segments[i].document)].size());
      if (i + 1 < segments.size()) {
        EXPECT_EQ(segments[i].length, full)
            << "row " << r << ": document " << segments[i].document << " is cut mid-row";
      }
      cropped += segments[i].length < full ? 1 : 0;
      whole += segments[i].length == full ? 1 : 0;
      ++uses[segments[i].document];
    }
  }
  std::cerr << "800 rows: " << whole << " whole documents, " << cropped << " cropped\n";
  EXPECT_GT(cropped, 100);
  EXPECT_GT(whole, 400);
  // No replacement within an epoch: no document is used more often than the epochs begun.
  const double epochs = rows.epochs_drawn();
  EXPECT_GT(epochs, 1.0);
  for (const auto& [document, count] : uses)
    EXPECT_LE(count, static_cast<int>(std::ceil(epochs))) << "document " << document;
  EXPECT_EQ(rows.summary().at("packing"), "documents");
  EXPECT_EQ(rows.summary().at("documents"), 1500);
}

TEST(PackedDocuments, RowsReplayFromACursorAndReadTheSameInAnyOrder) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir, 400, 90, 2, /*seed=*/6);
  TrainRows run(corpus.data, kVocab, 31, /*seed=*/3, "job.json");
  const torch::Tensor uninterrupted = run.next(600);  // several epochs
  EXPECT_GT(run.epochs_drawn(), 2.0);

  // A resumed run: a fresh reader set to the checkpoint's cursor.
  TrainRows resumed(corpus.data, kVocab, 31, /*seed=*/3, "job.json");
  resumed.set_cursor(450);
  EXPECT_TRUE(torch::equal(resumed.next(150), uninterrupted.narrow(0, 450, 150)));

  // Ranks read their rows of a step by run-wide index, in any order, each from its own reader.
  TrainRows rank(corpus.data, kVocab, 31, /*seed=*/3, "job.json");
  const torch::Tensor picked = rank.at({70, 64, 127});
  EXPECT_TRUE(torch::equal(picked[0], uninterrupted[70]));
  EXPECT_TRUE(torch::equal(picked[1], uninterrupted[64]));
  EXPECT_TRUE(torch::equal(picked[2], uninterrupted[127]));
  // An index below those already read packs again from the start and gives the same row.
  EXPECT_TRUE(torch::equal(rank.at({5})[0], uninterrupted[5]));

  TrainRows other_seed(corpus.data, kVocab, 31, /*seed=*/4, "job.json");
  EXPECT_FALSE(torch::equal(other_seed.next(600), uninterrupted));
}

TEST(PackedDocuments, ValidationPacksTheHeldOutDocumentsTheSameWayForEveryRun) {
  const ScratchDir dir;
  const Corpus corpus = write_corpus(dir, 50, 40, 1, /*seed=*/7);
  const torch::Tensor first = validation_rows(corpus.data, kVocab, 31, 10, "job.json");
  const torch::Tensor again = validation_rows(corpus.data, kVocab, 31, 10, "job.json");
  EXPECT_TRUE(torch::equal(first, again));
  std::map<int64_t, int> uses;
  for (int64_t r = 0; r < first.size(0); ++r) {
    const std::vector<Segment> segments = read_row(first[r], corpus);
    for (const auto& segment : segments) {
      if (segment.document < 0)
        continue;
      EXPECT_GE(segment.document, 50);  // held-out documents only
      ++uses[segment.document];
    }
  }
  for (const auto& [document, count] : uses)
    EXPECT_EQ(count, 1) << "validation document " << document << " read twice";
  try {
    validation_rows(corpus.data, kVocab, 31, 1000, "job.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("eval.val_sequences = 1000"), std::string::npos) << message;
    // Refused by the count of the held-out tokens, before any memory is asked for them.
    EXPECT_NE(message.find(" rows of context_length + 1 = 32 tokens"), std::string::npos)
        << message;
  }
}

TEST(PackedDocuments, Gpt2ShardsAreSplitAtTheirEndOfTextId) {
  // llm.c's and nanochat's GPT-2 shards put <|endoftext|> (50256) before every document.
  const ScratchDir dir;
  constexpr uint16_t kEndOfText = 50256;
  std::vector<uint16_t> tokens;
  for (int d = 0; d < 30; ++d) {
    tokens.push_back(kEndOfText);
    for (int t = 0; t < 5 + d % 7; ++t)
      tokens.push_back(static_cast<uint16_t>(100 + d));
  }
  sweeps::write_token_shard(dir.file("gpt2.bin"), tokens);
  sweeps::DataConfig data;
  data.train_shards = {dir.file("gpt2.bin")};
  data.val_shards = {dir.file("gpt2.bin")};
  data.bos_token = kEndOfText;
  TrainRows rows(data, 50304, 15, 1, "job.json");
  EXPECT_EQ(rows.documents(), 30);
  const torch::Tensor batch = rows.next(20);
  for (int64_t r = 0; r < 20; ++r) {
    EXPECT_EQ(batch[r][0].item<int64_t>(), kEndOfText);
    // Whatever follows a document's end-of-text is that document's own token, or its crop.
    for (int64_t t = 1; t < 16; ++t) {
      const auto token = batch[r][t].item<int64_t>();
      const auto previous = batch[r][t - 1].item<int64_t>();
      if (previous != kEndOfText && token != kEndOfText) {
        EXPECT_EQ(token, previous) << "row " << r << " position " << t;
      }
    }
  }
}

TEST(PackedDocuments, ShardsWithoutTheBosAreRefusedNamingTheField) {
  const ScratchDir dir;
  sweeps::write_token_shard(dir.file("plain.bin"), std::vector<uint16_t>(500, 7));
  sweeps::DataConfig data;
  data.train_shards = {dir.file("plain.bin")};
  data.val_shards = {dir.file("plain.bin")};
  data.bos_token = 2;
  try {
    TrainRows rows(data, 256, 15, 1, "job.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("job.json"), std::string::npos) << message;
    EXPECT_NE(message.find("data.bos_token = 2"), std::string::npos) << message;
    EXPECT_NE(message.find("data.train_shards"), std::string::npos) << message;
  }
  EXPECT_THROW(validation_rows(data, 256, 15, 4, "job.json"), InputError);
  // Without a bos_token the same shard gives random windows.
  data.bos_token = sweeps::kNoBosToken;
  TrainRows windows(data, 256, 15, 1, "job.json");
  EXPECT_FALSE(windows.packs_documents());
  EXPECT_EQ(windows.next(3).size(0), 3);
}

TEST(EvaluationInputs, EachValidationRowHasItsOwnH0WhateverTheMicroBatch) {
  // Runs that cut validation into micro-batches of 4 or of 8 (or split it over ranks) see the
  // same h0 on every row.
  const LanguageModel model(sweeps::preset("parcae-micro"), ModelOptions{});
  const torch::Device cpu(torch::kCPU);
  const torch::Tensor whole = evaluation_initial_state(*model, 1234, 0, 8, 16, cpu);
  const torch::Tensor halves = torch::cat({evaluation_initial_state(*model, 1234, 0, 4, 16, cpu),
                                           evaluation_initial_state(*model, 1234, 4, 4, 16, cpu)});
  ASSERT_EQ(whole.sizes(), halves.sizes());
  EXPECT_TRUE(torch::equal(whole, halves));
  EXPECT_TRUE(torch::equal(evaluation_initial_state(*model, 1234, 5, 1, 16, cpu)[0], whole[5]));
  EXPECT_FALSE(torch::equal(whole[0], whole[1]));
  EXPECT_FALSE(torch::equal(evaluation_initial_state(*model, 99, 0, 8, 16, cpu), whole));
}

TEST(InjectionDiagnostics, PowerIterationFindsTheSpectralRadius) {
  // A rotation by 1 radian scaled by 0.9 (a complex pair, |lambda| = 0.9) beside a real 0.5.
  torch::Tensor m = torch::zeros({3, 3}, torch::kDouble);
  m[0][0] = 0.9 * std::cos(1.0);
  m[0][1] = -0.9 * std::sin(1.0);
  m[1][0] = 0.9 * std::sin(1.0);
  m[1][1] = 0.9 * std::cos(1.0);
  m[2][2] = 0.5;
  // A change of basis keeps the spectrum and hides it from the entries.
  torch::Tensor basis =
      torch::tensor({1.0, 2.0, 0.5, -1.0, 1.0, 3.0, 0.0, 1.0, 1.0}, torch::kDouble).reshape({3, 3});
  const torch::Tensor similar = basis.matmul(m).matmul(torch::inverse(basis));
  // The oscillation of |M^k x| around 0.9^k is bounded by the basis' condition number (< 20
  // here), so the mean growth over 192 iterations is within log(20)/192 = 0.016 of log 0.9.
  EXPECT_NEAR(log_spectral_radius(similar, 1), std::log(0.9), 0.016);
  // A dominant real eigenvalue: geometric convergence.
  torch::Tensor real = torch::diag(torch::tensor({1.3, -0.7, 0.2}, torch::kDouble));
  EXPECT_NEAR(log_spectral_radius(basis.matmul(real).matmul(torch::inverse(basis)), 2),
              std::log(1.3),
              1e-6);
  EXPECT_EQ(log_spectral_radius(torch::zeros({4, 4}), 3), -INFINITY);
}

}  // namespace
}  // namespace parcae::trainer
