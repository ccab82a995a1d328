// `parcae-scale data prepare --text FILE... --out DIR`: text into token shards in llm.c's format
// (sweeps/token_shards.h), one BOS before every document, split into train and a held-out tail
// of whole documents, with the tokenizer recorded beside them (tokenizer.json, tokenizer.model).
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/cli_context.h"
#include "orchestrator/orchestrator.h"
#include "sweeps/token_shards.h"

namespace parcae::cli {

void add_data_commands(CLI::App& app, CliContext& context) {
  CLI::App* data = app.add_subcommand("data", "Training data: text to token shards");
  data->require_subcommand(1);
  struct PrepareOptions {
    std::vector<std::string> text_files;
    std::string out_dir;
    sweeps::TextPreparation preparation;
    std::string documents = sweeps::to_string(sweeps::TextPreparation().documents);
    std::string held_out = sweeps::to_string(sweeps::TextPreparation().held_out);
    sweeps::TokenizerOptions tokenizer;
  };
  auto o = std::make_shared<PrepareOptions>();
  CLI::App* prepare = data->add_subcommand(
      "prepare", "Tokenize text files into train/val shards of documents, each after a BOS");
  prepare->add_option("--text", o->text_files, "text files, read in order")
      ->required()
      ->check(CLI::ExistingFile);
  prepare->add_option("--out", o->out_dir, "folder for train_*.bin, val_*.bin, tokenizer.json")
      ->required();
  prepare->add_option("--val-fraction", o->preparation.val_fraction, "held-out share of the tokens")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  prepare->add_option("--shard-tokens", o->preparation.shard_tokens, "most tokens per shard")
      ->capture_default_str();
  prepare
      ->add_option("--documents",
                   o->documents,
                   "what one document is: a whole file, a line, or a paragraph (blank lines)")
      ->capture_default_str()
      ->check(CLI::IsMember({"file", "line", "paragraph"}));
  prepare
      ->add_option("--held-out",
                   o->held_out,
                   "which documents are held out: the last ones (tail), or ones drawn across the "
                   "text by a fixed permutation (sample)")
      ->capture_default_str()
      ->check(CLI::IsMember({"tail", "sample"}));
  prepare
      ->add_option("--tokenizer",
                   o->tokenizer.kind,
                   "bytes (vocabulary 256, BOS 2) or sentencepiece (BPE, byte fallback)")
      ->capture_default_str()
      ->check(CLI::IsMember({"bytes", "sentencepiece"}));
  prepare
      ->add_option("--vocab-size",
                   o->tokenizer.vocab_size,
                   "sentencepiece pieces to learn (the paper: 32768)")
      ->capture_default_str();
  prepare
      ->add_option("--tokenizer-model",
                   o->tokenizer.model,
                   "sentencepiece: load this .model instead of learning one")
      ->check(CLI::ExistingFile);
  prepare->add_flag("--json", context.json, "print one JSON document");
  prepare->callback([o, &context] {
    context.run = [o, &context] {
      o->preparation.documents =
          sweeps::document_split_from_string(o->documents, "(command line)", "--documents");
      o->preparation.held_out =
          sweeps::held_out_from_string(o->held_out, "(command line)", "--held-out");
      const std::unique_ptr<sweeps::TextTokenizer> tokenizer =
          orchestrator::make_tokenizer(o->tokenizer, o->text_files, "(command line)", "--");
      const sweeps::PreparedShards shards =
          sweeps::prepare_text_shards(o->text_files, o->out_dir, o->preparation, *tokenizer);
      if (context.json) {
        print_json(nlohmann::ordered_json{{"train_shards", shards.train_shards},
                                          {"val_shards", shards.val_shards},
                                          {"train_tokens", shards.train_tokens},
                                          {"val_tokens", shards.val_tokens},
                                          {"train_documents", shards.train_documents},
                                          {"val_documents", shards.val_documents},
                                          {"tokenizer", tokenizer->name()},
                                          {"vocab_size", shards.vocab_size},
                                          {"bos_token", shards.bos_token},
                                          {"tokenizer_info", shards.tokenizer_info}});
      } else {
        std::cout << fmt::format(
            "{} train tokens ({} documents) in {} shard(s), {} validation tokens ({} documents) "
            "in {} shard(s), in {}\n"
            "tokenizer {}: vocabulary {}, BOS {} (the sweep file's data.bos_token)\n",
            shards.train_tokens,
            shards.train_documents,
            shards.train_shards.size(),
            shards.val_tokens,
            shards.val_documents,
            shards.val_shards.size(),
            o->out_dir,
            tokenizer->name(),
            shards.vocab_size,
            shards.bos_token);
      }
      return 0;
    };
  });
}

}  // namespace parcae::cli
