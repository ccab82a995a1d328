// The corpus of malformed inputs under tests/malformed/, each fed to the real binaries. One
// JSON Lines file per kind of input (sweep files, command lines, job files, shards, CSVs, event
// lines, databases); each case names the exit code it must get and the texts its message must
// contain (the file, the field or row, the value). Every case must also leave the database and
// the input as they were, and must not crash or hang: a crash shows as an exit code above 128.
// tests/malformed/README.md describes the format.
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "tests/orchestrator/test_support.h"
#include "tests/support/scratch_dir.h"

namespace parcae {
namespace {

namespace fs = std::filesystem;
using test_support::CliResult;
using test_support::read_text;
using test_support::run_cli;
using test_support::ScratchDir;
using test_support::write_text;
using ::testing::HasSubstr;

const std::string kCorpus = std::string(PARCAE_SOURCE_DIR) + "/tests/malformed";

struct Case {
  std::string file;  // the corpus file, for failure messages
  int line = 0;
  nlohmann::json spec;
  std::string name() const {
    return file + ":" + std::to_string(line) + " (" + spec.value("name", std::string("?")) + ")";
  }
};

std::vector<Case> load_cases(const std::string& kind) {
  const std::string path = kCorpus + "/" + kind + ".jsonl";
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot read " + path);
  std::vector<Case> cases;
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.empty() || text[0] == '#')
      continue;
    cases.push_back({kind + ".jsonl", line, nlohmann::json::parse(text)});
  }
  return cases;
}

// Replaces every "{key}" in `text` with its value.
std::string expand(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values) {
    const std::string token = "{" + key + "}";
    for (size_t at = text.find(token); at != std::string::npos; at = text.find(token, at)) {
      text.replace(at, token.size(), value);
      at += value.size();
    }
  }
  return text;
}

std::vector<std::string> expand_all(const nlohmann::json& list,
                                    const std::map<std::string, std::string>& values) {
  std::vector<std::string> out;
  for (const auto& item : list)
    out.push_back(expand(item.get<std::string>(), values));
  return out;
}

// Sets (or with `remove`, deletes) the value at a dotted path ("budgets.0.flops").
void edit(nlohmann::json& document, const std::string& path, const nlohmann::json* value) {
  nlohmann::json* node = &document;
  std::string rest = path;
  while (true) {
    const size_t dot = rest.find('.');
    const std::string key = rest.substr(0, dot);
    const bool last = dot == std::string::npos;
    const bool index = !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
    if (last) {
      if (value == nullptr) {
        if (index)
          node->erase(static_cast<size_t>(std::stoul(key)));
        else
          node->erase(key);
      } else if (index) {
        (*node)[static_cast<size_t>(std::stoul(key))] = *value;
      } else {
        (*node)[key] = *value;
      }
      return;
    }
    node = index ? &(*node)[static_cast<size_t>(std::stoul(key))] : &(*node)[key];
    rest = rest.substr(dot + 1);
  }
}

// The file a case describes: "text" as given, or `base` with "set" and "remove" applied.
std::string materialize(const nlohmann::json& spec, const nlohmann::json& base) {
  if (spec.contains("text"))
    return spec.at("text").get<std::string>();
  if (spec.contains("nest")) {
    // {"name": ..., "training": [[[...]]]} nested `nest` levels deep.
    const auto depth = spec.at("nest").get<size_t>();
    return "{\"name\": \"deep\", \"training\": " + std::string(depth, '[') +
           std::string(depth, ']') + "}";
  }
  nlohmann::json document = base;
  if (spec.contains("set")) {
    for (const auto& [path, value] : spec.at("set").items())
      edit(document, path, &value);
  }
  if (spec.contains("remove")) {
    for (const auto& path : spec.at("remove"))
      edit(document, path.get<std::string>(), nullptr);
  }
  return document.dump(2);
}

// Every row of every table, in a stable order: equal dumps mean an unchanged database.
std::string dump_database(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return "(cannot open " + path + ")";
  }
  std::string out;
  auto each_row = [&](const std::string& sql, auto&& on_row) {
    sqlite3_stmt* statement = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr);
    while (statement != nullptr && sqlite3_step(statement) == SQLITE_ROW)
      on_row(statement);
    sqlite3_finalize(statement);
  };
  std::vector<std::string> tables;
  each_row("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", [&](auto* s) {
    tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  });
  for (const auto& table : tables) {
    out += "table " + table + "\n";
    // Sorted here: some tables have no rowid to order by.
    std::vector<std::string> rows;
    each_row("SELECT * FROM \"" + table + "\"", [&](auto* s) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const auto* text = sqlite3_column_text(s, i);
        row += text != nullptr ? reinterpret_cast<const char*>(text) : "NULL";
        row += "|";
      }
      rows.push_back(row + "\n");
    });
    std::sort(rows.begin(), rows.end());
    for (const auto& row : rows)
      out += row;
  }
  sqlite3_close(db);
  return out;
}

