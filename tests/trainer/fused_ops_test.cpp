// The fused operations against their ATen compositions (trainer/fused_ops.h). On the CPU the
// fused path runs its explicit forward and backward formulas, checked here in double precision
// against autograd of the composition; a whole model on the fused path matches the composition
// to rounding. CUDA builds add the kernels against the composition on the GPU, in bf16, forward
// and gradient, on fresh random inputs of the models' shapes.
#include "trainer/fused_ops.h"

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sweeps/flop_model.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/torch_compat.h"
#if PARCAE_WITH_CUDA
#include "trainer/fused_ops_cuda.h"
#endif

namespace parcae::trainer {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// ||a - b|| / ||b||, in double.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  return ((x - y).norm() / y.norm().clamp_min(1e-300)).item<double>();
}

// Runs `f` on fresh leaf copies of `inputs`, backpropagates a fixed random projection of its
// output, and returns the output and the inputs' gradients (undefined where an input has none).
template <typename F>
std::pair<torch::Tensor, std::vector<torch::Tensor>> value_and_gradients(
    F f, const std::vector<torch::Tensor>& inputs, const torch::Tensor& projection) {
  std::vector<torch::Tensor> leaves;
  for (const auto& input : inputs) {
    leaves.push_back(input.defined()
                         ? input.detach().clone().requires_grad_(input.is_floating_point())
                         : torch::Tensor());
  }
  const torch::Tensor out = f(leaves);
  (out.to(projection.scalar_type()) * projection).sum().backward();
  std::vector<torch::Tensor> grads;
  for (const auto& leaf : leaves)
    grads.push_back(leaf.defined() && leaf.requires_grad() ? leaf.grad() : torch::Tensor());
  return {out.detach(), grads};
}

RotaryTable rope_for(int64_t seq, int64_t head_dim, torch::Device device, torch::Dtype dtype) {
  return make_rotary_table(seq, head_dim, 10000.0, device, dtype);
}

// The three outputs of attention_inputs in one tensor, for comparing and projecting.
torch::Tensor stacked(const AttentionInputs& in) {
  return torch::stack({in.q, in.k, in.v});
}

TEST(FusedOps, RmsNormFormulasMatchAutogradOfTheComposition) {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({3, 5, 24}, kDouble);
  const torch::Tensor weight = 1.0 + 0.1 * torch::randn({24}, kDouble);
  const torch::Tensor projection = torch::randn({3, 5, 24}, kDouble);
  auto run = [&](KernelPath path) {
    return value_and_gradients(
        [&](const std::vector<torch::Tensor>& in) {
          return rms_norm(in[0], in[1], 1e-5, torch::kDouble, path);
        },
        {x, weight},
        projection);
  };
  const auto [fused, fused_grads] = run(KernelPath::kFused);
  const auto [aten, aten_grads] = run(KernelPath::kAten);
  EXPECT_LT(relative_error(fused, aten), 1e-14);
  EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-12);
  EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), 1e-12);
}

TEST(FusedOps, ResidualSumAndNormFormulasMatchAutogradOfTheComposition) {
  torch::manual_seed(6);
  const torch::Tensor x = torch::randn({3, 5, 24}, kDouble);
  const torch::Tensor delta = torch::randn({3, 5, 24}, kDouble);
  const torch::Tensor weight = 1.0 + 0.1 * torch::randn({24}, kDouble);
  // Both outputs carry gradient, as in a block: the sum goes on down the stream.
  const torch::Tensor projection = torch::randn({2, 3, 5, 24}, kDouble);
  auto run = [&](KernelPath path) {
    return value_and_gradients(
        [&](const std::vector<torch::Tensor>& in) {
          const ResidualNorm out = add_rms_norm(in[0], in[1], in[2], 1e-5, torch::kDouble, path);
          return torch::stack({out.sum, out.normed});
        },
        {x, delta, weight},
        projection);
  };
  const auto [fused, fused_grads] = run(KernelPath::kFused);
  const auto [aten, aten_grads] = run(KernelPath::kAten);
  EXPECT_LT(relative_error(fused, aten), 1e-14);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_LT(relative_error(fused_grads[i], aten_grads[i]), 1e-12) << "input " << i;
}

