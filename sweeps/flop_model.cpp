// Parameter counts, the FLOP line and the named presets. The arithmetic is worked by hand for
// Parcae-140M in docs/flops.md; tests/sweeps/flop_model_test.cpp checks it against parcae.md.
#include "sweeps/flop_model.h"

#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::sweeps {
namespace {

struct SizeSpec {
  int d_model;
  int n_heads;
  int head_dim;
  int layers_per_stage;  // L_P = L_R = L_C; the Transformer has 3x as many
  int n_recurrent;
  int vocab_size;
  int context_length;
  int mean_recurrence;
  double adamw_lr;  // 0 where the paper gives none: TrainingConfig's default applies
};

// clang-format off
// parcae.md §7 (nanochat setup) plus two small shapes of the same structure for CPU work.
const std::map<std::string, SizeSpec>& sizes() {
  static const std::map<std::string, SizeSpec> kSizes = {
      {"140m",  {768,  6,  128, 2, 2, 32768, 2048, 8, 8e-3}},
      {"370m",  {1024, 8,  128, 4, 4, 32768, 2048, 8, 8e-3}},
      {"770m",  {1280, 10, 128, 6, 6, 32768, 2048, 8, 6e-3}},
      {"1.3b",  {1536, 12, 128, 8, 8, 32768, 2048, 8, 6e-3}},
      {"tiny",  {64,   2,  32,  1, 2, 256,   128,  4, 0.0}},
      {"micro", {32,   2,  16,  1, 1, 256,   32,   2, 0.0}},
  };
  return kSizes;
}
// clang-format on

const std::vector<std::string>& variant_names() {
  static const std::vector<std::string> kVariants = {
      "parcae", "transformer", "rdm", "parcae-constrained-only", "parcae-no-prelude-norm", "add"};
  return kVariants;
}

// Applies a §5.2 preset's switches to a looped config.
void apply_variant(const std::string& variant, ModelConfig& config) {
  if (variant == "transformer") {
    config.family = Family::kTransformer;
    config.n_layers = config.n_prelude + config.n_recurrent + config.n_coda;
    config.n_prelude = config.n_recurrent = config.n_coda = 0;
    config.prelude_norm = false;
    config.mean_recurrence = 1;
    config.mean_backward = 1;
    config.depth_sampler = DepthSampler::kFixed;
  } else if (variant == "rdm") {
    config.injection = Injection::kLinear;
    config.depth_granularity = DepthGranularity::kPerBatch;
    config.prelude_norm = false;
  } else if (variant == "parcae-constrained-only") {
    config.depth_granularity = DepthGranularity::kPerBatch;
    config.prelude_norm = false;
  } else if (variant == "parcae-no-prelude-norm") {
    config.prelude_norm = false;
  } else if (variant == "add") {
    config.injection = Injection::kAdd;
  }
}

int64_t square(int64_t x) {
  return x * x;
}

int64_t gate_parameters(const ModelConfig& c) {
  return static_cast<int64_t>(c.ve_gate_channels) * c.n_heads;
}

int64_t block_matmul_parameters(const ModelConfig& c) {
  const int64_t d = c.d_model, inner = static_cast<int64_t>(c.n_heads) * c.head_dim;
  return 4 * d * inner + 2 * d * c.d_ff;
}

// Counts the VE gates among layers [first, first + count).
int64_t gates_in(const ModelConfig& c, int first, int count) {
  int64_t n = 0;
  for (int i = first; i < first + count; ++i)
    n += c.has_value_embedding(i) ? 1 : 0;
  return n * gate_parameters(c);
}

template <typename Enum>
struct EnumName {
  Enum value;
  const char* name;
};

const EnumName<Family> kFamilyNames[] = {{Family::kTransformer, "transformer"},
                                         {Family::kLooped, "looped"}};
const EnumName<Injection> kInjectionNames[] = {
    {Injection::kDiagonal, "diagonal"}, {Injection::kLinear, "linear"}, {Injection::kAdd, "add"}};
const EnumName<DepthGranularity> kGranularityNames[] = {
    {DepthGranularity::kPerSequence, "per-sequence"}, {DepthGranularity::kPerBatch, "per-batch"}};
const EnumName<DepthSampler> kSamplerNames[] = {{DepthSampler::kPoisson, "poisson"},
                                                {DepthSampler::kFixed, "fixed"}};
const EnumName<FlopConvention> kConventionNames[] = {{FlopConvention::kReference, "reference"},
                                                     {FlopConvention::kPaper, "paper"}};

template <typename Enum, size_t N>
std::string enum_to_string(const EnumName<Enum> (&names)[N], Enum value) {
  for (const auto& entry : names) {
    if (entry.value == value)
      return entry.name;
  }
  return "?";
}

template <typename Enum, size_t N>
Enum enum_from_json(const EnumName<Enum> (&names)[N],
                    const nlohmann::json& value,
                    const std::string& file,
                    const std::string& field) {
  std::vector<std::string> known;
  for (const auto& entry : names)
    known.push_back(entry.name);
  if (value.is_string()) {
    for (const auto& entry : names) {
      if (value.get<std::string>() == entry.name)
        return entry.value;
    }
    throw InputError(file,
                     field,
                     value.dump(),
                     "unknown value",
                     suggestion_hint(value.get<std::string>(), known));
  }
  throw InputError(file, field, value.dump(), "expected a string", suggestion_hint("", known));
}

int int_from_json(const nlohmann::json& value, const std::string& file, const std::string& field) {
  if (!value.is_number_integer() &&
      !(value.is_number_float() && std::floor(value.get<double>()) == value.get<double>())) {
    throw InputError(file, field, value.dump(), "expected an integer");
  }
  const double v = value.get<double>();
  if (v < 0)
    throw InputError(file, field, value.dump(), "expected a non-negative integer");
  if (v > std::numeric_limits<int>::max()) {
    throw InputError(file,
                     field,
                     value.dump(),
                     "expected at most " + std::to_string(std::numeric_limits<int>::max()));
  }
  return static_cast<int>(v);
}

}  // namespace

