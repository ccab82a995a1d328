// The ordered upgrade steps of the results schema, and the runner that applies them.
//
// To change the schema: edit schema.sql (the whole current schema), bump kSchemaVersion in
// results.h, add the step from the previous version here, add a line to the version list at the
// top of schema.sql, and freeze the new version with the golden dump test's regeneration flag
// (docs/schema.md). The golden test then proves that every earlier version upgrades to exactly the
// schema a fresh database gets.
#include "results/detail/migrations.h"

#include "results/results.h"
#include "sweeps/error.h"

namespace parcae::results::detail {

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> kSteps = {
      {1,
       "refinement rounds: jobs.round, refine_rounds",
       "ALTER TABLE jobs ADD COLUMN round INTEGER NOT NULL DEFAULT 0;\n"
       "CREATE TABLE refine_rounds (\n"
       "  sweep TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,\n"
       "  round INTEGER NOT NULL,\n"
       "  action TEXT NOT NULL CHECK (action IN ('refine', 'stop')),\n"
       "  reason TEXT NOT NULL,\n"
       "  exponent REAL,\n"
       "  exponent_ci_low REAL,\n"
       "  exponent_ci_high REAL,\n"
       "  cells INTEGER NOT NULL,\n"
       "  flops REAL NOT NULL,\n"
       "  decision TEXT NOT NULL,\n"
       "  created_at REAL NOT NULL,\n"
       "  PRIMARY KEY (sweep, round)\n"
       ") STRICT;\n"},
  };
  return kSteps;
}

namespace {

int user_version(const Connection& db) {
  return static_cast<int>(db.query_int("PRAGMA user_version").value_or(0));
}

}  // namespace

void create_schema(const Connection& db, const std::string& schema_sql, int version) {
  Transaction transaction(db);
  // Re-checked under the write lock: two processes may both have seen an empty file.
  if (db.query_int("SELECT count(*) FROM sqlite_master").value_or(0) > 0)
    return;
  db.exec(schema_sql);
  db.exec("PRAGMA application_id = " + std::to_string(kApplicationId));
  db.exec("PRAGMA user_version = " + std::to_string(version));
  transaction.commit();
}

void migrate(const Connection& db, const std::vector<Migration>& steps, int target) {
  while (true) {
    Transaction transaction(db);
    // Read under the write lock, so two processes upgrading at once apply each step once.
    const int version = user_version(db);
    if (version >= target)
      return;
    const Migration* step = nullptr;
    for (const auto& s : steps) {
      if (s.from_version == version)
        step = &s;
    }
    if (step == nullptr) {
      throw Error("results: no migration from schema version " + std::to_string(version) +
                  " towards " + std::to_string(target));
    }
    try {
      db.exec(step->sql);
      db.exec("PRAGMA user_version = " + std::to_string(version + 1));
      transaction.commit();
    } catch (const Error& e) {
      throw Error("results: migration " + std::to_string(version) + " -> " +
                  std::to_string(version + 1) + " (" + step->description + ") failed: " + e.what());
    }
  }
}

}  // namespace parcae::results::detail