// embedding_lookup of `table` by `ids` on `path`: its value and the table's gradient.
std::pair<torch::Tensor, std::vector<torch::Tensor>> lookup_and_gradient(
    const torch::Tensor& table,
    const torch::Tensor& ids,
    const torch::Tensor& projection,
    KernelPath path) {
  return value_and_gradients(
      [&](const std::vector<torch::Tensor>& in) { return embedding_lookup(in[0], ids, path); },
      {table},
      projection);
}

TEST(FusedOps, EmbeddingLookupScattersItsGradientLikeTheComposition) {
  torch::manual_seed(7);
  const torch::Tensor table = torch::randn({50, 12}, kDouble);
  // Repeated ids, so that rows of the gradient add up.
  const torch::Tensor ids = torch::randint(0, 10, {4, 9}, torch::kLong);
  const torch::Tensor projection = torch::randn({4, 9, 12}, kDouble);
  const auto [fused, fused_grads] = lookup_and_gradient(table, ids, projection, KernelPath::kFused);
  const auto [aten, aten_grads] = lookup_and_gradient(table, ids, projection, KernelPath::kAten);
  EXPECT_EQ(relative_error(fused, aten), 0.0);
  EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-15);
}

TEST(FusedOps, ReorderedRowsGatherTheirGradientBackLikeIndexSelect) {
  torch::manual_seed(8);
  const torch::Tensor x = torch::randn({5, 3, 4}, kDouble);
  const torch::Tensor order = torch::tensor(std::vector<int64_t>{3, 0, 4, 1, 2});
  const torch::Tensor inverse = torch::empty_like(order);
  inverse.index_put_({order}, torch::arange(5));
  const torch::Tensor projection = torch::randn({5, 3, 4}, kDouble);
  const auto [reordered, reordered_grads] = value_and_gradients(
      [&](const std::vector<torch::Tensor>& in) { return reorder_rows(in[0], order, inverse); },
      {x},
      projection);
  const auto [selected, selected_grads] = value_and_gradients(
      [&](const std::vector<torch::Tensor>& in) { return in[0].index_select(0, order); },
      {x},
      projection);
  EXPECT_TRUE(torch::equal(reordered, selected));
  EXPECT_TRUE(torch::equal(reordered_grads[0], selected_grads[0]));
  EXPECT_TRUE(torch::equal(reordered_grads[0].index_select(0, order), projection));
}

void expect_attention_inputs_formulas_match(bool gated) {
  torch::manual_seed(gated ? 2 : 3);
  const int64_t b = 2, s = 6, heads = 3, head_dim = 8, width = heads * head_dim;
  const torch::Tensor qkv = torch::randn({b, s, 3 * width}, kDouble);
  const torch::Tensor gate = gated ? torch::randn({b, s, heads}, kDouble) : torch::Tensor();
  const torch::Tensor ve = gated ? torch::randn({b, s, width}, kDouble) : torch::Tensor();
  const RotaryTable rope = rope_for(s, head_dim, torch::kCPU, torch::kDouble);
  const torch::Tensor projection = torch::randn({3, b, s, heads, head_dim}, kDouble);
  auto run = [&](KernelPath path) {
    return value_and_gradients(
        [&](const std::vector<torch::Tensor>& in) {
          return stacked(attention_inputs(in[0], in[1], in[2], rope, heads, head_dim, 1e-6, path));
        },
        {qkv, gate, ve},
        projection);
  };
  const auto [fused, fused_grads] = run(KernelPath::kFused);
  const auto [aten, aten_grads] = run(KernelPath::kAten);
  EXPECT_LT(relative_error(fused, aten), 1e-14);
  EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-12);
  if (gated) {
    EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), 1e-12);
    EXPECT_LT(relative_error(fused_grads[2], aten_grads[2]), 1e-12);
  }
}