int ModelConfig::n_effective_layers() const {
  return family == Family::kTransformer ? n_layers : n_prelude + n_recurrent + n_coda;
}

bool ModelConfig::has_value_embedding(int layer) const {
  const int n_eff = n_effective_layers();
  return layer >= 0 && layer < n_eff && (n_eff - 1 - layer) % 2 == 0;
}

int ModelConfig::n_value_embeddings() const {
  return (n_effective_layers() + 1) / 2;
}

std::vector<std::string> ModelConfig::validate() const {
  std::vector<std::string> problems;
  auto need = [&](bool ok, const std::string& field, const std::string& value, const char* what) {
    if (!ok)
      problems.push_back(field + " = " + value + ": " + what);
  };
  need(d_model > 0, "d_model", std::to_string(d_model), "expected a positive integer");
  need(n_heads > 0, "n_heads", std::to_string(n_heads), "expected a positive integer");
  need(head_dim > 0 && head_dim % 2 == 0,
       "head_dim",
       std::to_string(head_dim),
       "expected a positive even integer (RoPE rotates pairs)");
  need(static_cast<int64_t>(n_heads) * head_dim == d_model,
       "n_heads * head_dim",
       std::to_string(static_cast<int64_t>(n_heads) * head_dim),
       "expected to equal d_model");
  need(d_ff > 0, "d_ff", std::to_string(d_ff), "expected a positive integer");
  need(vocab_size > 1, "vocab_size", std::to_string(vocab_size), "expected at least 2");
  need(context_length > 0, "context_length", std::to_string(context_length), "expected > 0");
  need(ve_gate_channels > 0 && ve_gate_channels <= d_model,
       "ve_gate_channels",
       std::to_string(ve_gate_channels),
       "expected between 1 and d_model");
  need(rope_theta > 0, "rope_theta", std::to_string(rope_theta), "expected > 0");
  if (family == Family::kTransformer) {
    need(n_layers > 0, "n_layers", std::to_string(n_layers), "expected a positive integer");
  } else {
    need(n_prelude >= 0, "n_prelude", std::to_string(n_prelude), "expected >= 0");
    need(n_coda >= 0, "n_coda", std::to_string(n_coda), "expected >= 0");
    need(n_recurrent > 0, "n_recurrent", std::to_string(n_recurrent), "expected > 0");
    need(mean_recurrence >= 1,
         "mean_recurrence",
         std::to_string(mean_recurrence),
         "expected an integer >= 1");
    need(mean_backward >= 1 && mean_backward <= std::max(mean_recurrence, 1),
         "mean_backward",
         std::to_string(mean_backward),
         "expected between 1 and mean_recurrence");
    need(depth_sampler != DepthSampler::kFixed || mean_recurrence == 1,
         "mean_recurrence",
         std::to_string(mean_recurrence),
         "the fixed sampler runs exactly T = 1; expected mean_recurrence = 1");
  }
  return problems;
}

