// What every parcae-scale subcommand shares: the database path, the output mode, and the one
// shape of every --json document. Each subcommand file registers its commands on the CLI11 app
// with one add_*_commands() function.
#pragma once

#include <filesystem>
#include <functional>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace parcae::cli {

// The version of every --json document's shape (docs/cli.md lists them). Raised when a key is
// renamed or removed or changes meaning; adding a key keeps it.
inline constexpr int kJsonSchemaVersion = 1;

struct CliContext {
  std::string db_path;  // --db, else $PARCAE_DB, else parcae.sqlite
  bool json = false;    // --json: stdout carries one JSON document
  // Set by the chosen subcommand; returns the process exit code.
  std::function<int()> run;
};

// `body` (a JSON object) with "schema_version" first, as every --json document starts.
template <class Json>
nlohmann::ordered_json versioned(const Json& body) {
  nlohmann::ordered_json out = {{"schema_version", kJsonSchemaVersion}};
  for (auto it = body.begin(); it != body.end(); ++it)
    out[it.key()] = nlohmann::ordered_json(it.value());
  return out;
}

// Prints `body` as the command's one JSON document on stdout.
template <class Json>
void print_json(const Json& body) {
  std::cout << versioned(body).dump(2) << "\n";
}

// <folder of the database>/<kind>/<sweep>: where `plot` and `report` write when -o is not given,
// beside the runs/ folder of the same database.
inline std::string default_output_dir(const std::string& db_path,
                                      const std::string& kind,
                                      const std::string& sweep) {
  namespace fs = std::filesystem;
  return (fs::absolute(db_path).parent_path() / kind / sweep).lexically_normal().string();
}

void add_model_commands(CLI::App& app, CliContext& context);
void add_sweep_commands(CLI::App& app, CliContext& context);
void add_export_commands(CLI::App& app, CliContext& context);
void add_data_commands(CLI::App& app, CliContext& context);
void add_fit_commands(CLI::App& app, CliContext& context);
void add_plot_commands(CLI::App& app, CliContext& context);
void add_report_commands(CLI::App& app, CliContext& context);

}  // namespace parcae::cli