// The byte offset of the first page of `table` in the database at `path`.
int64_t first_page_offset(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  int64_t root = 0, page_size = 0;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(
      db, "SELECT rootpage FROM sqlite_master WHERE name = ?1", -1, &statement, nullptr);
  sqlite3_bind_text(statement, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(statement) == SQLITE_ROW)
    root = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &statement, nullptr);
  if (sqlite3_step(statement) == SQLITE_ROW)
    page_size = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  if (root < 1 || page_size < 1)
    throw std::runtime_error("no table " + table + " in " + path);
  return (root - 1) * page_size;
}

// Checks one run against its case: the exit code, and each expected text in stderr or stdout.
void check_result(const Case& c,
                  const CliResult& result,
                  const std::map<std::string, std::string>& values) {
  SCOPED_TRACE(c.name());
  const std::string all = result.err + result.out;
  EXPECT_EQ(result.exit_code, c.spec.at("exit").get<int>()) << all;
  EXPECT_LT(result.exit_code, 128) << "crashed: " << all;
  for (const auto& text : expand_all(c.spec.at("expect"), values))
    EXPECT_THAT(all, HasSubstr(text)) << "exit " << result.exit_code;
}

// A fixture with a planned sweep: a database, its run folders and fake data shards.
class MalformedInputs : public ::testing::Test {
 protected:
  void SetUp() override {
    sweep_ = test_support::write_sweep(dir_.path(), "base", {2, 4});
    const CliResult plan = run_cli({"--db", db_, "sweep", "plan", sweep_});
    ASSERT_EQ(plan.exit_code, 0) << plan.err;
    dump_ = dump_database(db_);
    write_text(dir_.file("a-file"), "not a folder\n");
    values_ = {{"dir", dir_.path()},
               {"db", db_},
               {"sweep", sweep_},
               {"a_file", dir_.file("a-file")},
               {"csv", csv_}};
    write_text(csv_,
               "budget_flops,mu_rec,loss_val\n1e18,1,3.1\n1e18,2,3.0\n1e18,4,3.05\n"
               "2e18,1,3.0\n2e18,2,2.9\n2e18,4,2.95\n");
  }

  // Runs every case of `kind`: writes its input (when it has one) to `input`, runs its args.
  void run_kind(const std::string& kind,
                const nlohmann::json& base,
                const std::string& extension,
                size_t at_least) {
    const std::vector<Case> cases = load_cases(kind);
    EXPECT_GE(cases.size(), at_least);
    for (const Case& c : cases) {
      std::map<std::string, std::string> values = values_;
      const std::string input =
          dir_.file("inputs/" + kind + "-" + std::to_string(c.line) + extension);
      values["file"] = input;
      const bool has_input = c.spec.contains("text") || c.spec.contains("set") ||
                             c.spec.contains("remove") || c.spec.contains("nest");
      if (has_input)
        write_text(input, expand(materialize(c.spec, base), values));
      const std::string before = has_input ? read_text(input) : "";
      std::vector<std::string> args = expand_all(c.spec.at("args"), values);
      // Cases for the trainer start with "{trainer}"; the others are parcae-scale's arguments.
      const bool trainer =
          values.count("trainer") > 0 && !args.empty() && args.front() == values.at("trainer");
      if (trainer)
        args.erase(args.begin());
      const CliResult result = trainer ? test_support::run_program(
                                             values.at("trainer"), args, {{"OMP_NUM_THREADS", "1"}})
                                       : run_cli(args);
      check_result(c, result, values);
      EXPECT_EQ(dump_database(db_), dump_) << c.name() << " changed the database";
      if (has_input) {
        EXPECT_EQ(read_text(input), before) << c.name() << " changed its input";
      }
    }
  }

  ScratchDir dir_;
  std::string db_ = dir_.file("db.sqlite");
  std::string csv_ = dir_.file("runs.csv");
  std::string sweep_;
  std::string dump_;
  std::map<std::string, std::string> values_;
};

TEST_F(MalformedInputs, SweepFilesExitTwoNamingFileFieldAndValue) {
  // The cases are written to another folder than the fixture's sweep: its data paths are made
  // absolute so that they still match.
  nlohmann::json base = nlohmann::json::parse(read_text(sweep_));
  base["data"] = {{"train", dir_.file("data/train_*.bin")}, {"val", dir_.file("data/val_*.bin")}};
  run_kind("sweep_files", base, ".json", 100);
}

