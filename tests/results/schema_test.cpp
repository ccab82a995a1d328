// The schema and its versions: a fresh database, the golden dump of every released version
// upgraded to today's schema, the migration runner, and the files Store::open must refuse without
// writing to them (a foreign SQLite file, a newer schema, a file that is not a database).
//
// Regenerating the golden dump of the current version (only when the schema changes, together
// with a version bump and a migration): PARCAE_REGENERATE_GOLDEN=1 ctest -R results_test
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "results/detail/migrations.h"
#include "results/detail/sqlite.h"
#include "results/results.h"
#include "sweeps/error.h"
#include "tests/support/scratch_dir.h"

namespace parcae::results {
namespace {

using test_support::ScratchDir;
using ::testing::HasSubstr;

std::string golden_path(int version) {
  return std::string(PARCAE_SOURCE_DIR) + "/tests/golden/schema_v" + std::to_string(version) +
         ".sql";
}

// Runs SQL on a file with the plain SQLite API, as another program would.
void raw_exec(const std::string& path, const std::string& sql) {
  detail::Connection db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec(sql);
}

// Everything about a database's structure that a query can see, as comparable text: the version
// pragmas, and per table its columns, foreign keys and indexes, per index its columns.
std::string structure(const std::string& path) {
  detail::Connection db(path, SQLITE_OPEN_READWRITE);
  std::ostringstream out;
  out << "application_id " << db.query_int("PRAGMA application_id").value_or(-1) << "\n";
  out << "user_version " << db.query_int("PRAGMA user_version").value_or(-1) << "\n";
  std::vector<std::string> tables;
  {
    detail::Statement s(
        db,
        "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY "
        "type, name");
    while (s.step())
      tables.push_back(s.get_text(1) + " " + s.get_text(0));
  }
  for (const auto& entry : tables) {
    out << entry << "\n";
    const std::string name = entry.substr(entry.find(' ') + 1);
    if (entry.rfind("table", 0) == 0) {
      for (const char* pragma : {"table_xinfo", "foreign_key_list", "index_list"}) {
        detail::Statement s(db, std::string("SELECT * FROM pragma_") + pragma + "('" + name + "')");
        while (s.step()) {
          out << "  " << pragma << ":";
          for (int i = 0; i < s.columns(); ++i)
            out << " " << s.column_name(i) << "=" << s.get_text(i);
          out << "\n";
        }
      }
      detail::Statement strict(db, "SELECT strict, wr FROM pragma_table_list WHERE name = ?1");
      strict.bind(1, name);
      if (strict.step())
        out << "  strict=" << strict.get_int(0) << " without_rowid=" << strict.get_int(1) << "\n";
    } else if (entry.rfind("index", 0) == 0) {
      detail::Statement s(db, "SELECT * FROM pragma_index_xinfo('" + name + "')");
      while (s.step()) {
        out << "  index_xinfo:";
        for (int i = 0; i < s.columns(); ++i)
          out << " " << s.get_text(i);
        out << "\n";
      }
    }
  }
  return out.str();
}

TEST(Schema, FreshDatabaseHasTheCurrentVersionOurApplicationIdAndWal) {
  const ScratchDir dir;
  const std::string path = dir.file("fresh.sqlite");
  {
    const Store store = Store::open(path);
    EXPECT_EQ(store.opened_version(), 0);
    EXPECT_EQ(store.integrity_check(), "ok");
  }
  detail::Connection db(path, SQLITE_OPEN_READWRITE);
  EXPECT_EQ(db.query_int("PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(db.query_int("PRAGMA application_id"), kApplicationId);
  EXPECT_EQ(db.query_text("PRAGMA journal_mode"), "wal");
  // Opening again changes nothing and reports the version it found.
  EXPECT_EQ(Store::open(path).opened_version(), kSchemaVersion);
}

TEST(Schema, GoldenDumpOfTheCurrentVersionEqualsAFreshDatabase) {
  const ScratchDir dir;
  const std::string dump = Store::open(dir.file("fresh.sqlite")).schema_dump();
  const char* regenerate = std::getenv("PARCAE_REGENERATE_GOLDEN");
  if (regenerate != nullptr && std::string(regenerate) == "1") {
    test_support::write_text(golden_path(kSchemaVersion), dump);
    std::cerr << "wrote " << golden_path(kSchemaVersion) << "\n";
  }
  ASSERT_TRUE(std::filesystem::exists(golden_path(kSchemaVersion)))
      << "every released schema version needs a golden dump";
  EXPECT_EQ(test_support::read_text(golden_path(kSchemaVersion)), dump)
      << "schema.sql changed without a new schema version; see results/migrations.cpp";
}

TEST(Schema, EveryGoldenVersionMigratesToTheFreshSchema) {
  const ScratchDir dir;
  const std::string fresh = dir.file("fresh.sqlite");
  Store::open(fresh);
  for (int version = 1; version <= kSchemaVersion; ++version) {
    SCOPED_TRACE("schema version " + std::to_string(version));
    ASSERT_TRUE(std::filesystem::exists(golden_path(version)));
    const std::string old = dir.file("v" + std::to_string(version) + ".sqlite");
    raw_exec(old, test_support::read_text(golden_path(version)));
    const Store store = Store::open(old);
    EXPECT_EQ(store.opened_version(), version);
    EXPECT_EQ(store.integrity_check(), "ok");
    EXPECT_EQ(structure(old), structure(fresh));
  }
}

TEST(Schema, EveryTableAndColumnHasAComment) {
  std::istringstream in(schema_sql());
  std::string line, previous;
  bool in_table = false;
  int tables = 0, columns = 0;
  const std::regex column(R"(^\s+([a-z_]+)\s+(TEXT|INTEGER|REAL|BLOB)\b.*)");
  while (std::getline(in, line)) {
    if (line.rfind("CREATE TABLE", 0) == 0) {
      ++tables;
      in_table = true;
      EXPECT_EQ(previous.rfind("--", 0), 0u) << "no comment above: " << line;
    } else if (in_table && line.rfind(")", 0) == 0) {
      in_table = false;
    } else if (in_table && std::regex_match(line, column)) {
      ++columns;
      EXPECT_NE(line.find("--"), std::string::npos) << "column without a comment: " << line;
    }
    previous = line;
  }
  EXPECT_EQ(tables, 8);
  EXPECT_GT(columns, 100);
}

TEST(Schema, ForeignSqliteFileIsRefusedAndLeftUnchanged) {
  const ScratchDir dir;
  const std::string path = dir.file("other.sqlite");
  raw_exec(path, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada');");
  const std::string before = test_support::read_text(path);
  try {
    Store::open(path);
    FAIL() << "a foreign database was opened";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("application_id"));
    EXPECT_THAT(e.what(), HasSubstr("not made by parcae-scale"));
  }
  EXPECT_EQ(test_support::read_text(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST(Schema, EmptyDatabaseOfAnotherApplicationIsRefused) {
  const ScratchDir dir;
  const std::string path = dir.file("other.sqlite");
  raw_exec(path, "PRAGMA application_id = 42;");
  const std::string before = test_support::read_text(path);
  EXPECT_THROW(Store::open(path), InputError);
  EXPECT_EQ(test_support::read_text(path), before);
}

TEST(Schema, NewerDatabaseIsRefusedNamingBothVersions) {
  const ScratchDir dir;
  const std::string path = dir.file("newer.sqlite");
  Store::open(path);
  raw_exec(path, "PRAGMA user_version = " + std::to_string(kSchemaVersion + 1) + ";");
  {
    // Fold the WAL into the main file so that the comparison below sees every byte.
    detail::Connection db(path, SQLITE_OPEN_READWRITE);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  const std::string before = test_support::read_text(path);
  try {
    Store::open(path);
    FAIL() << "a newer database was opened";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("schema version " + std::to_string(kSchemaVersion + 1)));
    EXPECT_THAT(e.what(), HasSubstr("this build's version " + std::to_string(kSchemaVersion)));
  }
  EXPECT_EQ(test_support::read_text(path), before);
}

TEST(Schema, FileThatIsNotADatabaseIsRefusedAndLeftUnchanged) {
  const ScratchDir dir;
  const std::string path = dir.file("notes.txt");
  test_support::write_text(path, std::string(4096, 'x'));
  try {
    Store::open(path);
    FAIL() << "a text file was opened as a database";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not a parcae-scale database"));
  }
  EXPECT_EQ(test_support::read_text(path), std::string(4096, 'x'));
}

TEST(Schema, MissingFileIsRefusedInExistingModeAndNotCreated) {
  const ScratchDir dir;
  const std::string path = dir.file("absent.sqlite");
  EXPECT_THROW(Store::open(path, Store::Mode::kExisting), InputError);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Migrations, EachStepCommitsAloneAndAFailingStepRollsBackToTheVersionBeforeIt) {
  const ScratchDir dir;
  const std::string path = dir.file("m.sqlite");
  detail::Connection db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("CREATE TABLE t (a INTEGER); PRAGMA user_version = 1;");
  const std::vector<detail::Migration> steps = {
      {1, "add t.b", "ALTER TABLE t ADD COLUMN b INTEGER;"},
      {2, "broken", "CREATE TABLE u (x INTEGER); INSERT INTO no_such_table VALUES (1);"},
  };
  try {
    detail::migrate(db, steps, 3);
    FAIL() << "a broken migration succeeded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("migration 2 -> 3 (broken) failed"));
  }
  EXPECT_EQ(db.query_int("PRAGMA user_version"), 2);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM pragma_table_info('t') WHERE name = 'b'"), 1);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM sqlite_master WHERE name = 'u'"), 0);
}

TEST(Migrations, MissingStepIsAnErrorAndChangesNothing) {
  const ScratchDir dir;
  detail::Connection db(dir.file("m.sqlite"), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  db.exec("CREATE TABLE t (a INTEGER); PRAGMA user_version = 1;");
  EXPECT_THROW(detail::migrate(db, {}, 2), Error);
  EXPECT_EQ(db.query_int("PRAGMA user_version"), 1);
}

TEST(Migrations, ThisBuildHasAStepFromEveryOlderVersion) {
  const auto& steps = detail::migrations();
  for (int version = 1; version < kSchemaVersion; ++version) {
    int found = 0;
    for (const auto& step : steps)
      found += step.from_version == version ? 1 : 0;
    EXPECT_EQ(found, 1) << "from version " << version;
  }
  for (const auto& step : steps)
    EXPECT_LT(step.from_version, kSchemaVersion);
}

}  // namespace
}  // namespace parcae::results