int default_mean_backward(int mean_recurrence) {
  return (mean_recurrence + 1) / 2;
}

ParameterCounts count_parameters(const ModelConfig& c) {
  ParameterCounts p;
  const int64_t d = c.d_model, inner = static_cast<int64_t>(c.n_heads) * c.head_dim;
  const int64_t v = c.vocab_size;
  p.embedding = v * d;
  p.value_embeddings = static_cast<int64_t>(c.n_value_embeddings()) * v * inner;
  p.per_block = block_matmul_parameters(c) + 2 * d;
  if (c.family == Family::kTransformer) {
    p.prelude_coda = c.n_layers * p.per_block + gates_in(c, 0, c.n_layers);
    p.norms = d;
    p.noncore = p.value_embeddings + p.prelude_coda + p.norms;
  } else {
    const int outside = c.n_prelude + c.n_coda;
    p.prelude_coda = outside * p.per_block + gates_in(c, 0, c.n_prelude) +
                     gates_in(c, c.n_prelude + c.n_recurrent, c.n_coda);
    p.core = c.n_recurrent * p.per_block + gates_in(c, c.n_prelude, c.n_recurrent);
    switch (c.injection) {
      case Injection::kDiagonal:
        p.injection = square(d) + 2 * d;  // B, logA, dt_bias
        break;
      case Injection::kLinear:
        p.injection = 2 * square(d);  // W_adp [d, 2d]
        break;
      case Injection::kAdd:
        p.injection = 0;
        break;
    }
    p.readout = square(d);
    p.norms = d + (c.prelude_norm ? d : 0);
    // The concat adapter runs once per loop, so §11 counts it with the core, not in N_noncore.
    const int64_t adapter = c.injection == Injection::kLinear ? p.injection : 0;
    p.noncore = p.value_embeddings + p.prelude_coda + (p.injection - adapter) + p.readout + p.norms;
    p.per_loop = p.core + adapter;
  }
  p.total = p.embedding + p.value_embeddings + p.prelude_coda + p.core + p.injection + p.readout +
            p.norms;
  return p;
}

int64_t attention_flops_per_layer(const ModelConfig& c) {
  return 4LL * c.n_heads * c.head_dim * c.context_length;
}

FlopLine flop_line(const ModelConfig& c, FlopConvention convention) {
  FlopLine line = flop_line(c);
  if (convention == FlopConvention::kPaper) {
    const ParameterCounts p = count_parameters(c);
    // The lookups W_E[ids] and VE[ids] leave 6N; the head, a V x d matmul tied to W_E, enters.
    line.c0 += 6 * (p.embedding - p.value_embeddings);
  }
  return line;
}

FlopLine flop_line(const ModelConfig& c) {
  const ParameterCounts p = count_parameters(c);
  const int64_t attn = attention_flops_per_layer(c);
  FlopLine line;
  if (c.family == Family::kTransformer) {
    line.c0 = 6 * (p.total - p.embedding) + 3LL * c.n_layers * attn;
    return line;
  }
  line.c0 = 6 * p.noncore + 3LL * (c.n_prelude + c.n_coda) * attn;
  line.c1 = 2 * p.per_loop + c.n_recurrent * attn;
  line.c2 = 2 * line.c1;
  return line;
}

int64_t train_flops_per_token(const ModelConfig& c) {
  return train_flops_per_token(c, FlopConvention::kReference);
}

int64_t train_flops_per_token(const ModelConfig& c, FlopConvention convention) {
  const FlopLine line = flop_line(c, convention);
  if (!c.is_looped())
    return line.c0;
  const bool fixed = c.depth_sampler == DepthSampler::kFixed;
  const int64_t mu_rec = fixed ? 1 : c.mean_recurrence;
  const int64_t mu_bwd = fixed ? 1 : c.mean_backward;
  return line.c0 + line.c1 * mu_rec + line.c2 * mu_bwd;
}