TEST(FusedOps, AttentionInputsFormulasMatchAutogradWithAndWithoutAGate) {
  expect_attention_inputs_formulas_match(/*gated=*/false);
  expect_attention_inputs_formulas_match(/*gated=*/true);
}

TEST(FusedOps, ReluSquaredFormulasMatchAutograd) {
  torch::manual_seed(4);
  const torch::Tensor u = torch::randn({7, 33}, kDouble);
  const torch::Tensor projection = torch::randn({7, 33}, kDouble);
  auto run = [&](KernelPath path) {
    return value_and_gradients(
        [&](const std::vector<torch::Tensor>& in) { return relu_squared_half(in[0], path); },
        {u},
        projection);
  };
  const auto [fused, fused_grads] = run(KernelPath::kFused);
  const auto [aten, aten_grads] = run(KernelPath::kAten);
  EXPECT_LT(relative_error(fused, aten), 1e-15);
  EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-15);
}

TEST(FusedOps, ChunkedCrossEntropyMatchesTheFullLogitsForEitherReduction) {
  torch::manual_seed(5);
  const torch::Tensor features = torch::randn({2, 5, 16}, kDouble);
  const torch::Tensor weight = torch::randn({40, 16}, kDouble);
  const torch::Tensor targets = torch::randint(0, 40, {2, 5}, torch::kLong);
  const torch::Tensor projection = torch::full({}, 1.7, kDouble);
  for (const LossReduction reduction : {LossReduction::kMean, LossReduction::kSum}) {
    auto run = [&](KernelPath path, int64_t chunk) {
      return value_and_gradients(
          [&](const std::vector<torch::Tensor>& in) {
            return tied_head_cross_entropy(in[0], in[1], targets, reduction, path, chunk);
          },
          {features, weight},
          projection);
    };
    const auto [aten, aten_grads] = run(KernelPath::kAten, 0);
    // 10 rows in chunks of 3 (the last one short), and in one chunk.
    for (const int64_t chunk : {3, 0}) {
      const auto [fused, fused_grads] = run(KernelPath::kFused, chunk);
      EXPECT_LT(relative_error(fused, aten), 1e-14) << "chunk " << chunk;
      EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-12) << "chunk " << chunk;
      EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), 1e-12) << "chunk " << chunk;
    }
  }
  // Without a gradient to compute, the loss alone.
  torch::NoGradGuard no_grad;
  const torch::Tensor plain =
      tied_head_cross_entropy(features, weight, targets, LossReduction::kSum, KernelPath::kAten);
  const torch::Tensor fused = tied_head_cross_entropy(
      features, weight, targets, LossReduction::kSum, KernelPath::kFused, 4);
  EXPECT_LT(relative_error(fused, plain), 1e-14);
}

// A whole model, every operation on the fused path, against the composition in double: the
// logits-free loss, its gradient for every parameter, and h_T, with per-sequence depths in an
// order that makes the forward sort its rows.
void expect_model_paths_agree(const std::string& preset) {
  const sweeps::ModelConfig config = sweeps::preset(preset);
  std::vector<std::pair<torch::Tensor, std::vector<torch::Tensor>>> results;
  for (const KernelPath path : {KernelPath::kAten, KernelPath::kFused}) {
    torch::manual_seed(8);
    ModelOptions options;
    options.kernels = path;
    LanguageModel model(config, options);
    model->to(torch::kDouble);
    {
      // Away from initialisation, where zero output projections hide most of the graph.
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters())
        p.add_(0.05 * torch::randn_like(p));
    }
    torch::manual_seed(9);
    const torch::Tensor ids = torch::randint(0, config.vocab_size, {4, 8}, torch::kLong);
    const torch::Tensor targets = torch::randint(0, config.vocab_size, {4, 8}, torch::kLong);
    at::Generator generator = at::detail::createCPUGenerator(10);
    const torch::Tensor h0 = model->sample_initial_state(4, 8, generator);
    DepthPlan plan;
    plan.no_grad = {0, 2, 1, 3};
    plan.graded = {1, 2, 2, 1};
    const ModelLoss out = model->loss(ids, targets, plan, h0);
    out.loss.backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : model->parameters())
      grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    grads.push_back(out.state.defined() ? out.state.detach() : torch::zeros({1}, kDouble));
    results.emplace_back(out.loss.detach(), grads);
  }
  EXPECT_LT(relative_error(results[1].first, results[0].first), 1e-13) << preset;
  for (size_t i = 0; i < results[0].second.size(); ++i) {
    EXPECT_LT((results[1].second[i] - results[0].second[i]).abs().max().item<double>(), 1e-11)
        << preset << " tensor " << i;
  }
}

