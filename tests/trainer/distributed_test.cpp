// The pieces of data-parallel training that need no trainer run: rank variables from the
// environment, the order of exit codes the launcher reports, and the gradient reducer, whose
// bucketed all-reduce over a real two-rank Gloo group (two threads of this process) must give
// every rank the sum of both ranks' gradients, with unused parameters and tiny buckets too
// (and, in CUDA builds with NCCL, one NCCL rank on the GPU).
#include "trainer/distributed.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "sweeps/error.h"
#include "trainer/launcher.h"
#include "trainer/trainer.h"

namespace parcae::trainer {
namespace {

// Sets environment variables for one test and restores what was there before.
class ScopedEnvironment {
 public:
  ScopedEnvironment(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const char* name : {"RANK",
                             "WORLD_SIZE",
                             "LOCAL_RANK",
                             "MASTER_ADDR",
                             "MASTER_PORT",
                             "SLURM_PROCID",
                             "SLURM_NTASKS",
                             "SLURM_LOCALID"}) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old == nullptr ? std::nullopt : std::optional<std::string>(old));
      ::unsetenv(name);
    }
    for (const auto& [name, value] : values)
      ::setenv(name, value, 1);
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(RankEnvironment, NoRankVariablesMeansASingleProcessRun) {
  const ScopedEnvironment env({});
  EXPECT_FALSE(ranks_from_environment().has_value());
}

TEST(RankEnvironment, TorchrunVariablesAreReadWithTheirDefaults) {
  const ScopedEnvironment env(
      {{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29400"}});
  const auto ranks = ranks_from_environment();
  ASSERT_TRUE(ranks.has_value());
  EXPECT_EQ(ranks->rank, 3);
  EXPECT_EQ(ranks->world_size, 4);
  EXPECT_EQ(ranks->local_rank, 3);  // LOCAL_RANK defaults to RANK
  EXPECT_EQ(ranks->master_addr, "node7");
  EXPECT_EQ(ranks->master_port, 29400);
  EXPECT_EQ(ranks->source, "RANK");
}

TEST(RankEnvironment, SlurmVariablesStandInForTorchrunOnesUnderSrun) {
  const ScopedEnvironment env({{"SLURM_PROCID", "5"},
                               {"SLURM_NTASKS", "8"},
                               {"SLURM_LOCALID", "1"},
                               {"MASTER_PORT", "29500"}});
  const auto ranks = ranks_from_environment();
  ASSERT_TRUE(ranks.has_value());
  EXPECT_EQ(ranks->rank, 5);
  EXPECT_EQ(ranks->world_size, 8);
  EXPECT_EQ(ranks->local_rank, 1);
  EXPECT_EQ(ranks->master_addr, "127.0.0.1");
  EXPECT_EQ(ranks->source, "SLURM_PROCID");
}

TEST(RankEnvironment, ABatchScriptOfOneTaskIsNotADataParallelRank) {
  const ScopedEnvironment env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  EXPECT_FALSE(ranks_from_environment().has_value());
}

TEST(RankEnvironment, MalformedOrInconsistentVariablesAreBadInputNamingTheVariable) {
  auto message = [] {
    try {
      ranks_from_environment();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  {
    const ScopedEnvironment env({{"RANK", "one"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}});
    EXPECT_NE(message().find("RANK = 'one'"), std::string::npos) << message();
  }
  {
    const ScopedEnvironment env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}});
    EXPECT_NE(message().find("below the world size 2"), std::string::npos) << message();
  }
  {
    const ScopedEnvironment env({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
    EXPECT_NE(message().find("MASTER_PORT"), std::string::npos) << message();
  }
  {
    const ScopedEnvironment env({{"RANK", "0"}});
    EXPECT_NE(message().find("WORLD_SIZE"), std::string::npos) << message();
  }
}

TEST(Launcher, TheJobExitCodeIsTheWorstOfItsRanks) {
  EXPECT_EQ(worse_exit_code(kExitDone, kExitPreempted), kExitPreempted);
  EXPECT_EQ(worse_exit_code(kExitPreempted, kExitDone), kExitPreempted);
  EXPECT_EQ(worse_exit_code(kExitPreempted, kExitBadInput), kExitBadInput);
  EXPECT_EQ(worse_exit_code(kExitBadInput, kExitError), kExitError);
  EXPECT_EQ(worse_exit_code(kExitError, 128 + 9), kExitError);  // the first failure stays
  EXPECT_EQ(worse_exit_code(128 + 9, kExitBadInput), 128 + 9);
  EXPECT_EQ(worse_exit_code(kExitDone, kExitDone), kExitDone);
}

TEST(Launcher, AFreePortCanBeBoundAgain) {
  const int port = free_local_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

// A small network with a parameter that only rank 1 uses in its last micro-batch.
struct TinyNet {
  torch::Tensor w1, b1, w2, unused_by_rank0;
  std::vector<torch::Tensor> parameters() const { return {w1, b1, w2, unused_by_rank0}; }

  // Sum of squares of a two-layer tanh net's output, plus the extra parameter on request.
  torch::Tensor loss(const torch::Tensor& x, bool use_extra) const {
    torch::Tensor y = torch::tanh(x.matmul(w1) + b1).matmul(w2);
    torch::Tensor loss = y.square().sum();
    if (use_extra)
      loss = loss + (unused_by_rank0 * x.sum()).sum();
    return loss;
  }
};

TinyNet make_net() {
  torch::manual_seed(11);
  auto grad = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  return {torch::randn({5, 7}, grad),
          torch::randn({7}, grad),
          torch::randn({7, 3}, grad),
          torch::randn({2}, grad)};
}

// Drawn once, on first use, from the global generator; the rank threads then only read them,
// since two threads reseeding one generator would race and draw each other's batches.
torch::Tensor batch(int rank, int micro) {
  static const std::vector<torch::Tensor> batches = [] {
    std::vector<torch::Tensor> drawn;
    for (int r = 0; r < 2; ++r)
      for (int m = 0; m < 2; ++m) {
        torch::manual_seed(100 + 10 * r + m);
        drawn.push_back(torch::randn({4, 5}, torch::kDouble));
      }
    return drawn;
  }();
  return batches.at(static_cast<size_t>(2 * rank + micro));
}

#if PARCAE_WITH_GLOO
TinyNet copy_of(const TinyNet& net) {
  TinyNet copy;
  copy.w1 = net.w1.detach().clone().requires_grad_(true);
  copy.b1 = net.b1.detach().clone().requires_grad_(true);
  copy.w2 = net.w2.detach().clone().requires_grad_(true);
  copy.unused_by_rank0 = net.unused_by_rank0.detach().clone().requires_grad_(true);
  return copy;
}

// Two micro-batches per rank: the first accumulates unarmed, the second runs armed.
void backward_on_rank(const TinyNet& net, int rank, GradientReducer* reducer) {
  net.loss(batch(rank, 0), false).backward();
  if (reducer != nullptr)
    reducer->arm();
  net.loss(batch(rank, 1), rank == 1).backward();
  if (reducer != nullptr)
    reducer->finish();
}

class ReducerBuckets : public ::testing::TestWithParam<int64_t> {};

TEST_P(ReducerBuckets, EveryRankEndsWithTheSumOfBothRanksGradients) {
  const TinyNet reference = make_net();
  const TinyNet rank_nets[2] = {copy_of(reference), copy_of(reference)};
  // The sum that one process with both ranks' micro-batches would accumulate.
  for (int rank = 0; rank < 2; ++rank)
    backward_on_rank(reference, rank, nullptr);

  const int port = free_local_port();
  int buckets[2] = {0, 0};
  int overlapped[2] = {0, 0};
  std::string errors[2];
  auto run_rank = [&](int rank) {
    try {
      RankOptions ranks;
      ranks.rank = rank;
      ranks.world_size = 2;
      ranks.master_port = port;
      Communicator communicator(ranks, torch::Device(torch::kCPU));
      EXPECT_EQ(communicator.backend(), "gloo");
      GradientReducer reducer(
          rank_nets[rank].parameters(), communicator, /*bucket_bytes=*/GetParam());
      buckets[rank] = reducer.buckets();
      backward_on_rank(rank_nets[rank], rank, &reducer);
      overlapped[rank] = reducer.buckets_launched_during_backward();
      communicator.barrier();
    } catch (const std::exception& e) {
      errors[rank] = e.what();
    }
  };
  std::thread other(run_rank, 1);
  run_rank(0);
  other.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_EQ(buckets[0], buckets[1]);
  if (GetParam() < 64) {
    EXPECT_EQ(buckets[0], 4);  // every parameter alone, the last one first
    // Rank 1's hooks launched every bucket while backward ran. On rank 0 the first bucket is
    // the parameter it never uses, which holds back the others until finish().
    EXPECT_EQ(overlapped[1], 4);
    EXPECT_EQ(overlapped[0], 0);
  } else {
    EXPECT_EQ(buckets[0], 1);
    EXPECT_EQ(overlapped[1], 1);
  }
  const auto expected = reference.parameters();
  for (int rank = 0; rank < 2; ++rank) {
    const auto got = rank_nets[rank].parameters();
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i].grad().defined()) << "rank " << rank << " parameter " << i;
      // Double precision; only the order of the additions differs.
      EXPECT_TRUE(torch::allclose(got[i].grad(), expected[i].grad(), 1e-12, 1e-12))
          << "rank " << rank << " parameter " << i << "\n"
          << got[i].grad() << "\n"
          << expected[i].grad();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BucketBytes, ReducerBuckets, ::testing::Values(8, kBucketBytes));
#endif  // PARCAE_WITH_GLOO

#if PARCAE_WITH_NCCL
// One NCCL rank on the GPU: the hooks run on autograd's device thread and the sums come back on
// NCCL's stream, so .grad must equal plain accumulation once finish() returns.
TEST(GradientReducerGpu, OneNcclRankEndsWithTheAccumulatedGradientsOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  const torch::Device gpu(torch::kCUDA, 0);
  const TinyNet cpu_net = make_net();
  auto on_gpu = [&](const torch::Tensor& t) {
    return t.detach().to(gpu).to(torch::kFloat).requires_grad_(true);
  };
  const TinyNet reference = {
      on_gpu(cpu_net.w1), on_gpu(cpu_net.b1), on_gpu(cpu_net.w2), on_gpu(cpu_net.unused_by_rank0)};
  const TinyNet reduced = {
      on_gpu(cpu_net.w1), on_gpu(cpu_net.b1), on_gpu(cpu_net.w2), on_gpu(cpu_net.unused_by_rank0)};
  auto backward = [&](const TinyNet& net, GradientReducer* reducer) {
    for (int micro = 0; micro < 2; ++micro) {
      if (reducer != nullptr && micro == 1)
        reducer->arm();
      net.loss(batch(1, micro).to(gpu).to(torch::kFloat), micro == 1).backward();
    }
    if (reducer != nullptr)
      reducer->finish();
  };
  backward(reference, nullptr);
  RankOptions ranks;
  ranks.master_port = free_local_port();
  Communicator communicator(ranks, gpu);
  EXPECT_EQ(communicator.backend(), "nccl");
  GradientReducer reducer(reduced.parameters(), communicator, /*bucket_bytes=*/8);
  backward(reduced, &reducer);
  EXPECT_EQ(reducer.buckets_launched_during_backward(), 4);
  const auto expected = reference.parameters();
  const auto got = reduced.parameters();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(torch::allclose(got[i].grad().cpu(), expected[i].grad().cpu(), 1e-6, 1e-6))
        << "parameter " << i;
  }
}
#endif

}  // namespace
}  // namespace parcae::trainer