double train_flops_per_token_at(const ModelConfig& c,
                                double mean_recurrence,
                                double mean_backward,
                                FlopConvention convention) {
  const FlopLine line = flop_line(c, convention);
  return static_cast<double>(line.c0) + static_cast<double>(line.c1) * mean_recurrence +
         static_cast<double>(line.c2) * mean_backward;
}

int64_t eval_flops_per_token(const ModelConfig& c, int depth) {
  const FlopLine line = flop_line(c);
  // Forward is a third of 6N-style training; each loop's forward costs c1 (c2 = 2*c1 is backward).
  return line.c0 / 3 + (c.is_looped() ? line.c1 * depth : 0);
}

FlopLine model_flop_line(const ModelConfig& c) {
  const ParameterCounts p = count_parameters(c);
  const int64_t attn = attention_flops_per_layer(c);
  const int64_t d = c.d_model;
  FlopLine line;
  if (!c.is_looped()) {
    line.c0 =
        6 * (c.n_layers * block_matmul_parameters(c) + gates_in(c, 0, c.n_layers) + p.embedding) +
        3LL * c.n_layers * attn;
    return line;
  }
  const int64_t outside = (c.n_prelude + c.n_coda) * block_matmul_parameters(c) +
                          gates_in(c, 0, c.n_prelude) +
                          gates_in(c, c.n_prelude + c.n_recurrent, c.n_coda);
  const int64_t injection_matmul = c.injection == Injection::kDiagonal ? square(d) : 0;
  const int64_t adapter = c.injection == Injection::kLinear ? 2 * square(d) : 0;
  const int64_t core = c.n_recurrent * block_matmul_parameters(c) +
                       gates_in(c, c.n_prelude, c.n_recurrent) + adapter;
  line.c0 = 6 * (outside + injection_matmul + p.readout + p.embedding) +
            3LL * (c.n_prelude + c.n_coda) * attn;
  line.c1 = 2 * core + c.n_recurrent * attn;
  line.c2 = 4 * core + 2 * c.n_recurrent * attn;
  return line;
}

int64_t model_flops_per_token(const ModelConfig& c) {
  const FlopLine line = model_flop_line(c);
  const bool fixed = c.depth_sampler == DepthSampler::kFixed;
  const int64_t mu_rec = !c.is_looped() ? 0 : fixed ? 1 : c.mean_recurrence;
  const int64_t mu_bwd = !c.is_looped() ? 0 : fixed ? 1 : c.mean_backward;
  return line.c0 + line.c1 * mu_rec + line.c2 * mu_bwd;
}

double model_flops_per_token_at(const ModelConfig& c,
                                double mean_recurrence,
                                double mean_backward) {
  const FlopLine line = model_flop_line(c);
  return static_cast<double>(line.c0) + static_cast<double>(line.c1) * mean_recurrence +
         static_cast<double>(line.c2) * mean_backward;
}

double effective_parameters(const ModelConfig& c, double mean_recurrence) {
  const ParameterCounts p = count_parameters(c);
  return static_cast<double>(p.noncore) + mean_recurrence * static_cast<double>(p.per_loop);
}

int64_t tokens_for_budget(const ModelConfig& c, double budget_flops, FlopConvention convention) {
  if (!std::isfinite(budget_flops) || budget_flops <= 0) {
    throw InputError(
        "", "budget_flops", std::to_string(budget_flops), "expected a positive number");
  }
  const double tokens =
      std::floor(budget_flops / static_cast<double>(train_flops_per_token(c, convention)));
  if (!(tokens <= static_cast<double>(kMaxTrainTokens))) {
    throw InputError("",
                     "budget_flops",
                     fmt::format("{:g}", budget_flops),
                     fmt::format("expected at most {} = 2^53 training tokens, got D = C / F = {:g}",
                                 kMaxTrainTokens,
                                 tokens));
  }
  return static_cast<int64_t>(tokens);
}

nlohmann::json preset_training(const std::string& preset_name) {
  const size_t dash = preset_name.rfind('-');
  const auto size =
      dash == std::string::npos ? sizes().end() : sizes().find(preset_name.substr(dash + 1));
  bool variant_known = false;
  for (const auto& v : variant_names())
    variant_known =
        variant_known || (dash != std::string::npos && v == preset_name.substr(0, dash));
  nlohmann::json training = nlohmann::json::object();
  if (size != sizes().end() && variant_known && size->second.adamw_lr > 0)
    training["adamw_lr"] = size->second.adamw_lr;
  return training;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& variant : variant_names()) {
    for (const auto& [size, spec] : sizes())
      names.push_back(variant + "-" + size);
  }
  return names;
}