TEST(FusedOps, EveryModelComputesTheSameLossAndGradientsOnBothPaths) {
  for (const char* preset : {"parcae-micro", "transformer-micro", "rdm-micro", "add-micro"})
    expect_model_paths_agree(preset);
}

#if PARCAE_WITH_CUDA
// The kernels against the composition on the GPU, at the models' shapes, in bf16 where training
// runs them. Both sides round to bf16 at the same places; what is left is the order of fp32
// sums and single roundings, well under the 1e-2 that bf16 operands allow.
constexpr double kBf16Tolerance = 1e-2;

torch::Device gpu() {
  return torch::Device(torch::kCUDA, 0);
}

TEST(FusedKernels, RmsNormMatchesTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(11);
  for (const auto& [dtype, out] :
       std::vector<std::pair<torch::Dtype, torch::Dtype>>{{torch::kFloat, torch::kBFloat16},
                                                          {torch::kBFloat16, torch::kBFloat16},
                                                          {torch::kFloat, torch::kFloat}}) {
    const auto options = torch::TensorOptions().device(gpu());
    const torch::Tensor x = torch::randn({4, 300, 768}, options).to(dtype);
    const torch::Tensor weight = 1.0 + 0.1 * torch::randn({768}, options);
    const torch::Tensor projection = torch::randn({4, 300, 768}, options);
    auto run = [&](KernelPath path) {
      return value_and_gradients(
          [&](const std::vector<torch::Tensor>& in) {
            return rms_norm(in[0], in[1], 1e-5, out, path);
          },
          {x, weight},
          projection);
    };
    const auto [fused, fused_grads] = run(KernelPath::kFused);
    const auto [aten, aten_grads] = run(KernelPath::kAten);
    ASSERT_EQ(fused.scalar_type(), out);
    EXPECT_LT(relative_error(fused, aten), kBf16Tolerance);
    EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), kBf16Tolerance);
    EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), kBf16Tolerance);
    EXPECT_EQ(fused_grads[0].scalar_type(), dtype);
  }
}

TEST(FusedKernels, ResidualSumAndNormMatchTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(18);
  // The fp32 stream of the prelude and core, and the bf16 stream of the coda.
  for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
    const auto options = torch::TensorOptions().device(gpu());
    const torch::Tensor x = torch::randn({4, 300, 768}, options).to(dtype);
    const torch::Tensor delta = torch::randn({4, 300, 768}, options).to(torch::kBFloat16);
    const torch::Tensor weight = 1.0 + 0.1 * torch::randn({768}, options);
    const torch::Tensor projection = torch::randn({2, 4, 300, 768}, options);
    auto run = [&](KernelPath path) {
      return value_and_gradients(
          [&](const std::vector<torch::Tensor>& in) {
            const ResidualNorm out =
                add_rms_norm(in[0], in[1], in[2], 1e-5, torch::kBFloat16, path);
            return torch::stack({out.sum.to(torch::kFloat), out.normed.to(torch::kFloat)});
          },
          {x, delta, weight},
          projection);
    };
    const auto [fused, fused_grads] = run(KernelPath::kFused);
    const auto [aten, aten_grads] = run(KernelPath::kAten);
    EXPECT_LT(relative_error(fused, aten), kBf16Tolerance);
    for (size_t i = 0; i < 3; ++i)
      EXPECT_LT(relative_error(fused_grads[i], aten_grads[i]), kBf16Tolerance) << "input " << i;
    EXPECT_EQ(fused_grads[0].scalar_type(), dtype);
    EXPECT_EQ(fused_grads[1].scalar_type(), torch::kBFloat16);
  }
}

