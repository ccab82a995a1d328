// `parcae-scale export SWEEP --table jobs|attempts|curve|evaluations|fits [--csv|--json]`: a
// table of one sweep for other tools, as CSV (the default; RFC 4180 quoting, empty for NULL, reals
// as the shortest text that reads back exactly) or as a JSON array of objects.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "orchestrator/cli/cli_context.h"
#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::cli {
namespace {

std::string csv_value(const nlohmann::json& value) {
  if (value.is_null())
    return "";
  // Numbers as the shortest text that reads back as the same value.
  if (!value.is_string())
    return value.dump();
  const std::string text = value.get<std::string>();
  if (text.find_first_of(",\"\n\r") == std::string::npos)
    return text;
  std::string out = "\"";
  for (char c : text)
    out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

void add_export_commands(CLI::App& app, CliContext& context) {
  struct Options {
    std::string sweep;
    std::string table = "jobs";
    bool csv = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("export", "A sweep's rows as CSV or JSON for other tools");
  cmd->add_option("sweep", o->sweep, "sweep name")->required();
  cmd->add_option("--table", o->table, "jobs, attempts, curve, evaluations or fits")
      ->check(CLI::IsMember({"jobs", "attempts", "curve", "evaluations", "fits"}))
      ->capture_default_str();
  auto* json = cmd->add_flag("--json", context.json, "a JSON array of objects");
  cmd->add_flag("--csv", o->csv, "CSV with a header line (the default)")->excludes(json);
  cmd->callback([o, &context] {
    context.run = [o, &context] {
      const results::Store store =
          results::Store::open(context.db_path, results::Store::Mode::kExisting);
      if (!store.find_sweep(o->sweep)) {
        throw InputError(context.db_path, "sweep", o->sweep, "no such sweep in the database");
      }
      const results::Table table = store.export_table(o->sweep, o->table);
      if (context.json) {
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& row : table.rows) {
          nlohmann::json object = nlohmann::json::object();
          for (size_t i = 0; i < table.columns.size(); ++i)
            object[table.columns[i]] = row[i];
          rows.push_back(object);
        }
        std::cout << rows.dump(2) << "\n";
        return 0;
      }
      for (size_t i = 0; i < table.columns.size(); ++i)
        std::cout << (i ? "," : "") << table.columns[i];
      std::cout << "\n";
      for (const auto& row : table.rows) {
        for (size_t i = 0; i < row.size(); ++i)
          std::cout << (i ? "," : "") << csv_value(row[i]);
        std::cout << "\n";
      }
      return 0;
    };
  });
}

}  // namespace parcae::cli