ModelConfig preset(const std::string& name) {
  const size_t dash = name.rfind('-');
  const std::string variant = dash == std::string::npos ? name : name.substr(0, dash);
  const std::string size = dash == std::string::npos ? "" : name.substr(dash + 1);
  const auto size_it = sizes().find(size);
  bool variant_known = false;
  for (const auto& v : variant_names())
    variant_known = variant_known || v == variant;
  if (size_it == sizes().end() || !variant_known) {
    throw InputError(
        "", "preset", "'" + name + "'", "unknown preset", suggestion_hint(name, preset_names()));
  }
  const SizeSpec& s = size_it->second;
  ModelConfig config;
  config.name = name;
  config.d_model = s.d_model;
  config.n_heads = s.n_heads;
  config.head_dim = s.head_dim;
  config.d_ff = 4 * s.d_model;
  config.vocab_size = s.vocab_size;
  config.context_length = s.context_length;
  config.n_prelude = config.n_coda = s.layers_per_stage;
  config.n_recurrent = s.n_recurrent;
  config.mean_recurrence = s.mean_recurrence;
  config.mean_backward = default_mean_backward(s.mean_recurrence);
  apply_variant(variant, config);
  return config;
}

ModelConfig model_config_from_json(const nlohmann::json& value,
                                   const std::string& file,
                                   const std::string& field) {
  if (value.is_string()) {
    try {
      return preset(value.get<std::string>());
    } catch (const InputError&) {
      throw InputError(file,
                       field,
                       value.dump(),
                       "unknown preset",
                       suggestion_hint(value.get<std::string>(), preset_names()));
    }
  }
  if (!value.is_object()) {
    throw InputError(file, field, value.dump(), "expected a preset name or an object");
  }
  ModelConfig config;
  if (value.contains("preset")) {
    const auto& name = value.at("preset");
    if (!name.is_string())
      throw InputError(file, field + ".preset", name.dump(), "expected a string");
    try {
      config = preset(name.get<std::string>());
    } catch (const InputError& e) {
      throw InputError(file,
                       field + ".preset",
                       name.dump(),
                       "unknown preset",
                       suggestion_hint(name.get<std::string>(), preset_names()));
    }
  }
  static const std::vector<std::string> kKeys = {
      "preset",        "name",           "family",           "injection",  "depth_granularity",
      "depth_sampler", "prelude_norm",   "n_layers",         "n_prelude",  "n_recurrent",
      "n_coda",        "d_model",        "n_heads",          "head_dim",   "d_ff",
      "vocab_size",    "context_length", "ve_gate_channels", "rope_theta", "mean_recurrence",
      "mean_backward"};
  for (const auto& [key, item] : value.items()) {
    const std::string at = field.empty() ? key : field + "." + key;
    bool known = false;
    for (const auto& k : kKeys)
      known = known || k == key;
    if (!known)
      throw InputError(file, at, item.dump(), "unknown field", suggestion_hint(key, kKeys));
  }
  auto get_int = [&](const char* key, int& out) {
    if (value.contains(key))
      out = int_from_json(value.at(key), file, field + "." + key);
  };
  if (value.contains("name")) {
    if (!value.at("name").is_string())
      throw InputError(file, field + ".name", value.at("name").dump(), "expected a string");
    config.name = value.at("name").get<std::string>();
  } else if (!value.contains("preset")) {
    config.name = "custom";
  }
  if (value.contains("family"))
    config.family = enum_from_json(kFamilyNames, value.at("family"), file, field + ".family");
  if (value.contains("injection"))
    config.injection =
        enum_from_json(kInjectionNames, value.at("injection"), file, field + ".injection");
  if (value.contains("depth_granularity"))
    config.depth_granularity = enum_from_json(
        kGranularityNames, value.at("depth_granularity"), file, field + ".depth_granularity");
  if (value.contains("depth_sampler"))
    config.depth_sampler =
        enum_from_json(kSamplerNames, value.at("depth_sampler"), file, field + ".depth_sampler");
  if (value.contains("prelude_norm")) {
    if (!value.at("prelude_norm").is_boolean())
      throw InputError(
          file, field + ".prelude_norm", value.at("prelude_norm").dump(), "expected true or false");
    config.prelude_norm = value.at("prelude_norm").get<bool>();
  }
  get_int("n_layers", config.n_layers);
  get_int("n_prelude", config.n_prelude);
  get_int("n_recurrent", config.n_recurrent);
  get_int("n_coda", config.n_coda);
  get_int("d_model", config.d_model);
  get_int("n_heads", config.n_heads);
  get_int("head_dim", config.head_dim);
  get_int("d_ff", config.d_ff);
  get_int("vocab_size", config.vocab_size);
  get_int("context_length", config.context_length);
  get_int("ve_gate_channels", config.ve_gate_channels);
  if (value.contains("rope_theta")) {
    if (!value.at("rope_theta").is_number())
      throw InputError(
          file, field + ".rope_theta", value.at("rope_theta").dump(), "expected a number");
    config.rope_theta = value.at("rope_theta").get<double>();
  }
  if (config.depth_sampler == DepthSampler::kFixed && config.is_looped()) {
    config.mean_recurrence = config.mean_backward = 1;
  }
  get_int("mean_recurrence", config.mean_recurrence);
  // A sweep that changes mu_rec alone gets the paper's mu_bwd = ceil(mu_rec / 2).
  config.mean_backward =
      value.contains("mean_backward")
          ? int_from_json(value.at("mean_backward"), file, field + ".mean_backward")
          : (value.contains("mean_recurrence") ? default_mean_backward(config.mean_recurrence)
                                               : config.mean_backward);
  if (!config.is_looped()) {
    // A fixed-depth model has no loop: keep its looped-only fields neutral so that equal models
    // have equal JSON (and so equal job ids).
    config.n_prelude = config.n_recurrent = config.n_coda = 0;
    config.mean_recurrence = config.mean_backward = 1;
    config.depth_sampler = DepthSampler::kFixed;
    config.prelude_norm = false;
    config.injection = Injection::kDiagonal;
    config.depth_granularity = DepthGranularity::kPerSequence;
  }
  const auto problems = config.validate();
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems)
      all += (all.empty() ? "" : "; ") + p;
    throw InputError(file, field, value.dump(), "invalid model: " + all);
  }
  return config;
}

