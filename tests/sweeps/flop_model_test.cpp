// Known answers for the model description: every number below is copied from
// ../shared/spec/parcae.md (section named in each test) and must be reproduced to the last digit.
#include "sweeps/flop_model.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "sweeps/error.h"

namespace parcae::sweeps {
namespace {

// parcae.md §11, "Worked example: Parcae-140M, mu_rec = 8, mu_bwd = 4, C = 1e18 FLOPs".
TEST(FlopModel, Parcae140mReproducesTheWorkedExampleToTheLastDigit) {
  const ModelConfig model = preset("parcae-140m");
  const ParameterCounts p = count_parameters(model);
  EXPECT_EQ(p.per_block, 7079424);                       // step 1
  EXPECT_EQ(p.value_embeddings, 75497472);               // step 2
  EXPECT_EQ(p.core, 14159040);                           // step 3
  EXPECT_EQ(p.noncore, 104998272);                       // step 4
  EXPECT_EQ(p.total, 144323136);                         // step 4, check line
  EXPECT_EQ(attention_flops_per_layer(model), 6291456);  // step 5
  EXPECT_EQ(train_flops_per_token(model), 1359902976);   // step 6
  EXPECT_EQ(tokens_for_budget(model, 1e18), 735346578);  // step 7
  EXPECT_EQ(tokens_for_budget(model, 1e18) / 524288, 1402);
}

// parcae.md §11, the FLOP-line table (c0, c1, c2, F(8, 4), F_transformer).
struct FlopLineRow {
  const char* size;
  int64_t c0, c1, c2, f_8_4, f_transformer;
};

class FlopLineTable : public ::testing::TestWithParam<FlopLineRow> {};

TEST_P(FlopLineTable, CoefficientsMatchTheSpecTable) {
  const FlopLineRow& row = GetParam();
  const ModelConfig parcae = preset(std::string("parcae-") + row.size);
  const FlopLine line = flop_line(parcae);
  EXPECT_EQ(line.c0, row.c0);
  EXPECT_EQ(line.c1, row.c1);
  EXPECT_EQ(line.c2, row.c2);
  EXPECT_EQ(train_flops_per_token(parcae), row.f_8_4);
  EXPECT_EQ(train_flops_per_token(preset(std::string("transformer-") + row.size)),
            row.f_transformer);
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(PaperSizes, FlopLineTable, ::testing::Values(
    FlopLineRow{"140m", 705487104, 40900992, 81801984, 1359902976, 821098368},
    FlopLineRow{"370m", 2025977856, 134235136, 268470272, 4173740032, 2416081920},
    FlopLineRow{"770m", 4077876480, 298876800, 597753600, 8859905280, 4954823040},
    FlopLineRow{"1.3b", 6974429184, 553700352, 1107400704, 15833634816, 8607191040}));
// clang-format on

// parcae.md §11, "140M sweep check values (mu_bwd = ceil(mu/2))".
TEST(FlopModel, Parcae140mSweepCheckValuesMatchForEveryMeanRecurrence) {
  const int mus[] = {1, 2, 4, 6, 8, 10, 12};
  const int64_t flops[] = {
      828190080, 869091072, 1032695040, 1196299008, 1359902976, 1523506944, 1687110912};
  const int64_t tokens[] = {
      1207452279, 1150627399, 968340082, 835911417, 735346578, 656380336, 592729258};
  for (int i = 0; i < 7; ++i) {
    ModelConfig model = preset("parcae-140m");
    model.mean_recurrence = mus[i];
    model.mean_backward = default_mean_backward(mus[i]);
    EXPECT_EQ(train_flops_per_token(model), flops[i]) << "mu_rec = " << mus[i];
    EXPECT_EQ(tokens_for_budget(model, 1e18), tokens[i]) << "mu_rec = " << mus[i];
  }
}

TEST(FlopModel, ContinuousFormAtHalfMuEqualsTheTableAtEveryEvenMu) {
  const ModelConfig model = preset("parcae-140m");
  for (int mu = 2; mu <= 12; mu += 2) {
    ModelConfig at_mu = model;
    at_mu.mean_recurrence = mu;
    at_mu.mean_backward = default_mean_backward(mu);
    EXPECT_EQ(train_flops_per_token_at(model, mu, mu / 2.0),
              static_cast<double>(train_flops_per_token(at_mu)));
  }
}

// parcae.md §7, the size table: parameter totals and their parts.
struct SizeRow {
  const char* size;
  int64_t transformer, parcae, parcae_extra, embedding, ve_tables, core, noncore;
  int n_value_embeddings;
};

class SizeTable : public ::testing::TestWithParam<SizeRow> {};

TEST_P(SizeTable, ParameterCountsMatchThePaper) {
  const SizeRow& row = GetParam();
  const ParameterCounts parcae = count_parameters(preset(std::string("parcae-") + row.size));
  const ParameterCounts transformer =
      count_parameters(preset(std::string("transformer-") + row.size));
  EXPECT_EQ(transformer.total, row.transformer);
  EXPECT_EQ(parcae.total, row.parcae);
  EXPECT_EQ(parcae.total - transformer.total, row.parcae_extra);  // 2d^2 + 3d
  EXPECT_EQ(parcae.embedding, row.embedding);
  EXPECT_EQ(parcae.value_embeddings, row.ve_tables);
  EXPECT_EQ(parcae.core, row.core);
  EXPECT_EQ(parcae.noncore, row.noncore);
  EXPECT_EQ(preset(std::string("parcae-") + row.size).n_value_embeddings(), row.n_value_embeddings);
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(PaperSizes, SizeTable, ::testing::Values(
    SizeRow{"140m", 143141184, 144323136, 1181952, 25165824, 75497472, 14159040, 104998272, 3},
    SizeRow{"370m", 385903104, 388003328, 2100224, 33554432, 201326592, 50340352, 304108544, 6},
    SizeRow{"770m", 773375040, 776655680, 3280640, 41943040, 377487360, 117981120, 616731520, 9},
    SizeRow{"1.3b", 1333868544, 1338591744, 4723200, 50331648, 603979776, 226518528, 1061741568, 12}));
// clang-format on

// parcae.md §7: "optimizer steps at 524,288 tok/step" for the end-to-end token counts.
TEST(FlopModel, EndToEndTokenCountsGiveThePublishedStepCounts) {
  EXPECT_EQ(static_cast<int64_t>(11.2e9) / 524288, 21362);
  EXPECT_EQ(static_cast<int64_t>(29.6e9) / 524288, 56457);
  EXPECT_EQ(static_cast<int64_t>(61.6e9) / 524288, 117492);
  EXPECT_EQ(static_cast<int64_t>(104e9) / 524288, 198364);
}

// parcae.md §11, "Model FLOPs for MFU": 140M at (8, 4) and the Transformer.
TEST(FlopModel, ModelFlopsForMfuMatchTheSpec) {
  EXPECT_EQ(model_flops_per_token(preset("parcae-140m")), 1057759488);
  EXPECT_EQ(model_flops_per_token(preset("transformer-140m")), 519048576);
}

// parcae.md §11 end of the worked example: the Transformer gets 1e18 / 821,098,368 tokens.
TEST(FlopModel, Transformer140mTokensAtOneExaFlop) {
  const int64_t tokens = tokens_for_budget(preset("transformer-140m"), 1e18);
  EXPECT_EQ(tokens, 1217880876);                                // floor(1e18 / 821,098,368)
  EXPECT_NEAR(static_cast<double>(tokens), 1.218e9, 0.0005e9);  // as printed in the spec
}

// parcae.md §11 "Variant adjustments": the linear adapter runs once per loop.
// docs/flops.md, "Two conventions": the paper's text takes the lookups (W_E, VE tables) out of 6N
// and puts the head in. At Parcae-140M, (8, 4): c0 = 705,487,104 - 6 * 75,497,472 + 6 * 25,165,824
// = 403,497,216, and F = 403,497,216 + 8 * 40,900,992 + 4 * 81,801,984 = 1,057,913,088.
TEST(FlopModel, PaperConventionDropsTheLookupsAndCountsTheHead) {
  const ModelConfig parcae = preset("parcae-140m");
  const FlopLine reference = flop_line(parcae), paper = flop_line(parcae, FlopConvention::kPaper);
  EXPECT_EQ(paper.c0, 403497216);
  EXPECT_EQ(paper.c1, reference.c1);
  EXPECT_EQ(paper.c2, reference.c2);
  EXPECT_EQ(train_flops_per_token(parcae, FlopConvention::kPaper), 1057913088);
  EXPECT_EQ(train_flops_per_token(parcae, FlopConvention::kReference), 1359902976);
  // The "about 30% at 140M": the reference charges 28.5% more per token at (8, 4).
  const double ratio = 1359902976.0 / 1057913088.0;
  EXPECT_NEAR(ratio, 1.2855, 0.0001);
  EXPECT_EQ(tokens_for_budget(parcae, 1e18, FlopConvention::kPaper), 945257234);
  EXPECT_DOUBLE_EQ(train_flops_per_token_at(parcae, 8.0, 4.0, FlopConvention::kPaper),
                   1057913088.0);
  // Transformer-140M: 6 * (143,141,184 - 75,497,472) + 18 * attn_l = 519,108,480. It is the MFU
  // convention's 519,048,576 (parcae.md §11, matmul weights only) plus 6 * the 13 norms of d.
  const ModelConfig transformer = preset("transformer-140m");
  EXPECT_EQ(train_flops_per_token(transformer, FlopConvention::kPaper), 519108480);
  EXPECT_EQ(train_flops_per_token(transformer, FlopConvention::kPaper),
            model_flops_per_token(transformer) + 6 * 13 * 768);
}

// parcae.md §11, "Convention caveat": [P]'s integer optima at 140M (mu* = 2, 2, 4, 6, 8, 10 at
// C = 1, 2, 4, 8, 16, 64 x 1e18) with D* = C / F(mu*) give D* ~ C^0.85 under the reference and
// C^0.79 under the nanochat convention (head in, VE out), which is the paper's; mu* ~ C^0.44.
TEST(FlopModel, TheConventionMovesTheDStarExponentAsTheSpecSays) {
  const ModelConfig parcae = preset("parcae-140m");
  const double budgets[] = {1e18, 2e18, 4e18, 8e18, 16e18, 64e18};
  const int optima[] = {2, 2, 4, 6, 8, 10};
  auto flops = [&](int i, FlopConvention convention) {
    ModelConfig at = parcae;
    at.mean_recurrence = optima[i];
    at.mean_backward = default_mean_backward(optima[i]);
    return static_cast<double>(train_flops_per_token(at, convention));
  };
  // Least-squares slope of ln y on ln x over the six budgets.
  auto slope = [](auto x_of, auto y_of) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < 6; ++i) {
      const double x = std::log(x_of(i)), y = std::log(y_of(i));
      sx += x, sy += y, sxx += x * x, sxy += x * y;
    }
    return (6 * sxy - sx * sy) / (6 * sxx - sx * sx);
  };
  const auto budget = [&](int i) { return budgets[i]; };
  const auto optimum = [&](int i) { return static_cast<double>(optima[i]); };
  const auto tokens_reference = [&](int i) {
    return budgets[i] / flops(i, FlopConvention::kReference);
  };
  const auto tokens_paper = [&](int i) { return budgets[i] / flops(i, FlopConvention::kPaper); };
  EXPECT_NEAR(slope(budget, tokens_reference), 0.85, 0.005);
  EXPECT_NEAR(slope(budget, tokens_paper), 0.79, 0.005);
  EXPECT_NEAR(slope(budget, optimum), 0.44, 0.005);
  // docs/flops.md: re-costing each budget at its optimum (fit isoflop --flop-convention paper)
  // keeps D* and reads C' = D* * F_paper(mu*): D* ~ C'^0.80 and mu* ~ C'^0.42.
  const auto recosted = [&](int i) {
    return tokens_reference(i) * flops(i, FlopConvention::kPaper);
  };
  EXPECT_NEAR(slope(recosted, tokens_reference), 0.80, 0.005);
  EXPECT_NEAR(slope(recosted, optimum), 0.42, 0.005);
}

TEST(FlopModel, ConventionsReadAndWriteByName) {
  EXPECT_EQ(to_string(FlopConvention::kReference), "reference");
  EXPECT_EQ(to_string(FlopConvention::kPaper), "paper");
  EXPECT_EQ(flop_convention_from_json("paper", "f.json", "flop_convention"),
            FlopConvention::kPaper);
  try {
    flop_convention_from_json("papers", "f.json", "flop_convention");
    FAIL() << "an unknown convention was read";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "flop_convention");
    EXPECT_NE(std::string(e.what()).find("paper"), std::string::npos);
  }
}

TEST(FlopModel, LinearAdapterCountsAsCoreWork) {
  const ModelConfig rdm = preset("rdm-140m");
  const ModelConfig parcae = preset("parcae-140m");
  const ParameterCounts r = count_parameters(rdm);
  const int64_t d = 768, adapter = 2 * d * d;
  EXPECT_EQ(r.injection, adapter);
  EXPECT_EQ(r.per_loop, r.core + adapter);
  // No B, logA, dt_bias and no prelude norm; the adapter is out of N_noncore.
  EXPECT_EQ(r.noncore, count_parameters(parcae).noncore - (d * d + 2 * d) - d);
  const FlopLine line = flop_line(rdm);
  EXPECT_EQ(line.c1, flop_line(parcae).c1 + 2 * adapter);
  EXPECT_EQ(train_flops_per_token(rdm),
            6 * r.noncore + 3 * 4 * attention_flops_per_layer(rdm) + 2 * r.per_loop * 8 +
                4 * r.per_loop * 4 + 2 * attention_flops_per_layer(rdm) * 8 +
                2 * 2 * attention_flops_per_layer(rdm) * 4);
}

TEST(FlopModel, AdditiveInjectionHasNoInjectionParameters) {
  const ParameterCounts add = count_parameters(preset("add-140m"));
  EXPECT_EQ(add.injection, 0);
  EXPECT_EQ(add.total, 144323136 - (768 * 768 + 2 * 768));
}

// parcae.md §6 / §13 #7: the fixed control runs exactly one loop and costs F(1, 1).
TEST(FlopModel, FixedSamplerCostsOneLoop) {
  ModelConfig model = preset("parcae-140m");
  model.depth_sampler = DepthSampler::kFixed;
  model.mean_recurrence = model.mean_backward = 1;
  EXPECT_EQ(train_flops_per_token(model), 705487104 + 40900992 + 81801984);
}

TEST(FlopModel, EvaluationAtDepthTIsAThirdOfC0PlusOneForwardLoopPerIteration) {
  const ModelConfig model = preset("parcae-140m");
  EXPECT_EQ(eval_flops_per_token(model, 1), 705487104 / 3 + 40900992);
  EXPECT_EQ(eval_flops_per_token(model, 24) - eval_flops_per_token(model, 8), 16 * 40900992LL);
}

TEST(FlopModel, EffectiveParametersFollowTheTrainingLawDefinition) {
  // scaling-laws.md §4.1: N(mu) = 104,998,272 + 14,159,040 mu; mu = 2..12 spans
  // 133,316,352..274,906,752.
  const ModelConfig model = preset("parcae-140m");
  EXPECT_EQ(effective_parameters(model, 2), 133316352.0);
  EXPECT_EQ(effective_parameters(model, 12), 274906752.0);
  EXPECT_EQ(effective_parameters(model, 8), 218270592.0);
}

TEST(FlopModel, ValueEmbeddingsSitOnTheLastLayerAndEveryOtherGoingBack) {
  const ModelConfig model = preset("parcae-140m");  // n_eff = 6: layers 1, 3, 5
  for (int layer = 0; layer < 6; ++layer) {
    EXPECT_EQ(model.has_value_embedding(layer), layer % 2 == 1) << layer;
  }
  const ModelConfig micro = preset("parcae-micro");  // n_eff = 3: layers 0, 2
  EXPECT_TRUE(micro.has_value_embedding(0));
  EXPECT_FALSE(micro.has_value_embedding(1));
  EXPECT_TRUE(micro.has_value_embedding(2));
}

TEST(FlopModel, EveryPresetIsValid) {
  for (const auto& name : preset_names()) {
    EXPECT_TRUE(preset(name).validate().empty()) << name;
  }
}

TEST(FlopModel, UnknownPresetSuggestsTheClosestName) {
  try {
    preset("parcae-14m");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'parcae-140m'"), std::string::npos)
        << e.what();
  }
}

TEST(ModelConfigJson, RoundTripsEveryPreset) {
  for (const auto& name : preset_names()) {
    const ModelConfig model = preset(name);
    const ModelConfig back = model_config_from_json(to_json(model), "test.json", "model");
    EXPECT_EQ(to_json(back), to_json(model)) << name;
  }
}

TEST(ModelConfigJson, OverridingMeanRecurrenceAloneSetsTheDefaultBackwardDepth) {
  const ModelConfig model = model_config_from_json(
      nlohmann::json{{"preset", "parcae-140m"}, {"mean_recurrence", 12}}, "sweep.json", "model");
  EXPECT_EQ(model.mean_recurrence, 12);
  EXPECT_EQ(model.mean_backward, 6);
  EXPECT_EQ(train_flops_per_token(model), 1687110912);
}

TEST(ModelConfigJson, UnknownFieldNamesFileFieldAndSuggestion) {
  try {
    model_config_from_json(
        nlohmann::json{{"preset", "parcae-tiny"}, {"d_modle", 64}}, "sweep.json", "model");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("sweep.json"), std::string::npos) << message;
    EXPECT_NE(message.find("model.d_modle"), std::string::npos) << message;
    EXPECT_NE(message.find("did you mean 'd_model'"), std::string::npos) << message;
  }
}

TEST(ModelConfigJson, InconsistentHeadsAreRejectedWithTheReason) {
  try {
    model_config_from_json(
        nlohmann::json{{"preset", "parcae-tiny"}, {"n_heads", 3}}, "m.json", "model");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("n_heads * head_dim"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace parcae::sweeps
