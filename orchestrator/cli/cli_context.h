// What every parcae-scale subcommand shares: the database path and the output mode. Each
// subcommand file registers its commands on the CLI11 app with one add_*_commands() function.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace parcae::cli {

struct CliContext {
  std::string db_path;  // --db, else $PARCAE_DB, else parcae.sqlite
  bool json = false;    // --json: stdout carries one JSON document
  // Set by the chosen subcommand; returns the process exit code.
  std::function<int()> run;
};

void add_model_commands(CLI::App& app, CliContext& context);
void add_sweep_commands(CLI::App& app, CliContext& context);
void add_export_commands(CLI::App& app, CliContext& context);
void add_data_commands(CLI::App& app, CliContext& context);
void add_fit_commands(CLI::App& app, CliContext& context);
void add_plot_commands(CLI::App& app, CliContext& context);

}  // namespace parcae::cli
