// A thin RAII layer over the SQLite C API: a connection, prepared statements with typed binds and
// reads, and transactions that roll back unless committed. Every SQLite return code passes through
// check(), which throws parcae::Error naming the call and SQLite's own message. Internal to
// results/; nothing outside this folder includes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <sqlite3.h>

namespace parcae::results::detail {

// Throws parcae::Error("sqlite: CALL: MESSAGE (code N)") unless rc is one of the `ok` codes.
void check(int rc, sqlite3* db, const char* call);

class Connection {
 public:
  // Opens `path` with SQLite's flags (SQLITE_OPEN_READWRITE, maybe SQLITE_OPEN_CREATE).
  Connection(const std::string& path, int flags);
  ~Connection();
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* get() const { return db_; }
  // Runs one or more statements without results.
  void exec(const std::string& sql) const;
  // The first column of the first row of `sql` as an integer or text (nullopt when no row).
  std::optional<int64_t> query_int(const std::string& sql) const;
  std::optional<std::string> query_text(const std::string& sql) const;
  int64_t changes() const { return sqlite3_changes64(db_); }

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement(const Connection& db, const std::string& sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;

  // Binds by 1-based index; returns *this so binds chain.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, const std::string& value);
  Statement& bind(int index, const char* value) { return bind(index, std::string(value)); }
  Statement& bind_null(int index);
  template <typename T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }

  // Steps once: true when a row is ready, false when done.
  bool step();
  // Steps to completion, expecting no rows.
  void run();
  // Clears the bindings and rewinds, for the next use of a cached statement.
  void reset();

  int columns() const { return sqlite3_column_count(stmt_); }
  std::string column_name(int i) const { return sqlite3_column_name(stmt_, i); }
  bool is_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  int type(int i) const { return sqlite3_column_type(stmt_, i); }
  int64_t get_int(int i) const { return sqlite3_column_int64(stmt_, i); }
  double get_double(int i) const { return sqlite3_column_double(stmt_, i); }
  std::string get_text(int i) const;
  std::optional<int64_t> get_optional_int(int i) const;
  std::optional<double> get_optional_double(int i) const;
  std::optional<std::string> get_optional_text(int i) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// BEGIN IMMEDIATE (takes the write lock up front, waiting up to the busy timeout, so two writers
// never deadlock on a lock upgrade) ... COMMIT; rolled back if destroyed uncommitted.
class Transaction {
 public:
  explicit Transaction(const Connection& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  const Connection& db_;
  bool open_ = true;
};

}  // namespace parcae::results::detail