nlohmann::json to_json(const ModelConfig& c) {
  nlohmann::json j = {{"name", c.name},
                      {"family", to_string(c.family)},
                      {"d_model", c.d_model},
                      {"n_heads", c.n_heads},
                      {"head_dim", c.head_dim},
                      {"d_ff", c.d_ff},
                      {"vocab_size", c.vocab_size},
                      {"context_length", c.context_length},
                      {"ve_gate_channels", c.ve_gate_channels},
                      {"rope_theta", c.rope_theta}};
  if (c.is_looped()) {
    j["injection"] = to_string(c.injection);
    j["depth_granularity"] = to_string(c.depth_granularity);
    j["depth_sampler"] = to_string(c.depth_sampler);
    j["prelude_norm"] = c.prelude_norm;
    j["n_prelude"] = c.n_prelude;
    j["n_recurrent"] = c.n_recurrent;
    j["n_coda"] = c.n_coda;
    j["mean_recurrence"] = c.mean_recurrence;
    j["mean_backward"] = c.mean_backward;
  } else {
    j["n_layers"] = c.n_layers;
  }
  return j;
}

std::string to_string(Family family) {
  return enum_to_string(kFamilyNames, family);
}
std::string to_string(Injection injection) {
  return enum_to_string(kInjectionNames, injection);
}
std::string to_string(DepthGranularity granularity) {
  return enum_to_string(kGranularityNames, granularity);
}
std::string to_string(DepthSampler sampler) {
  return enum_to_string(kSamplerNames, sampler);
}
std::string to_string(FlopConvention convention) {
  return enum_to_string(kConventionNames, convention);
}

FlopConvention flop_convention_from_json(const nlohmann::json& value,
                                         const std::string& file,
                                         const std::string& field) {
  return enum_from_json(kConventionNames, value, file, field);
}

}  // namespace parcae::sweeps
