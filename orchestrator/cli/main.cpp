// parcae-scale: plan sweeps, run them, store results, fit laws and draw plots. This file only
// maps the command line onto the libraries; every subcommand lives in its own *_command(s).cpp.
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "orchestrator/cli/cli_context.h"
#include "sweeps/error.h"

int main(int argc, char** argv) {
  CLI::App app{"parcae-scale: scaling-law studies of looped language models"};
  app.require_subcommand(1);
  // The shared flags work before and after the subcommand, as git's and kubectl's do: an option
  // a subcommand does not know falls through to its parent, and so up to these.
  app.fallthrough();
  app.set_version_flag("--version", std::string("parcae-scale ") + PARCAE_VERSION);
  parcae::cli::CliContext context;
  const char* env_db = std::getenv("PARCAE_DB");
  context.db_path = env_db != nullptr && *env_db != '\0' ? env_db : "parcae.sqlite";
  app.add_option("--db", context.db_path, "SQLite results database (env PARCAE_DB)");
  app.add_flag("--json", context.json, "print the result as one JSON document (docs/cli.md)");

  parcae::cli::add_model_commands(app, context);
  parcae::cli::add_sweep_commands(app, context);
  parcae::cli::add_export_commands(app, context);
  parcae::cli::add_data_commands(app, context);
  parcae::cli::add_fit_commands(app, context);
  parcae::cli::add_plot_commands(app, context);
  parcae::cli::add_report_commands(app, context);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 checks for the missing subcommand before it looks at the words it did not know, so
    // `parcae-scale --bogus` would be told only that a subcommand is required.
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && app.get_subcommands().empty() &&
        !app.remaining().empty()) {
      std::cerr << "parcae-scale: " << app.remaining().front()
                << ": unknown option or command; see parcae-scale --help\n";
      return 2;
    }
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return context.run ? context.run() : 2;
  } catch (const parcae::InputError& e) {
    std::cerr << "parcae-scale: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "parcae-scale: " << e.what() << "\n";
    return 1;
  }
}
