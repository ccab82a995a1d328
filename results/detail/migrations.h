// Creating and upgrading the schema: the ordered migration steps and the runner that applies them,
// one version per transaction. The steps themselves live in results/migrations.cpp; this header
// exposes the runner so that tests can drive it with steps of their own.
#pragma once

#include <string>
#include <vector>

#include "results/detail/sqlite.h"

namespace parcae::results::detail {

// Upgrades a database from `from_version` to `from_version + 1`.
struct Migration {
  int from_version = 0;
  std::string description;  // one line, for docs/schema.md and error messages
  std::string sql;          // statements run inside the step's transaction
};

// The steps of this build, ordered by from_version, ending at kSchemaVersion.
const std::vector<Migration>& migrations();

// Runs schema.sql on an empty database and sets application_id and user_version, in one
// transaction. Does nothing when another process created the schema first.
void create_schema(const Connection& db, const std::string& schema_sql, int version);

// Applies `steps` from the database's user_version up to `target`, each step with its version bump
// in one transaction. A failing step rolls back to the version before it and throws
// parcae::Error naming the step. Throws when a needed step is missing.
void migrate(const Connection& db, const std::vector<Migration>& steps, int target);

}  // namespace parcae::results::detail
