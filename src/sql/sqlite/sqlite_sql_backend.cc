#include "sql/sqlite/sqlite_sql_backend.h"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <charconv>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/blocking_pool.h"
#include "common/json.h"
#include "common/wait_list.h"
#include "sql/cells.h"

namespace mikcar::sql {
namespace {

using Clock = std::chrono::steady_clock;

// The name of an (extended) result code, e.g. "SQLITE_CONSTRAINT_UNIQUE".
std::string CodeName(int code) {
  switch (code) {
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_BUSY_SNAPSHOT:
      return "SQLITE_BUSY_SNAPSHOT";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_NOMEM:
      return "SQLITE_NOMEM";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_INTERRUPT:
      return "SQLITE_INTERRUPT";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_TOOBIG:
      return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT:
      return "SQLITE_CONSTRAINT";
    case SQLITE_CONSTRAINT_CHECK:
      return "SQLITE_CONSTRAINT_CHECK";
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return "SQLITE_CONSTRAINT_FOREIGNKEY";
    case SQLITE_CONSTRAINT_NOTNULL:
      return "SQLITE_CONSTRAINT_NOTNULL";
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return "SQLITE_CONSTRAINT_PRIMARYKEY";
    case SQLITE_CONSTRAINT_UNIQUE:
      return "SQLITE_CONSTRAINT_UNIQUE";
    case SQLITE_CONSTRAINT_TRIGGER:
      return "SQLITE_CONSTRAINT_TRIGGER";
    case SQLITE_MISMATCH:
      return "SQLITE_MISMATCH";
    case SQLITE_RANGE:
      return "SQLITE_RANGE";
    case SQLITE_AUTH:
      return "SQLITE_AUTH";
    default:
      return "SQLITE_" + std::to_string(code);
  }
}

Error SqliteError(int code, std::string message) {
  ErrorCode status = ErrorCode::kSqlError;
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      status = ErrorCode::kSqlConflict;
      break;
    case SQLITE_AUTH:  // only Authorize() denies
      status = ErrorCode::kForbidden;
      message =
          "not authorized: no statement may set PRAGMA query_only, and a read-only token's may "
          "set no PRAGMA and ATTACH or DETACH no database";
      break;
    case SQLITE_INTERRUPT:
      status = ErrorCode::kSqlTimeout;
      message = "statement timeout: " + message;
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
      status = ErrorCode::kSqlUnavailable;
      break;
    default:
      break;
  }
  return Error{status, std::move(message), {{"sqlite_code", JsonQuote(CodeName(code))}}};
}

Error ConnectionError(sqlite3* db, int rc) {
  return SqliteError(sqlite3_extended_errcode(db) ? sqlite3_extended_errcode(db) : rc,
                     sqlite3_errmsg(db));
}

// True if `tail` holds nothing but whitespace, ';' and comments.
bool OnlyTrivia(std::string_view tail) {
  for (size_t i = 0; i < tail.size();) {
    char c = tail[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';') {
      ++i;
    } else if (tail.substr(i, 2) == "--") {
      size_t end = tail.find('\n', i);
      i = end == std::string_view::npos ? tail.size() : end + 1;
    } else if (tail.substr(i, 2) == "/*") {
      size_t end = tail.find("*/", i + 2);
      i = end == std::string_view::npos ? tail.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

struct Connection {
  // Prepared statements kept per connection, by SQL text.
  static constexpr size_t kMaxStatements = 64;

  sqlite3* db = nullptr;
  Clock::time_point deadline;  // read by the progress handler
  // In a read-only token's transaction (PRAGMA query_only is on): only statements that write
  // nothing may run.
  bool read_only = false;
  bool setting_query_only = false;  // mikcar itself is changing PRAGMA query_only
  // Statements that ran before, compiled once and reset after every use. SQLite recompiles one
  // by itself when the schema changes.
  std::unordered_map<std::string, sqlite3_stmt*> statements;

  ~Connection() {
    for (auto& [sql, stmt] : statements) sqlite3_finalize(stmt);
    sqlite3_close_v2(db);
  }
};

// A statement in use: reset (and kept) if cached, finalized otherwise.
class StatementUse {
 public:
  StatementUse(sqlite3_stmt* stmt, bool cached) : stmt_(stmt), cached_(cached) {}
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  ~StatementUse() {
    if (!cached_) {
      sqlite3_finalize(stmt_);
    } else {
      sqlite3_reset(stmt_);  // ends its read of the database
      sqlite3_clear_bindings(stmt_);
    }
  }
  sqlite3_stmt* get() const { return stmt_; }
  void Keep() { cached_ = true; }  // now owned by the connection's statements

 private:
  sqlite3_stmt* stmt_;
  bool cached_;
};

// What statements may do, checked as they are prepared. No statement sets PRAGMA query_only:
// mikcar sets it for read-only tokens. In a read-only transaction no statement sets any PRAGMA
// either (SQLite applies many while preparing, and they outlast the transaction), and none
// attaches or detaches a database (ATTACH may create a file, and outlasts a rollback).
int Authorize(void* arg, int action, const char* name, const char* value, const char*,
              const char*) {
  const auto* conn = static_cast<const Connection*>(arg);
  if (conn->setting_query_only) return SQLITE_OK;
  if (action == SQLITE_PRAGMA && value != nullptr &&
      (conn->read_only || sqlite3_stricmp(name, "query_only") == 0)) {
    return SQLITE_DENY;
  }
  if (conn->read_only && (action == SQLITE_ATTACH || action == SQLITE_DETACH)) return SQLITE_DENY;
  return SQLITE_OK;
}

// Turns the connection read-only for a read-only token's transaction, or back.
void SetReadOnly(Connection& conn, bool on) {
  conn.setting_query_only = true;
  sqlite3_exec(conn.db, on ? "PRAGMA query_only=1" : "PRAGMA query_only=0", nullptr, nullptr,
               nullptr);
  conn.setting_query_only = false;
  conn.read_only = on;
}

int OnProgress(void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  return Clock::now() > conn->deadline ? 1 : 0;
}

std::string Cell(sqlite3_stmt* stmt, int column) {
  switch (sqlite3_column_type(stmt, column)) {
    case SQLITE_INTEGER:
      return IntegerCell(sqlite3_column_int64(stmt, column));
    case SQLITE_FLOAT:
      return RealCell(sqlite3_column_double(stmt, column));
    case SQLITE_TEXT:
      return JsonQuote(
          std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(stmt, column)),
                           static_cast<size_t>(sqlite3_column_bytes(stmt, column))));
    case SQLITE_BLOB: {
      const void* data = sqlite3_column_blob(stmt, column);
      size_t n = static_cast<size_t>(sqlite3_column_bytes(stmt, column));
      return BytesCell(std::string_view(static_cast<const char*>(data), data ? n : 0));
    }
    default:
      return "null";
  }
}

std::string StorageClass(int type) {
  switch (type) {
    case SQLITE_INTEGER:
      return "integer";
    case SQLITE_FLOAT:
      return "real";
    case SQLITE_TEXT:
      return "text";
    case SQLITE_BLOB:
      return "blob";
    default:
      return "null";
  }
}

// Waiting for another writer's lock ends at `deadline`.
void SetBusyTimeout(Connection& conn, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  sqlite3_busy_timeout(conn.db, static_cast<int>(std::clamp<int64_t>(left.count(), 1, 30'000)));
}

// Runs one statement on `conn` (on a pool thread).
Result<ResultSet> Execute(Connection& conn, const Statement& statement,
                          Clock::time_point deadline) {
  sqlite3* db = conn.db;
  conn.deadline = deadline;
  SetBusyTimeout(conn, deadline);
  // A read-only transaction prepares every statement afresh, so that Authorize() sees it.
  auto cached = conn.read_only ? conn.statements.end() : conn.statements.find(statement.sql);
  std::optional<StatementUse> use;
  int rc = SQLITE_OK;
  if (cached != conn.statements.end()) {
    use.emplace(cached->second, true);
  } else {
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    rc = sqlite3_prepare_v3(db, statement.sql.data(), static_cast<int>(statement.sql.size()),
                            SQLITE_PREPARE_PERSISTENT, &raw, &tail);
    use.emplace(raw, false);
    if (rc != SQLITE_OK) return Fail(ConnectionError(db, rc));
    if (!raw) return ResultSet{};  // only whitespace or comments
    std::string_view rest(tail, statement.sql.data() + statement.sql.size() - tail);
    if (!OnlyTrivia(rest)) {
      return Fail(
          Error{ErrorCode::kSqlError,
                "more than one statement; expected exactly one (use /sql/batch for several)",
                {{"sqlite_code", "\"SQLITE_ERROR\""}}});
    }
    if (!conn.read_only) {
      if (conn.statements.size() >= Connection::kMaxStatements) {
        sqlite3_finalize(conn.statements.begin()->second);
        conn.statements.erase(conn.statements.begin());
      }
      conn.statements.emplace(statement.sql, raw);
      use->Keep();
    }
  }
  StatementUse& stmt = *use;
  if (conn.read_only && !sqlite3_stmt_readonly(stmt.get())) {
    return Fail(Error{ErrorCode::kForbidden,
                      "the token is read-only and the statement writes to the database",
                      {{"sqlite_code", "\"SQLITE_READONLY\""}}});
  }
  ResultSet result;
  // $n, ?NNN and ? placeholders; the number of parameters is the highest index used.
  const int count = sqlite3_bind_parameter_count(stmt.get());
  if (static_cast<size_t>(count) != statement.params.size()) {
    return Fail(Error{ErrorCode::kSqlError,
                      "the statement has " + std::to_string(count) + " parameter(s); got " +
                          std::to_string(statement.params.size()),
                      {{"sqlite_code", "\"SQLITE_RANGE\""}}});
  }
  for (int i = 1; i <= count; ++i) {
    // SQLite numbers "$n" parameters in order of first appearance: bind by the n in the name.
    size_t index = static_cast<size_t>(i - 1);
    if (const char* name = sqlite3_bind_parameter_name(stmt.get(), i)) {
      std::string_view n(name);
      size_t number = 0;
      auto [ptr, ec] = std::from_chars(n.data() + 1, n.data() + n.size(), number);
      if ((n[0] != '$' && n[0] != '?') || ec != std::errc() || ptr != n.data() + n.size() ||
          number < 1 || number > statement.params.size()) {
        return Fail(Error{ErrorCode::kSqlError,
                          "unsupported placeholder '" + std::string(n) + "'; expected $1…$" +
                              std::to_string(statement.params.size()) + " or ?",
                          {{"sqlite_code", "\"SQLITE_RANGE\""}}});
      }
      index = number - 1;
    }
    const Param& p = statement.params[index];
    switch (p.kind) {
      case Param::Kind::kNull:
        rc = sqlite3_bind_null(stmt.get(), i);
        break;
      case Param::Kind::kBool:
        rc = sqlite3_bind_int(stmt.get(), i, p.boolean ? 1 : 0);
        break;
      case Param::Kind::kInt:
        rc = sqlite3_bind_int64(stmt.get(), i, p.integer);
        break;
      case Param::Kind::kFloat:
        rc = sqlite3_bind_double(stmt.get(), i, p.real);
        break;
      case Param::Kind::kText:
      case Param::Kind::kJson:
        rc = sqlite3_bind_text64(stmt.get(), i, p.text.data(), p.text.size(), SQLITE_TRANSIENT,
                                 SQLITE_UTF8);
        break;
    }
    if (rc != SQLITE_OK) return Fail(ConnectionError(db, rc));
  }
  const int64_t changes_before = sqlite3_total_changes64(db);
  const int64_t rowid_before = sqlite3_last_insert_rowid(db);
  int columns = -1;
  for (;;) {
    rc = sqlite3_step(stmt.get());
    if (columns < 0) {
      // Only now: the first step recompiles a kept statement whose tables changed shape.
      columns = sqlite3_column_count(stmt.get());
      for (int c = 0; c < columns; ++c) {
        const char* decl = sqlite3_column_decltype(stmt.get(), c);
        std::string type = decl ? decl : "";
        for (char& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        result.columns.push_back({sqlite3_column_name(stmt.get(), c), std::move(type)});
      }
    }
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return Fail(ConnectionError(db, rc));
    std::vector<std::string> row;
    row.reserve(static_cast<size_t>(columns));
    for (int c = 0; c < columns; ++c) {
      if (result.columns[c].type.empty() && result.rows.empty())
        result.columns[c].type = StorageClass(sqlite3_column_type(stmt.get(), c));
      row.push_back(Cell(stmt.get(), c));
    }
    result.rows.push_back(std::move(row));
  }
  // sqlite3_changes64() keeps the last DML's count across DDL: count this statement's own.
  result.rows_affected = static_cast<uint64_t>(sqlite3_total_changes64(db) - changes_before);
  if (sqlite3_last_insert_rowid(db) != rowid_before)
    result.last_insert_id = sqlite3_last_insert_rowid(db);
  return result;
}

class SqliteSqlBackend;

// The connections, each used by one job (or one transaction) at a time. Waiting for one is
// asynchronous: only a coroutine holding a connection ever occupies a worker thread, and there are
// as many threads as connections, so a transaction that holds the write lock always finds a
// thread for its next statement.
class ConnectionPool {
 public:
  void Add(std::shared_ptr<Connection> conn) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(conn));
  }
  boost::asio::awaitable<Result<std::shared_ptr<Connection>>> Acquire(Clock::time_point deadline) {
    auto try_now = [this]() -> std::optional<std::shared_ptr<Connection>> {
      if (idle_.empty()) return std::nullopt;
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    };
    Error timeout{
        ErrorCode::kSqlUnavailable, "no free SQLite connection before the request deadline", {}};
    co_return co_await waiters_.Wait(mu_, deadline, std::move(try_now), std::move(timeout));
  }
  void Release(std::shared_ptr<Connection> conn) {
    std::lock_guard lock(mu_);
    if (!waiters_.Offer(conn)) idle_.push_back(std::move(conn));
  }

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Connection>> idle_;
  WaitList<std::shared_ptr<Connection>> waiters_;
};

class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(std::shared_ptr<ConnectionPool> connections, BlockingPool& pool,
                    std::shared_ptr<Connection> conn, Clock::time_point deadline)
      : connections_(std::move(connections)),
        pool_(pool),
        conn_(std::move(conn)),
        deadline_(deadline) {}
  ~SqliteTransaction() override {
    if (!conn_) return;
    // Neither committed nor rolled back: roll back on a pool thread, then return the connection.
    pool_.Detach([connections = connections_, conn = conn_] {
      sqlite3_exec(conn->db, "ROLLBACK", nullptr, nullptr, nullptr);
      if (conn->read_only) SetReadOnly(*conn, false);
      connections->Release(conn);
    });
  }

  Task<ResultSet> Run(Statement statement) override {
    if (!conn_) co_return Fail(ErrorCode::kInternal, "transaction already finished");
    auto job = [conn = conn_, statement = std::move(statement),
                deadline = deadline_]() -> Result<ResultSet> {
      auto result = Execute(*conn, statement, deadline);
      if (result && sqlite3_get_autocommit(conn->db)) {
        return Fail(Error{ErrorCode::kSqlError,
                          "COMMIT, ROLLBACK and BEGIN are not allowed inside a batch or script "
                          "(mikcar ends the transaction)",
                          {{"sqlite_code", "\"SQLITE_ERROR\""}}});
      }
      return result;
    };
    co_return co_await pool_.Run(std::move(job));
  }
  Task<void> Commit() override { co_return co_await Finish("COMMIT"); }
  Task<void> Rollback() override { co_return co_await Finish("ROLLBACK"); }

 private:
  Task<void> Finish(const char* sql) {
    if (!conn_) co_return Fail(ErrorCode::kInternal, "transaction already finished");
    auto job = [connections = connections_, conn = std::exchange(conn_, nullptr),
                sql]() -> Result<void> {
      int rc = sqlite3_exec(conn->db, sql, nullptr, nullptr, nullptr);
      Result<void> outcome;
      if (rc != SQLITE_OK) {
        outcome = Fail(ConnectionError(conn->db, rc));
        sqlite3_exec(conn->db, "ROLLBACK", nullptr, nullptr, nullptr);
      }
      if (conn->read_only) SetReadOnly(*conn, false);
      connections->Release(conn);
      return outcome;
    };
    co_return co_await pool_.Run(std::move(job));
  }

  std::shared_ptr<ConnectionPool> connections_;
  BlockingPool& pool_;
  std::shared_ptr<Connection> conn_;
  Clock::time_point deadline_;
};

class SqliteSqlBackend final : public SqlBackend {
 public:
  SqliteSqlBackend(std::shared_ptr<ConnectionPool> connections, unsigned threads)
      : connections_(std::move(connections)), pool_(threads, 4096) {}

  std::string name() const override { return "sqlite"; }

  Task<ResultSet> Run(Statement statement, Limits limits) override {
    auto conn = co_await connections_->Acquire(limits.deadline);
    if (!conn) co_return Fail(conn.error());
    auto job = [conn = *conn, statement = std::move(statement), limits]() -> Result<ResultSet> {
      auto result = Execute(*conn, statement, StatementDeadline(limits));
      if (!sqlite3_get_autocommit(conn->db)) {
        // BEGIN (or SAVEPOINT) outside /sql/batch: a pooled connection must not stay in it.
        sqlite3_exec(conn->db, "ROLLBACK", nullptr, nullptr, nullptr);
        return Fail(Error{ErrorCode::kSqlError,
                          "transaction control is only available through /sql/batch (each "
                          "request runs in a transaction of its own)",
                          {{"sqlite_code", "\"SQLITE_ERROR\""}}});
      }
      return result;
    };
    auto result = co_await pool_.Run(std::move(job));
    connections_->Release(std::move(*conn));
    co_return result;
  }

  Task<std::unique_ptr<Transaction>> Begin(Limits limits) override {
    auto conn = co_await connections_->Acquire(limits.deadline);
    if (!conn) co_return Fail(conn.error());
    auto job = [conn = *conn, limits]() -> Result<void> {
      conn->deadline = StatementDeadline(limits);
      SetBusyTimeout(*conn, limits.deadline);
      // IMMEDIATE takes the write lock now (waiting up to the busy timeout), so a transaction
      // never fails later for want of upgrading a read lock. A read-only one never writes.
      int rc = sqlite3_exec(conn->db, limits.read_only ? "BEGIN" : "BEGIN IMMEDIATE", nullptr,
                            nullptr, nullptr);
      if (rc != SQLITE_OK) return Fail(ConnectionError(conn->db, rc));
      if (limits.read_only) SetReadOnly(*conn, true);
      return {};
    };
    auto begun = co_await pool_.Run(std::move(job));
    if (!begun) {
      connections_->Release(std::move(*conn));
      co_return Fail(begun.error());
    }
    co_return std::unique_ptr<Transaction>(std::make_unique<SqliteTransaction>(
        connections_, pool_, std::move(*conn), StatementDeadline(limits)));
  }

  Task<void> Ready() override {
    Statement ping{"SELECT 1", {}};
    Limits limits;
    limits.deadline = Clock::now() + std::chrono::seconds(2);
    auto result = co_await Run(std::move(ping), limits);
    if (!result) co_return Fail(result.error());
    co_return Result<void>{};
  }

  void Close() override { pool_.Stop(); }

 private:
  // The statement timeout counted from now, never past the request deadline.
  static Clock::time_point StatementDeadline(const Limits& limits) {
    return std::min(limits.deadline, Clock::now() + limits.statement_timeout);
  }

  std::shared_ptr<ConnectionPool> connections_;
  BlockingPool pool_;
};

}  // namespace

Result<std::unique_ptr<SqlBackend>> OpenSqliteSqlBackend(const Uri& uri) {
  // sqlite:///abs/path, sqlite://relative/path, sqlite::memory:
  std::string path = uri.host + uri.path;
  const bool memory = path == ":memory:";
  if (path.empty())
    return Fail(ErrorCode::kBadRequest, "expected sqlite:///path/to/db.sqlite3 or sqlite::memory:");
  std::string target = path;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  if (memory) {
    // One private in-memory database per backend, shared by its connections.
    unsigned char random[8];
    RAND_bytes(random, sizeof random);
    char name[64];
    std::snprintf(name, sizeof name, "file:mikcar-%02x%02x%02x%02x%02x%02x%02x%02x", random[0],
                  random[1], random[2], random[3], random[4], random[5], random[6], random[7]);
    target = std::string(name) + "?mode=memory&cache=shared";
  } else {
    flags &= ~SQLITE_OPEN_URI;
  }
  // An in-memory database is one connection (shared cache locks tables instead of waiting).
  const unsigned count = memory ? 1 : 4;
  auto connections = std::make_shared<ConnectionPool>();
  for (unsigned i = 0; i < count; ++i) {
    auto conn = std::make_shared<Connection>();
    int rc = sqlite3_open_v2(target.c_str(), &conn->db, flags, nullptr);
    if (rc != SQLITE_OK) {
      return Fail(ErrorCode::kUnavailable,
                  "cannot open SQLite database '" + path +
                      "': " + (conn->db ? sqlite3_errmsg(conn->db) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(conn->db, 1);
    const char* setup =
        memory ? "PRAGMA foreign_keys=ON;"
               : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";
    char* message = nullptr;
    if (sqlite3_exec(conn->db, setup, nullptr, nullptr, &message) != SQLITE_OK) {
      std::string why = message ? message : "unknown error";
      sqlite3_free(message);
      return Fail(ErrorCode::kUnavailable, "cannot set up SQLite database '" + path + "': " + why);
    }
    sqlite3_progress_handler(conn->db, 1000, &OnProgress, conn.get());
    sqlite3_set_authorizer(conn->db, &Authorize, conn.get());
    connections->Add(std::move(conn));
  }
  return std::unique_ptr<SqlBackend>(std::make_unique<SqliteSqlBackend>(connections, count));
}

}  // namespace mikcar::sql
