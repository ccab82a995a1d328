// The SQLite wrapper: error checking, connections, statements and transactions.
#include "results/detail/sqlite.h"

#include <string>
#include <utility>

#include "sweeps/error.h"

namespace parcae::results::detail {

namespace {

// The file of connection `db`, for messages; "" for none or an in-memory database.
std::string file_of(sqlite3* db) {
  const char* name = db != nullptr ? sqlite3_db_filename(db, "main") : nullptr;
  return name != nullptr ? name : "";
}

// Throws the error for SQLite's `rc` on `db`. What the user can fix (a damaged or foreign file,
// one they may not write, a full disk) names the database file and what to do.
[[noreturn]] void fail(int rc, sqlite3* db, const std::string& call, const std::string& message) {
  const std::string path = file_of(db);
  const std::string detail = call + ": " + message + " (code " + std::to_string(rc) + ")";
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      throw InputError(path, "--db", path, "is not a parcae-scale database", "SQLite: " + detail);
    case SQLITE_CORRUPT:
      throw InputError(path,
                       "--db",
                       path,
                       "is damaged (SQLite: " + detail + ")",
                       "restore it from a copy; sqlite3's .recover may save what is left");
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      throw InputError(path,
                       "--db",
                       path,
                       "cannot be written (SQLite: " + detail + ")",
                       "SQLite writes the file and its -wal and -shm files beside it: check the "
                       "permissions of the file and of its folder");
    case SQLITE_FULL:
      throw Error("sqlite: " + path + ": " + detail +
                  "; the disk that holds the database is full: the change was rolled back, so "
                  "free space and run the same command again");
    default:
      throw Error("sqlite: " + (path.empty() ? std::string() : path + ": ") + detail);
  }
}

}  // namespace

void check(int rc, sqlite3* db, const char* call) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
    return;
  fail(rc, db, call, db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

Connection::Connection(const std::string& path, int flags) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    if (rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY || rc == SQLITE_PERM) {
      throw InputError(path,
                       "--db",
                       path,
                       "cannot be opened (SQLite: " + message + ")",
                       "check that its folder exists and that you may read and write both");
    }
    throw Error("sqlite: open " + path + ": " + message + " (code " + std::to_string(rc) + ")");
  }
  sqlite3_extended_result_codes(db_, 0);
}

Connection::~Connection() {
  if (db_ != nullptr)
    sqlite3_close_v2(db_);
}

Connection::Connection(Connection&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr)
      sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

void Connection::exec(const std::string& sql) const {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    // The statement's start names what failed without dumping a whole schema into the message.
    std::string statement = sql.substr(0, sql.find('\n'));
    if (statement.size() > 60)
      statement = statement.substr(0, 60) + "...";
    fail(rc, db_, "exec '" + statement + "'", message);
  }
}

std::optional<int64_t> Connection::query_int(const std::string& sql) const {
  Statement s(*this, sql);
  if (!s.step())
    return std::nullopt;
  return s.get_optional_int(0);
}

std::optional<std::string> Connection::query_text(const std::string& sql) const {
  Statement s(*this, sql);
  if (!s.step())
    return std::nullopt;
  return s.get_optional_text(0);
}

Statement::Statement(const Connection& db, const std::string& sql) : db_(db.get()) {
  check(sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr),
        db_,
        "prepare");
}

Statement::~Statement() {
  if (stmt_ != nullptr)
    sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::bind(int index, int64_t value) {
  check(sqlite3_bind_int64(stmt_, index, value), db_, "bind");
  return *this;
}

Statement& Statement::bind(int index, double value) {
  check(sqlite3_bind_double(stmt_, index, value), db_, "bind");
  return *this;
}

Statement& Statement::bind(int index, const std::string& value) {
  check(sqlite3_bind_text(
            stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT),
        db_,
        "bind");
  return *this;
}

Statement& Statement::bind_null(int index) {
  check(sqlite3_bind_null(stmt_, index), db_, "bind");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  check(rc, db_, "step");
  return rc == SQLITE_ROW;
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string Statement::get_text(int i) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  return text != nullptr ? std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
                         : "";
}

std::optional<int64_t> Statement::get_optional_int(int i) const {
  if (is_null(i))
    return std::nullopt;
  return get_int(i);
}

std::optional<double> Statement::get_optional_double(int i) const {
  if (is_null(i))
    return std::nullopt;
  return get_double(i);
}

std::optional<std::string> Statement::get_optional_text(int i) const {
  if (is_null(i))
    return std::nullopt;
  return get_text(i);
}

Transaction::Transaction(const Connection& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  if (open_)
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace parcae::results::detail
