// `parcae-scale export --sweep NAME --table jobs|curves|evals|fits|attempts --format
// csv|jsonl|json`: one table of a sweep for other tools, as CSV (the default; text always quoted
// so that readers which honour quotes keep ids as text, numbers bare as the shortest text that
// reads back exactly, empty for NULL, JSON columns as JSON text), JSON Lines (one object per row)
// or one JSON array of objects, where JSON columns are objects. The sweep defaults to the
// database's only one. The older spellings still work: the sweep as a positional argument,
// `curve` and `evaluations` for the tables, `--csv` and `--json` for the formats.
#include <iostream>
#include <map>
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
  if (value.is_number() || value.is_boolean())
    return value.dump();
  // Text, and JSON objects or arrays as their JSON text, always quoted (RFC 4180).
  const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  std::string out = "\"";
  for (char c : text)
    out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The table names of the command line, and the store's name for each.
const std::map<std::string, std::string> kTables = {{"jobs", "jobs"},
                                                    {"curves", "curve"},
                                                    {"evals", "evaluations"},
                                                    {"fits", "fits"},
                                                    {"attempts", "attempts"},
                                                    {"curve", "curve"},
                                                    {"evaluations", "evaluations"}};

struct ExportOptions {
  std::string positional_sweep;
  std::string sweep;
  std::string table = "jobs";
  std::string format;  // empty: from --csv/--json, else csv
  bool csv = false;
};

int run_export(const ExportOptions& o, const CliContext& context) {
  if (!o.sweep.empty() && !o.positional_sweep.empty()) {
    throw InputError("", "--sweep", "(given twice)", "expected the sweep once, as --sweep NAME");
  }
  std::string format = o.format;
  if (format.empty())
    format = context.json ? "json" : "csv";
  else if ((context.json && format != "json") || (o.csv && format != "csv"))
    throw InputError("", "--format", format, "conflicts with --json or --csv");
  if (context.json && o.csv)
    throw InputError("", "--csv", "(with --json)", "expected one format");

  const results::Store store =
      results::Store::open(context.db_path, results::Store::Mode::kExisting);
  const std::string sweep = store.resolve_sweep(o.sweep.empty() ? o.positional_sweep : o.sweep);
  const results::Table table = store.export_table(sweep, kTables.at(o.table));
  auto object_of = [&](const std::vector<nlohmann::json>& row) {
    nlohmann::ordered_json object = nlohmann::ordered_json::object();
    for (size_t i = 0; i < table.columns.size(); ++i)
      object[table.columns[i]] = row[i];
    return object;
  };
  if (format == "json") {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& row : table.rows)
      rows.push_back(object_of(row));
    std::cout << rows.dump(2) << "\n";
    return 0;
  }
  if (format == "jsonl") {
    for (const auto& row : table.rows)
      std::cout << object_of(row).dump() << "\n";
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
}

}  // namespace

void add_export_commands(CLI::App& app, CliContext& context) {
  auto o = std::make_shared<ExportOptions>();
  CLI::App* cmd =
      app.add_subcommand("export", "A sweep's rows as CSV, JSON Lines or JSON for other tools");
  cmd->add_option("sweep", o->positional_sweep, "sweep name (the same as --sweep)");
  cmd->add_option("--sweep", o->sweep, "sweep name (default: the database's only sweep)");
  std::vector<std::string> names;
  for (const auto& [name, store_name] : kTables)
    names.push_back(name);
  cmd->add_option("--table",
                  o->table,
                  "jobs, curves (training loss per step), evals (loss per step and test-time "
                  "depth), fits or attempts; curve and evaluations are older names")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  cmd->add_option("--format", o->format, "csv (default), jsonl or json")
      ->check(CLI::IsMember({"csv", "jsonl", "json"}));
  cmd->add_flag("--json", context.json, "the same as --format json");
  cmd->add_flag("--csv", o->csv, "the same as --format csv");
  cmd->callback([o, &context] { context.run = [o, &context] { return run_export(*o, context); }; });
}

}  // namespace parcae::cli
