// `parcae-scale data prepare --text FILE... --out DIR`: any text into byte-level token shards in
// llm.c's format (sweeps/token_shards.h), split into train and a held-out tail for validation.
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/cli_context.h"
#include "sweeps/token_shards.h"

namespace parcae::cli {

void add_data_commands(CLI::App& app, CliContext& context) {
  CLI::App* data = app.add_subcommand("data", "Training data: text to token shards");
  data->require_subcommand(1);
  struct PrepareOptions {
    std::vector<std::string> text_files;
    std::string out_dir;
    double val_fraction = 0.1;
    int64_t shard_tokens = 100000000;
  };
  auto o = std::make_shared<PrepareOptions>();
  CLI::App* prepare =
      data->add_subcommand("prepare", "Byte-tokenize text files into train/val shards");
  prepare->add_option("--text", o->text_files, "text files, read in order")
      ->required()
      ->check(CLI::ExistingFile);
  prepare->add_option("--out", o->out_dir, "folder for train_*.bin and val_*.bin")->required();
  prepare->add_option("--val-fraction", o->val_fraction, "held-out tail of the tokens")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  prepare->add_option("--shard-tokens", o->shard_tokens, "most tokens per shard")
      ->capture_default_str();
  prepare->add_flag("--json", context.json, "print one JSON document");
  prepare->callback([o, &context] {
    context.run = [o, &context] {
      const sweeps::PreparedShards shards =
          sweeps::prepare_text_shards(o->text_files, o->out_dir, o->val_fraction, o->shard_tokens);
      if (context.json) {
        print_json(nlohmann::ordered_json{{"train_shards", shards.train_shards},
                                          {"val_shards", shards.val_shards},
                                          {"train_tokens", shards.train_tokens},
                                          {"val_tokens", shards.val_tokens}});
      } else {
        std::cout << fmt::format(
            "{} train tokens in {} shard(s), {} validation tokens in {} shard(s), in {}\n",
            shards.train_tokens,
            shards.train_shards.size(),
            shards.val_tokens,
            shards.val_shards.size(),
            o->out_dir);
      }
      return 0;
    };
  });
}

}  // namespace parcae::cli