TEST_F(MalformedInputs, CommandLinesExitTwoNamingTheFlagAndValue) {
  run_kind("command_lines", nlohmann::json::object(), ".txt", 25);
}

TEST_F(MalformedInputs, CsvFilesExitTwoNamingFileRowAndValue) {
  run_kind("csv_files", nlohmann::json::object(), ".csv", 15);
}

// Databases are the input here: each case makes a file (from SQL, text or a patched copy of the
// fixture's database) and runs a command on it, which must refuse it and leave it as it was.
TEST_F(MalformedInputs, DatabasesExitTwoNamingTheFileAndLeaveItUnchanged) {
  const std::vector<Case> cases = load_cases("databases");
  EXPECT_GE(cases.size(), 15u);
  // A copy of the fixture's database with its WAL folded in, so that its bytes are all in one file.
  {
    sqlite3* db = nullptr;
    sqlite3_open(db_.c_str(), &db);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  const std::string good = read_text(db_);
  for (const Case& c : cases) {
    std::map<std::string, std::string> values = values_;
    const std::string path = dir_.file("dbs/" + std::to_string(c.line) + ".sqlite");
    values["file"] = path;
    fs::create_directories(fs::path(path).parent_path());
    const nlohmann::json& make = c.spec.at("make");
    const std::string how = make.at("from").get<std::string>();
    if (how == "text") {
      write_text(path, make.at("text").get<std::string>());
    } else if (how == "folder") {
      fs::create_directories(path);
    } else if (how == "sql") {
      sqlite3* db = nullptr;
      sqlite3_open(path.c_str(), &db);
      char* error = nullptr;
      ASSERT_EQ(
          sqlite3_exec(db, make.at("sql").get<std::string>().c_str(), nullptr, nullptr, &error),
          SQLITE_OK)
          << c.name() << ": " << (error != nullptr ? error : "");
      sqlite3_close(db);
    } else if (how == "patch") {
      // The fixture's database with bytes overwritten at an offset (a negative one counts from
      // the end) or cut to a length.
      std::string bytes = good;
      if (make.contains("truncate"))
        bytes.resize(make.at("truncate").get<size_t>());
      if (make.contains("offset") || make.contains("table")) {
        int64_t offset = make.contains("table") ? first_page_offset(db_, make.at("table"))
                                                : make.at("offset").get<int64_t>();
        if (offset < 0)
          offset += static_cast<int64_t>(bytes.size());
        const std::string with = make.at("bytes").get<std::string>();
        bytes.replace(static_cast<size_t>(offset), with.size(), with);
      }
      write_text(path, bytes);
    } else {
      FAIL() << c.name() << ": unknown make.from " << how;
    }
    const bool is_file = fs::is_regular_file(path);
    const std::string before = is_file ? read_text(path) : "";
    const CliResult result = run_cli(expand_all(c.spec.at("args"), values));
    check_result(c, result, values);
    if (is_file) {
      EXPECT_EQ(read_text(path), before) << c.name() << " changed the database file";
    }
    EXPECT_FALSE(fs::exists(path + "-wal") && fs::file_size(path + "-wal") > 0)
        << c.name() << " wrote to the database";
  }
}

// Event lines are appended one case at a time to a job's events.jsonl and ingested by `sweep
// sync`: each must be reported as a skipped line naming the file, the line and the value, and
// must leave the rows already ingested (curve, evaluations) as they were.
TEST_F(MalformedInputs, EventLinesAreSkippedNamingFileLineAndValueAndChangeNoRow) {
  const std::vector<Case> cases = load_cases("event_lines");
  EXPECT_GE(cases.size(), 20u);
  const CliResult list = run_cli({"--db", db_, "export", "--table", "jobs", "--format", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const nlohmann::json jobs = nlohmann::json::parse(list.out);
  ASSERT_FALSE(jobs.empty());
  const std::string out_dir = jobs.at(0).at("out_dir").get<std::string>();
  const std::string events = out_dir + "/events.jsonl";
  std::string text =
      "{\"event\":\"step\",\"time\":1.5,\"step\":1,\"tokens\":4096,\"flops\":1e9,\"loss\":3.5}\n"
      "{\"event\":\"step\",\"time\":2.5,\"step\":2,\"tokens\":8192,\"flops\":2e9,\"loss\":3.25}\n"
      "{\"event\":\"eval\",\"time\":2.6,\"step\":2,\"depth\":1,\"tokens\":8192,\"loss\":3.4}\n";
  write_text(events, text);
  const CliResult first = run_cli({"--db", db_, "sweep", "sync", "base"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto rows = [&] {
    const std::string all = dump_database(db_);
    const size_t curve = all.find("table curve\n"), evaluations = all.find("table evaluations\n");
    return all.substr(curve, all.find("table ", curve + 1) - curve) +
           all.substr(evaluations, all.find("table ", evaluations + 1) - evaluations);
  };
  const std::string ingested = rows();
  ASSERT_THAT(ingested, HasSubstr("3.25"));
  int line = 3;
  for (const Case& c : cases) {
    text += c.spec.at("line").get<std::string>() + "\n";
    write_text(events, text);
    ++line;
    std::map<std::string, std::string> values = values_;
    values["file"] = events;
    values["line"] = std::to_string(line);
    const CliResult result = run_cli({"--db", db_, "sweep", "sync", "base"});
    check_result(c, result, values);
    EXPECT_EQ(rows(), ingested) << c.name() << " changed an ingested row";
  }
}

#ifdef PARCAE_TRAINER_PATH
// Job files and data shards go to the real trainer, which must refuse them before training.
class MalformedTrainerInputs : public MalformedInputs {
 protected:
  void SetUp() override {
    MalformedInputs::SetUp();
    // Real shards from a few lines of text, one document each, so that a good job file would
    // train. Every document starts with the byte tokenizer's BOS, 2.
    std::string text;
    for (int line = 0; line < 20; ++line)
      text += std::string(1000, 'a') + "\n";
    write_text(dir_.file("text.txt"), text);
    const CliResult data = run_cli({"data",
                                    "prepare",
                                    "--text",
                                    dir_.file("text.txt"),
                                    "--out",
                                    dir_.file("shards"),
                                    "--documents",
                                    "line",
                                    "--val-fraction",
                                    "0.5"});
    ASSERT_EQ(data.exit_code, 0) << data.err;
    const CliResult list = run_cli({"--db", db_, "export", "--table", "jobs", "--format", "json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    const std::string out_dir =
        nlohmann::json::parse(list.out).at(0).at("out_dir").get<std::string>();
    job_ = nlohmann::json::parse(read_text(out_dir + "/job.json"));
    job_["data"] = {{"train_shards", {dir_.file("shards/train_000000.bin")}},
                    {"val_shards", {dir_.file("shards/val_000000.bin")}}};
    job_["eval"]["val_sequences"] = 2;
    values_["trainer"] = PARCAE_TRAINER_PATH;
    values_["good_job"] = dir_.file("good-job.json");
  }

  nlohmann::json job_;
};

TEST_F(MalformedTrainerInputs, JobFilesExitTwoNamingFileFieldAndValue) {
  run_kind("job_files", job_, ".json", 40);
}

// Each shard case is a file of bytes built from a header and tokens, put in a job file in place
// of the validation shard.
TEST_F(MalformedTrainerInputs, ShardsExitTwoNamingFileFieldAndValue) {
  const std::vector<Case> cases = load_cases("shards");
  EXPECT_GE(cases.size(), 12u);
  for (const Case& c : cases) {
    std::map<std::string, std::string> values = values_;
    const std::string shard = dir_.file("bad-shards/" + std::to_string(c.line) + ".bin");
    values["file"] = shard;
    const nlohmann::json& make = c.spec.at("make");
    if (make.value("folder", false)) {
      fs::create_directories(shard);
    } else if (!make.value("missing", false)) {
      std::string bytes(1024, '\0');
      const auto header = make.value("header", std::vector<int64_t>{20240520, 1, 0});
      for (size_t i = 0; i < header.size() && i < 256; ++i) {
        const auto v = static_cast<int32_t>(header[i]);
        std::memcpy(&bytes[i * 4], &v, 4);
      }
      for (const auto& token : make.value("tokens", std::vector<int64_t>{})) {
        const auto v = static_cast<uint16_t>(token);
        bytes.append(reinterpret_cast<const char*>(&v), 2);
      }
      if (make.contains("size"))
        bytes.resize(make.at("size").get<size_t>());
      write_text(shard, bytes);
    }
    nlohmann::json job = job_;
    job["data"][make.value("train", false) ? "train_shards" : "val_shards"] = {shard};
    const std::string job_file = dir_.file("bad-shards/" + std::to_string(c.line) + ".json");
    write_text(job_file, job.dump(2));
    values["job"] = job_file;
    const CliResult result =
        test_support::run_program(PARCAE_TRAINER_PATH,
                                  {"--job", job_file, "--out", dir_.file("bad-shards/out")},
                                  {{"OMP_NUM_THREADS", "1"}});
    check_result(c, result, values);
  }
}
#endif

}  // namespace
}  // namespace parcae
