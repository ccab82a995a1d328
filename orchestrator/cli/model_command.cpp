// `parcae-scale model describe|list`: a model's parameter counts and FLOPs per token.
#include <filesystem>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/cli_context.h"
#include "sweeps/error.h"
#include "sweeps/flop_model.h"
#include "sweeps/json_fields.h"

namespace parcae::cli {
namespace {

using sweeps::ModelConfig;

// A preset name, a JSON file, or inline JSON.
ModelConfig load_model(const std::string& spec) {
  if (!spec.empty() && spec.front() == '{') {
    return sweeps::model_config_from_json(
        sweeps::detail::parse_json_document(spec, "(inline)", /*allow_comments=*/false),
        "(inline)",
        "model");
  }
  std::error_code ec;
  if (std::filesystem::exists(spec, ec)) {
    const nlohmann::json value = sweeps::detail::read_json_file(spec, /*allow_comments=*/true);
    return sweeps::model_config_from_json(
        value.contains("model") ? value.at("model") : value, spec, "model");
  }
  return sweeps::preset(spec);
}

nlohmann::json describe(const ModelConfig& model, double budget_flops, int64_t batch_tokens) {
  const sweeps::ParameterCounts p = sweeps::count_parameters(model);
  const sweeps::FlopLine line = sweeps::flop_line(model);
  nlohmann::json j;
  j["model"] = sweeps::to_json(model);
  j["parameters"] = {{"total", p.total},
                     {"embedding", p.embedding},
                     {"value_embeddings", p.value_embeddings},
                     {"per_block", p.per_block},
                     {"prelude_coda", p.prelude_coda},
                     {"core", p.core},
                     {"injection", p.injection},
                     {"readout", p.readout},
                     {"norms", p.norms},
                     {"noncore", p.noncore},
                     {"per_loop", p.per_loop}};
  // The paper's rates where the model is a preset of a paper size (flop_model.h).
  j["training"] = sweeps::preset_training(model.name);
  j["flops_per_token"] = {{"train", sweeps::train_flops_per_token(model)},
                          {"train_paper_convention",
                           sweeps::train_flops_per_token(model, sweeps::FlopConvention::kPaper)},
                          {"c0", line.c0},
                          {"c1", line.c1},
                          {"c2", line.c2},
                          {"attention_per_layer", sweeps::attention_flops_per_layer(model)},
                          {"model_for_mfu", sweeps::model_flops_per_token(model)}};
  if (budget_flops > 0) {
    const int64_t tokens = sweeps::tokens_for_budget(model, budget_flops);
    const int64_t steps = tokens / batch_tokens;
    j["budget"] = {{"budget_flops", budget_flops},
                   {"tokens", tokens},
                   {"batch_tokens", batch_tokens},
                   {"steps", steps},
                   {"trained_tokens", steps * batch_tokens},
                   {"realised_flops",
                    static_cast<double>(steps * batch_tokens) *
                        static_cast<double>(sweeps::train_flops_per_token(model))}};
  }
  return j;
}

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

void print_table(const ModelConfig& model, const nlohmann::json& j) {
  const auto& p = j.at("parameters");
  const auto& f = j.at("flops_per_token");
  std::cout << fmt::format("{}  ({}", model.name, sweeps::to_string(model.family));
  if (model.is_looped()) {
    std::cout << fmt::format(", {} injection, L_P/L_R/L_C = {}/{}/{}, mu_rec = {}, mu_bwd = {}",
                             sweeps::to_string(model.injection),
                             model.n_prelude,
                             model.n_recurrent,
                             model.n_coda,
                             model.mean_recurrence,
                             model.mean_backward);
  } else {
    std::cout << fmt::format(", L = {}", model.n_layers);
  }
  std::cout << fmt::format(", d = {}, H = {}, V = {}, S = {})\n",
                           model.d_model,
                           model.n_heads,
                           model.vocab_size,
                           model.context_length);
  auto row = [](const char* label, int64_t value) {
    std::cout << fmt::format("  {:<34}{:>20}\n", label, grouped(value));
  };
  row("parameters, total", p.at("total"));
  row("  embedding W_E (tied head)", p.at("embedding"));
  row("  value-embedding tables", p.at("value_embeddings"));
  row("  prelude + coda blocks", p.at("prelude_coda"));
  row("  recurrent core N_core", p.at("core"));
  row("  injection", p.at("injection"));
  row("  readout C", p.at("readout"));
  row("  norms", p.at("norms"));
  row("N_noncore", p.at("noncore"));
  row("train FLOPs per token F", f.at("train"));
  row("  c0", f.at("c0"));
  row("  c1 (per mu_rec)", f.at("c1"));
  row("  c2 (per mu_bwd)", f.at("c2"));
  row("  under the paper's convention", f.at("train_paper_convention"));
  row("model FLOPs per token (MFU)", f.at("model_for_mfu"));
  for (const auto& [key, value] : j.at("training").items())
    std::cout << fmt::format("  {:<34}{:>20}\n", "preset training." + key, value.dump());
  if (j.contains("budget")) {
    const auto& b = j.at("budget");
    std::cout << fmt::format(
        "  {:<34}{:>20.4g}\n", "budget C (FLOPs)", b.at("budget_flops").get<double>());
    row("tokens D = floor(C / F)", b.at("tokens"));
    row("optimizer steps", b.at("steps"));
    std::cout << fmt::format(
        "  {:<34}{:>20.6g}\n", "realised C", b.at("realised_flops").get<double>());
  }
}

}  // namespace

void add_model_commands(CLI::App& app, CliContext& context) {
  CLI::App* model =
      app.add_subcommand("model", "Model presets, parameter counts and FLOPs per token");
  model->require_subcommand(1);

  struct DescribeOptions {
    std::string model;
    double budget_flops = 0.0;
    int64_t batch_tokens = 524288;
  };
  auto options = std::make_shared<DescribeOptions>();
  CLI::App* describe_cmd =
      model->add_subcommand("describe", "Counts and FLOPs of a preset or JSON model");
  describe_cmd->add_option("model", options->model, "preset name, JSON file or inline JSON")
      ->required();
  describe_cmd->add_option(
      "--flops", options->budget_flops, "FLOP budget C: also print D = floor(C / F)");
  describe_cmd->add_option("--batch-tokens", options->batch_tokens, "tokens per optimizer step")
      ->check(CLI::PositiveNumber);
  describe_cmd->add_flag("--json", context.json, "print one JSON document");
  describe_cmd->callback([options, &context] {
    context.run = [options, &context] {
      const ModelConfig config = load_model(options->model);
      const nlohmann::json j = describe(config, options->budget_flops, options->batch_tokens);
      if (context.json) {
        print_json(j);
      } else {
        print_table(config, j);
      }
      return 0;
    };
  });

  CLI::App* list_cmd = model->add_subcommand("list", "Names of the model presets");
  list_cmd->add_flag("--json", context.json, "print one JSON document");
  list_cmd->callback([&context] {
    context.run = [&context] {
      if (context.json) {
        nlohmann::ordered_json models = nlohmann::ordered_json::array();
        for (const auto& name : sweeps::preset_names()) {
          const ModelConfig config = sweeps::preset(name);
          models.push_back({{"model", name},
                            {"parameters_total", sweeps::count_parameters(config).total},
                            {"flops_per_token", sweeps::train_flops_per_token(config)}});
        }
        print_json(nlohmann::ordered_json{{"models", models}});
        return 0;
      }
      for (const auto& name : sweeps::preset_names()) {
        const ModelConfig config = sweeps::preset(name);
        std::cout << fmt::format("{:<32}{:>16} params{:>20} FLOP/token\n",
                                 name,
                                 grouped(sweeps::count_parameters(config).total),
                                 grouped(sweeps::train_flops_per_token(config)));
      }
      return 0;
    };
  });
}

}  // namespace parcae::cli