TEST(FusedKernels, AttentionInputsMatchTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(12);
  for (const auto& [heads, head_dim] :
       std::vector<std::pair<int64_t, int64_t>>{{6, 128}, {4, 64}}) {
    for (const bool gated : {false, true}) {
      const int64_t b = 3, s = 200, width = heads * head_dim;
      const auto options = torch::TensorOptions().device(gpu());
      const torch::Tensor qkv = torch::randn({b, s, 3 * width}, options).to(torch::kBFloat16);
      const torch::Tensor gate =
          gated ? torch::randn({b, s, heads}, options).to(torch::kBFloat16) : torch::Tensor();
      const torch::Tensor ve = gated ? torch::randn({b, s, width}, options) : torch::Tensor();
      const RotaryTable rope = rope_for(s, head_dim, gpu(), torch::kFloat);
      const torch::Tensor projection = torch::randn({3, b, s, heads, head_dim}, options);
      auto run = [&](KernelPath path) {
        return value_and_gradients(
            [&](const std::vector<torch::Tensor>& in) {
              return stacked(
                  attention_inputs(in[0], in[1], in[2], rope, heads, head_dim, 1e-6, path));
            },
            {qkv, gate, ve},
            projection);
      };
      const auto [fused, fused_grads] = run(KernelPath::kFused);
      const auto [aten, aten_grads] = run(KernelPath::kAten);
      const std::string label =
          std::to_string(heads) + "x" + std::to_string(head_dim) + (gated ? " gated" : "");
      EXPECT_LT(relative_error(fused, aten), kBf16Tolerance) << label;
      EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), kBf16Tolerance) << label;
      if (gated) {
        EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), kBf16Tolerance) << label;
        EXPECT_LT(relative_error(fused_grads[2], aten_grads[2]), kBf16Tolerance) << label;
      }
    }
  }
}

TEST(FusedKernels, ReluSquaredMatchesTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(13);
  // An odd length, so that the tail after the 8-wide loads is exercised too.
  const auto options = torch::TensorOptions().device(gpu());
  const torch::Tensor u = torch::randn({1000003}, options).to(torch::kBFloat16);
  const torch::Tensor projection = torch::randn({1000003}, options);
  auto run = [&](KernelPath path) {
    return value_and_gradients(
        [&](const std::vector<torch::Tensor>& in) { return relu_squared_half(in[0], path); },
        {u},
        projection);
  };
  const auto [fused, fused_grads] = run(KernelPath::kFused);
  const auto [aten, aten_grads] = run(KernelPath::kAten);
  // The same roundings in the same places: equal.
  EXPECT_EQ(relative_error(fused, aten), 0.0);
  EXPECT_EQ(relative_error(fused_grads[0], aten_grads[0]), 0.0);
}

