// `SqlBackend`: the interface a SQL database implements (SQLite, PostgreSQL, or an embedder's).
//
// The SQL service parses and validates each request once; a backend receives one statement with
// typed parameters and returns the result already converted to JSON cells (SPEC §5.2 type
// mapping), so the service never needs to know a database's types. Database errors come back as
// SQL errors with the database's own message and code in `Error::fields` ("sqlstate" or
// "sqlite_code"): SQL_ERROR 400 (syntax, types, parameters), 409 (constraints, serialization),
// 503 (unreachable), 504 (statement timeout). All methods may be called concurrently from any I/O
// thread and never block it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mikcar/error.h"

namespace mikcar::sql {

template <typename T>
using Task = boost::asio::awaitable<Result<T>>;

// A statement parameter. Text and null are sent untyped, so the database infers the type from
// the statement ($1 into a uuid, date or timestamp column needs no cast).
struct Param {
  enum class Kind { kNull, kBool, kInt, kFloat, kText, kJson };
  Kind kind = Kind::kNull;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;  // kText: the string; kJson: serialized JSON (arrays and objects)
};

// One SQL statement ($1…$n placeholders) and its parameters.
struct Statement {
  std::string sql;
  std::vector<Param> params;
};

struct Column {
  std::string name;
  std::string type;  // the database's type name, e.g. "int4", "timestamptz", "integer"
};

struct ResultSet {
  std::vector<Column> columns;
  std::vector<std::vector<std::string>> rows;  // each cell as JSON text, in column order
  uint64_t rows_affected = 0;
  std::optional<int64_t> last_insert_id;  // SQLite
};

// Bounds of one request: the statement timeout, the HTTP deadline that no wait (for a connection,
// for the database) may pass, and whether it may write.
struct Limits {
  std::chrono::milliseconds statement_timeout{30'000};
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // The statement timeout was cut to end at `deadline`: a statement timeout is then the HTTP
  // deadline's (408), not the client's statement_timeout.
  bool deadline_first = false;
  // A read-only token's request (SPEC §2.4): Begin() starts a transaction in which every write
  // fails with FORBIDDEN, and that no statement can turn writable. Run() does not look at it.
  bool read_only = false;
};

// One connection inside BEGIN … COMMIT. Statements run in order; a failed statement leaves the
// transaction to be rolled back. Destroying it without Commit() rolls back and returns the
// connection.
class Transaction {
 public:
  virtual ~Transaction() = default;
  virtual Task<ResultSet> Run(Statement statement) = 0;
  virtual Task<void> Commit() = 0;
  virtual Task<void> Rollback() = 0;
};

class SqlBackend {
 public:
  virtual ~SqlBackend() = default;

  // Short name for logs and /health/ready, e.g. "postgres".
  virtual std::string name() const = 0;
  // The statement timeout of a request that gives no ?statement_timeout= (a backend URL may set
  // it, as postgres://...?statement_timeout=5s does).
  virtual std::chrono::milliseconds default_statement_timeout() const {
    return std::chrono::seconds(30);
  }
  // Runs exactly one statement (more than one → SQL_ERROR or BAD_REQUEST 400) in its own
  // implicit transaction.
  virtual Task<ResultSet> Run(Statement statement, Limits limits) = 0;
  // Takes a connection and begins a transaction on it.
  virtual Task<std::unique_ptr<Transaction>> Begin(Limits limits) = 0;
  // Readiness: success when the database answers.
  virtual Task<void> Ready() = 0;
  // Called once at shutdown, after the last request: close connections.
  virtual void Close() {}
};

}  // namespace mikcar::sql