TEST(FusedKernels, CrossEntropyMatchesTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(14);
  // The 140M head (vocab 32,768) and a byte-level one (256), over several chunks.
  for (const auto& [vocab, dim] :
       std::vector<std::pair<int64_t, int64_t>>{{32768, 768}, {256, 256}}) {
    const auto options = torch::TensorOptions().device(gpu());
    const int64_t rows = 3000;
    const torch::Tensor features = torch::randn({rows, dim}, options).to(torch::kBFloat16);
    const torch::Tensor weight = 0.05 * torch::randn({vocab, dim}, options);
    const torch::Tensor targets = torch::randint(0, vocab, {rows}, options.dtype(torch::kLong));
    const torch::Tensor projection = torch::full({}, 1.0, options);
    auto run = [&](KernelPath path, int64_t chunk) {
      return value_and_gradients(
          [&](const std::vector<torch::Tensor>& in) {
            compat::AutocastGuard autocast(torch::kCUDA, torch::kBFloat16, true);
            return tied_head_cross_entropy(
                in[0], in[1], targets, LossReduction::kMean, path, chunk);
          },
          {features, weight},
          projection);
    };
    const auto [aten, aten_grads] = run(KernelPath::kAten, 0);
    const auto [fused, fused_grads] = run(KernelPath::kFused, 1024);
    const std::string label = "vocab " + std::to_string(vocab);
    EXPECT_LT(std::abs(fused.item<double>() - aten.item<double>()), 1e-4 * aten.item<double>())
        << label;
    EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), kBf16Tolerance) << label;
    EXPECT_LT(relative_error(fused_grads[1], aten_grads[1]), kBf16Tolerance) << label;
  }
}

// One bf16 training forward and backward of Parcae-tiny on the GPU on both paths: the losses
// agree to bf16 noise and every parameter's gradient to a few per cent.
TEST(FusedKernels, AParcaeStepOnTheGpuAgreesWithTheComposition) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  const sweeps::ModelConfig config = sweeps::preset("parcae-tiny");
  std::vector<std::pair<double, std::vector<torch::Tensor>>> results;
  for (const KernelPath path : {KernelPath::kAten, KernelPath::kFused}) {
    torch::manual_seed(15);
    ModelOptions options;
    options.kernels = path;
    LanguageModel model(config, options);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters())
        p.add_(0.02 * torch::randn_like(p));
    }
    model->to(gpu());
    torch::manual_seed(16);
    const torch::Tensor ids =
        torch::randint(0, config.vocab_size, {8, config.context_length}, torch::kLong).to(gpu());
    const torch::Tensor targets =
        torch::randint(0, config.vocab_size, {8, config.context_length}, torch::kLong).to(gpu());
    at::Generator generator = compat::make_generator(gpu(), 17);
    const torch::Tensor h0 = model->sample_initial_state(8, config.context_length, generator);
    DepthPlan plan;
    plan.no_grad = {0, 3, 1, 5, 0, 2, 0, 1};
    plan.graded = {1, 2, 2, 2, 2, 2, 1, 2};
    ModelLoss out;
    {
      compat::AutocastGuard autocast(torch::kCUDA, torch::kBFloat16, true);
      out = model->loss(ids, targets, plan, h0);
    }
    out.loss.backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : model->parameters())
      grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    results.emplace_back(out.loss.item<double>(), grads);
  }
  EXPECT_NEAR(results[1].first, results[0].first, 2e-3 * results[0].first);
  for (size_t i = 0; i < results[0].second.size(); ++i) {
    EXPECT_LT(relative_error(results[1].second[i], results[0].second[i]), 5e-2)
        << "parameter " << i;
  }
}
TEST(FusedKernels, MuonUpdateMatchesTheCompositionOnTheGpu) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(21);
  const auto options = torch::TensorOptions().device(gpu());
  // Wide and tall matrices (factor per row and per column), bf16 and fp32 updates, and weights
  // that are separate allocations, as a model's are.
  for (const auto& [rows, cols, per_row] : std::vector<std::tuple<int64_t, int64_t, bool>>{
           {768, 3072, false}, {3072, 768, true}, {37, 53, true}}) {
    for (const torch::Dtype x_dtype : {torch::kBFloat16, torch::kFloat}) {
      std::vector<torch::Tensor> start, fused, aten;
      for (int k = 0; k < 3; ++k) {
        start.push_back(torch::randn({rows, cols}, options));
        fused.push_back(start.back().clone());
        aten.push_back(start.back().clone());
      }
      const torch::Tensor x = torch::randn({3, rows, cols}, options).to(x_dtype);
      const torch::Tensor factor =
          torch::rand(per_row ? std::vector<int64_t>{3, rows, 1} : std::vector<int64_t>{3, 1, cols},
                      options) +
          0.5;
      apply_muon_update(fused, x, factor, 0.02, 0.002, KernelPath::kFused);
      apply_muon_update(aten, x, factor, 0.02, 0.002, KernelPath::kAten);
      // The same fp32 operations in the same order: equal, and moved from the start.
      for (size_t k = 0; k < fused.size(); ++k) {
        EXPECT_TRUE(torch::equal(fused[k], aten[k])) << rows << "x" << cols << " matrix " << k;
        EXPECT_GT(relative_error(start[k], fused[k]), 1e-4);
      }
    }
  }
}

// The embedding tables' gradient on the GPU: zero where no id points, elsewhere the sum of the
// id's gradient rows in fp32 (against a double-precision index_add on the CPU), for fp32 and bf16
// gradients, with one id repeated over half the rows (a run over hundreds of tiles) and others
// once or a few times.
TEST(FusedKernels, EmbeddingGradientSumsTheRowsOfEachIdIntoItsTableRow) {
  ASSERT_TRUE(torch::cuda::is_available()) << "a CUDA build's tests need a visible GPU";
  torch::manual_seed(16);
  const auto options = torch::TensorOptions().device(gpu());
  for (const int64_t dim : {768, 250}) {
    const int64_t rows = 4096, n = 20000;
    torch::Tensor ids = torch::randint(0, rows / 2, {n}, options.dtype(torch::kLong));
    ids.narrow(0, 0, n / 2).fill_(7);
    ids = ids.index_select(0, torch::randperm(n, options.dtype(torch::kLong)));
    for (const torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
      const torch::Tensor g = torch::randn({n, dim}, options).to(dtype);
      const torch::Tensor expected =
          torch::zeros({rows, dim}, kDouble).index_add_(0, ids.cpu(), g.cpu().to(torch::kDouble));
      const torch::Tensor d_weight = cuda_ops::embedding_backward(ids, g, rows);
      const std::string label = "dim " + std::to_string(dim) + " " + toString(dtype);
      ASSERT_TRUE(d_weight.defined()) << label;
      EXPECT_EQ(d_weight.scalar_type(), torch::kFloat) << label;
      // The repeated id's row adds hundreds of tiles' partial sums in fp32.
      EXPECT_LT(relative_error(d_weight.cpu(), expected), 1e-5) << label;
      // The rows used once or a few times, summed within a tile or two.
      const torch::Tensor others =
          torch::ones({rows}, torch::kBool)
              .index_fill_(0, torch::tensor(std::vector<int64_t>{7}), false);
      EXPECT_LT(relative_error(d_weight.cpu().index({others}), expected.index({others})), 1e-6)
          << label;
      EXPECT_EQ(d_weight.narrow(0, rows / 2, rows / 2).abs().max().item<float>(), 0.0f) << label;
    }
  }
  // Through the lookup: the fused path's table gradient against the composition's.
  const torch::Tensor table = torch::randn({1000, 64}, options);
  const torch::Tensor ids = torch::randint(0, 1000, {8, 300}, options.dtype(torch::kLong));
  const torch::Tensor projection = torch::randn({8, 300, 64}, options);
  const auto [fused, fused_grads] = lookup_and_gradient(table, ids, projection, KernelPath::kFused);
  const auto [aten, aten_grads] = lookup_and_gradient(table, ids, projection, KernelPath::kAten);
  EXPECT_TRUE(torch::equal(fused, aten));
  EXPECT_LT(relative_error(fused_grads[0], aten_grads[0]), 1e-6);
}

#endif

}  // namespace
}  // namespace parcae::trainer
