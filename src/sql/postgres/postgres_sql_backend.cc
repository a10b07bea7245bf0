#include "sql/postgres/postgres_sql_backend.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <cmath>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "common/json.h"
#include "common/units.h"
#include "common/wait_list.h"
#include "sql/postgres/libpq.h"
#include "sql/postgres/pg_values.h"

namespace mikcar::sql {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
// libpq's functions, loaded by OpenPostgresSqlBackend() before any connection exists.
const LibPq* pq = nullptr;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Parameter types sent with a statement; 0 leaves the type to the server (text and null).
constexpr Oid kOidBool = 16, kOidInt8 = 20, kOidFloat8 = 701, kOidJson = 114;

Error Unavailable(std::string message) {
  return Error{ErrorCode::kSqlUnavailable, "PostgreSQL unreachable: " + std::move(message), {}};
}

// libpq's message on one line: trailing newline dropped, inner newlines and tabs as spaces.
std::string Trimmed(const char* message) {
  std::string out;
  for (const char* p = message ? message : ""; *p; ++p) {
    if (*p == '\n' || *p == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += *p;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// A database error with its SQLSTATE; the status follows the SQLSTATE class.
Error ResultError(const PGresult* res) {
  std::string state = Trimmed(pq->PQresultErrorField(res, PG_DIAG_SQLSTATE));
  std::string message = Trimmed(pq->PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty()) message = Trimmed(pq->PQresultErrorMessage(res));
  if (const char* detail = pq->PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL))
    message += " (" + Trimmed(detail) + ")";
  ErrorCode code = ErrorCode::kSqlError;
  if (state.starts_with("23") || state == "40001" || state == "40P01") {
    code = ErrorCode::kSqlConflict;
  } else if (state == "57014") {
    code = ErrorCode::kSqlTimeout;
  } else if ((state.starts_with("08") && state != "08P01") || state.starts_with("53") ||
             state.starts_with("57P")) {
    code = ErrorCode::kSqlUnavailable;
  }
  Error error{code, std::move(message), {}};
  if (!state.empty()) error.fields.emplace_back("sqlstate", JsonQuote(state));
  return error;
}

bool HasSqlState(const Error& error, std::string_view state) {
  for (const auto& [name, value] : error.fields) {
    if (name == "sqlstate")
      return value.size() == state.size() + 2 && value.substr(1, state.size()) == state;
  }
  return false;
}

struct PgConnection {
  // Autocommit statements that may be prepared on one connection.
  static constexpr size_t kMaxStatements = 256;

  PGconn* conn = nullptr;
  std::chrono::milliseconds statement_timeout{0};  // the value last SET on the session
  bool broken = false;
  // Autocommit statements seen on this session (SQL, NUL, parameter type OIDs) → the name they
  // are prepared under; empty while seen once (see ExecPrepared).
  std::unordered_map<std::string, std::string> statements;
  size_t prepared_count = 0;
  // Repeated autocommit statements are prepared (URL `prepare`); false also once the session
  // lost a statement mikcar prepared.
  bool prepare = true;
  // The socket, registered once with the event loop of the I/O thread that last used the
  // connection (a fresh registration per wait cost three epoll_ctl calls and an ioctl).
  std::unique_ptr<asio::posix::stream_descriptor> socket;
  const asio::execution_context* home = nullptr;

  ~PgConnection() {
    if (socket) socket->release();  // libpq owns the file descriptor
    pq->PQfinish(conn);
  }

  // Notes a statement seen for the first time. When the table is full a statement seen only
  // once makes room; prepared ones stay for the life of the connection.
  void Remember(std::string key) {
    if (statements.size() >= kMaxStatements) {
      auto once = std::find_if(statements.begin(), statements.end(),
                               [](const auto& entry) { return entry.second.empty(); });
      if (once == statements.end()) return;
      statements.erase(once);
    }
    statements.emplace(std::move(key), std::string());
  }

  // Forgets the registration (before the event loop it belongs to goes away).
  void Unregister() {
    if (socket) socket->release();
    socket.reset();
    home = nullptr;
  }

  // The socket registered with `ex`'s event loop.
  asio::posix::stream_descriptor& SocketOn(const asio::any_io_executor& ex) {
    const asio::execution_context* context = &asio::query(ex, asio::execution::context);
    if (!socket || home != context) {
      if (socket) socket->release();
      socket = std::make_unique<asio::posix::stream_descriptor>(ex, pq->PQsocket(conn));
      home = context;
    }
    return *socket;
  }

  // True while the socket is open and silent: an idle connection has nothing to read, so EOF or
  // any byte (a FATAL from a shutting-down server) means it is gone.
  bool Alive() const {
    if (broken || pq->PQstatus(conn) != CONNECTION_OK) return false;
    char byte;
    ssize_t n = ::recv(pq->PQsocket(conn), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
};

// Waits until `socket` is readable or writable, or the deadline.
asio::awaitable<Result<void>> WaitSocket(asio::posix::stream_descriptor& socket,
                                         asio::posix::descriptor_base::wait_type type,
                                         Clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto expired = std::make_shared<bool>(false);
  auto active = std::make_shared<bool>(true);
  asio::steady_timer timer(ex, deadline);
  timer.async_wait([expired, active, &socket](boost::system::error_code ec) {
    if (ec || !*active) return;
    *expired = true;
    socket.cancel();
  });
  auto [ec] = co_await socket.async_wait(type, kTuple);
  *active = false;
  timer.cancel();
  if (*expired)
    co_return Fail(ErrorCode::kSqlTimeout, "PostgreSQL did not answer before the request deadline");
  if (ec) co_return Fail(Unavailable(ec.message()));
  co_return Result<void>{};
}

bool IdentifierChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

constexpr auto kMayStartToken = [] {
  std::array<bool, 256> table{};
  for (unsigned char c : std::string_view("'\"-/$")) table[c] = true;
  return table;
}();

// The highest $n placeholder of `sql`, outside literals, quoted identifiers, comments and
// dollar-quoted strings. PostgreSQL itself only notices extra parameters that are untyped.
size_t HighestPlaceholder(std::string_view sql) {
  size_t highest = 0;
  const size_t n = sql.size();
  for (size_t i = 0; i < n;) {
    const char c = sql[i];
    const char next = i + 1 < n ? sql[i + 1] : '\0';
    if (c == '\'') {
      const bool escapes = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e');
      for (++i; i < n; ++i) {
        if (escapes && sql[i] == '\\') {
          ++i;
        } else if (sql[i] == '\'') {
          if (i + 1 < n && sql[i + 1] == '\'') {
            ++i;
          } else {
            ++i;
            break;
          }
        }
      }
    } else if (c == '"') {
      size_t end = sql.find('"', i + 1);
      i = end == std::string_view::npos ? n : end + 1;
    } else if (c == '-' && next == '-') {
      size_t end = sql.find('\n', i);
      i = end == std::string_view::npos ? n : end + 1;
    } else if (c == '/' && next == '*') {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? n : end + 2;
    } else if (c == '$' && (i == 0 || !IdentifierChar(sql[i - 1]))) {
      size_t j = i + 1;
      if (j < n && std::isdigit(static_cast<unsigned char>(sql[j]))) {
        size_t number = 0;
        for (; j < n && std::isdigit(static_cast<unsigned char>(sql[j])); ++j)
          number = std::min<size_t>(number * 10 + static_cast<size_t>(sql[j] - '0'), 1'000'000);
        highest = std::max(highest, number);
        i = j;
        continue;
      }
      // $tag$ … $tag$
      while (j < n && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) ++j;
      if (j < n && sql[j] == '$') {
        std::string_view tag = sql.substr(i, j - i + 1);
        size_t end = sql.find(tag, j + 1);
        i = end == std::string_view::npos ? n : end + tag.size();
      } else {
        i = j;
      }
    } else {
      // Ordinary text: skip to the next character that may start one of the cases above.
      for (++i; i < n && !kMayStartToken[static_cast<unsigned char>(sql[i])];) ++i;
    }
  }
  return highest;
}

// A statement's parameters in libpq's form.
struct PgParams {
  std::vector<Oid> types;
  std::vector<std::string> storage;
  std::vector<const char*> values;
  int count() const { return static_cast<int>(values.size()); }
};

Result<PgParams> EncodeParams(const Statement& statement) {
  const size_t n = statement.params.size();
  for (const Param& p : statement.params) {
    if ((p.kind == Param::Kind::kText || p.kind == Param::Kind::kJson) &&
        p.text.find('\0') != std::string::npos) {
      return Fail(ErrorCode::kSqlError,
                  "a text parameter contains a NUL byte, which PostgreSQL text cannot hold");
    }
  }
  if (size_t used = HighestPlaceholder(statement.sql); n > used) {
    return Fail(Error{
        ErrorCode::kSqlError,
        "the statement uses " + std::to_string(used) + " parameter(s); got " + std::to_string(n),
        {{"sqlstate", "\"08P01\""}}});
  }
  PgParams out;
  out.types.assign(n, 0);
  out.storage.resize(n);
  out.values.assign(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    const Param& p = statement.params[i];
    switch (p.kind) {
      case Param::Kind::kNull:
        continue;
      case Param::Kind::kBool:
        out.types[i] = kOidBool;
        out.storage[i] = p.boolean ? "true" : "false";
        break;
      case Param::Kind::kInt:
        out.types[i] = kOidInt8;
        out.storage[i] = std::to_string(p.integer);
        break;
      case Param::Kind::kFloat: {
        out.types[i] = kOidFloat8;
        char buf[32];
        auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, p.real);
        out.storage[i] = std::isnan(p.real)   ? "NaN"
                         : std::isinf(p.real) ? (p.real > 0 ? "Infinity" : "-Infinity")
                                              : std::string(buf, ptr);
        break;
      }
      case Param::Kind::kText:
        out.storage[i] = p.text;
        break;
      case Param::Kind::kJson:
        out.types[i] = kOidJson;
        out.storage[i] = p.text;
        break;
    }
    out.values[i] = out.storage[i].c_str();
  }
  return out;
}

// After a PQsend* call: its outcome, then the query written out (waiting while the socket is
// full). Connection failures mark `c` broken.
asio::awaitable<Result<void>> Flush(PgConnection& c, bool sent, Clock::time_point deadline) {
  if (!sent) {
    c.broken = pq->PQstatus(c.conn) != CONNECTION_OK;
    std::string why = Trimmed(pq->PQerrorMessage(c.conn));
    co_return Fail(c.broken ? Unavailable(why) : Error{ErrorCode::kSqlError, why, {}});
  }
  auto& socket = c.SocketOn(co_await asio::this_coro::executor);
  for (;;) {
    int flushed = pq->PQflush(c.conn);
    if (flushed == 0) co_return Result<void>{};
    if (flushed < 0) {
      c.broken = true;
      co_return Fail(Unavailable(Trimmed(pq->PQerrorMessage(c.conn))));
    }
    auto ready = co_await WaitSocket(socket, asio::posix::descriptor_base::wait_write, deadline);
    if (!ready) {
      c.broken = true;
      co_return Fail(ready.error());
    }
  }
}

asio::awaitable<Result<ResultSet>> Collect(PgConnection& c, Clock::time_point deadline);

// Runs `sql` with encoded `params` as an unnamed statement and collects its result.
asio::awaitable<Result<ResultSet>> ExecUnnamed(PgConnection& c, const std::string& sql,
                                               const PgParams& params, Clock::time_point deadline) {
  bool sent = pq->PQsendQueryParams(c.conn, sql.c_str(), params.count(), params.types.data(),
                                    params.values.data(), nullptr, nullptr, 0) == 1;
  if (auto flushed = co_await Flush(c, sent, deadline); !flushed) co_return Fail(flushed.error());
  co_return co_await Collect(c, deadline);
}

// Runs one statement as an unnamed statement and collects its result.
asio::awaitable<Result<ResultSet>> Exec(PgConnection& c, const Statement& statement,
                                        Clock::time_point deadline) {
  auto params = EncodeParams(statement);
  if (!params) co_return Fail(params.error());
  co_return co_await ExecUnnamed(c, statement.sql, *params, deadline);
}

// Runs an autocommit statement through the connection's prepared statements: from its second
// use on this connection a statement (SQL and parameter types) is prepared once and then only
// bound and executed, so PostgreSQL parses and plans it once instead of on every request.
asio::awaitable<Result<ResultSet>> ExecPrepared(PgConnection& c, const Statement& statement,
                                                Clock::time_point deadline) {
  if (!c.prepare) co_return co_await Exec(c, statement, deadline);
  auto params = EncodeParams(statement);
  if (!params) co_return Fail(params.error());
  std::string key = statement.sql;
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(params->types.data()),
             params->types.size() * sizeof(Oid));
  auto it = c.statements.find(key);
  if (it == c.statements.end()) {
    c.Remember(std::move(key));
    co_return co_await ExecUnnamed(c, statement.sql, *params, deadline);
  }
  if (it->second.empty()) {
    std::string name = "mikcar_" + std::to_string(++c.prepared_count);
    bool sent = pq->PQsendPrepare(c.conn, name.c_str(), statement.sql.c_str(), params->count(),
                                  params->types.data()) == 1;
    if (auto flushed = co_await Flush(c, sent, deadline); !flushed) co_return Fail(flushed.error());
    if (auto prepared = co_await Collect(c, deadline); !prepared) {
      c.statements.erase(it);
      co_return Fail(prepared.error());
    }
    it->second = std::move(name);
  }
  bool sent = pq->PQsendQueryPrepared(c.conn, it->second.c_str(), params->count(),
                                      params->values.data(), nullptr, nullptr, 0) == 1;
  if (auto flushed = co_await Flush(c, sent, deadline); !flushed) co_return Fail(flushed.error());
  auto result = co_await Collect(c, deadline);
  if (!result && HasSqlState(result.error(), "26000")) {
    // The session no longer has the statement (a connection pooler between mikcar and
    // PostgreSQL that does not keep sessions): nothing ran. Stop preparing on this connection.
    spdlog::warn(
        "postgres: a statement mikcar prepared vanished from its session (a connection pooler "
        "in transaction mode?); this connection stops preparing; prepare=false on the URL "
        "turns preparing off");
    c.statements.clear();
    c.prepare = false;
    co_return co_await ExecUnnamed(c, statement.sql, *params, deadline);
  }
  if (!result &&
      result.error().message.find("cached plan must not change result type") != std::string::npos) {
    // A table the statement reads changed shape since it was prepared (SELECT * after ALTER
    // TABLE). Nothing ran: forget the statement and run the request afresh.
    Statement forget{"DEALLOCATE " + it->second, {}};
    c.statements.erase(it);
    auto forgot = co_await Exec(c, forget, deadline);
    c.broken = !forgot;  // mikcar's own DEALLOCATE leaves the session as the cache expects
    if (!forgot) co_return Fail(forgot.error());
    co_return co_await ExecUnnamed(c, statement.sql, *params, deadline);
  }
  co_return result;
}

// Collects the results of the statement just sent. Connection failures mark `c` broken.
asio::awaitable<Result<ResultSet>> Collect(PgConnection& c, Clock::time_point deadline) {
  auto& socket = c.SocketOn(co_await asio::this_coro::executor);
  ResultSet result;
  std::optional<Error> failure;
  for (;;) {
    while (pq->PQisBusy(c.conn)) {
      auto ready = co_await WaitSocket(socket, asio::posix::descriptor_base::wait_read, deadline);
      if (!ready) {
        c.broken = true;  // a statement still runs on it: never reuse it
        co_return Fail(ready.error());
      }
      if (!pq->PQconsumeInput(c.conn)) {
        c.broken = true;
        co_return Fail(Unavailable(Trimmed(pq->PQerrorMessage(c.conn))));
      }
    }
    PGresult* res = pq->PQgetResult(c.conn);
    if (!res) break;
    auto clear = [](PGresult* r) { pq->PQclear(r); };
    std::unique_ptr<PGresult, decltype(clear)> owned(res, clear);
    switch (pq->PQresultStatus(res)) {
      case PGRES_TUPLES_OK: {
        const int columns = pq->PQnfields(res);
        const int rows = pq->PQntuples(res);
        result.columns.clear();
        for (int col = 0; col < columns; ++col)
          result.columns.push_back({pq->PQfname(res, col), PgTypeName(pq->PQftype(res, col))});
        result.rows.reserve(static_cast<size_t>(rows));
        for (int r = 0; r < rows; ++r) {
          std::vector<std::string> row;
          row.reserve(static_cast<size_t>(columns));
          for (int col = 0; col < columns; ++col) {
            if (pq->PQgetisnull(res, r, col)) {
              row.emplace_back("null");
            } else {
              row.push_back(
                  PgCell(pq->PQftype(res, col),
                         std::string_view(pq->PQgetvalue(res, r, col),
                                          static_cast<size_t>(pq->PQgetlength(res, r, col)))));
            }
          }
          result.rows.push_back(std::move(row));
        }
        result.rows_affected = static_cast<uint64_t>(rows);
        break;
      }
      case PGRES_COMMAND_OK: {
        // SET, RESET, DISCARD and DEALLOCATE change the session this connection's next users
        // inherit (time zone, date style, statement_timeout, mikcar's prepared statements): the
        // connection is closed after this use.
        std::string_view command = pq->PQcmdStatus(res);
        if (command.starts_with("SET") || command.starts_with("RESET") ||
            command.starts_with("DISCARD") || command.starts_with("DEALLOCATE"))
          c.broken = true;
        const char* tuples = pq->PQcmdTuples(res);
        uint64_t affected = 0;
        std::from_chars(tuples, tuples + std::strlen(tuples), affected);
        result.rows_affected = affected;
        break;
      }
      case PGRES_EMPTY_QUERY:
        break;
      case PGRES_FATAL_ERROR:
        if (!failure) failure = ResultError(res);
        break;
      default:
        // COPY (or replication): libpq would hand out COPY results forever. The connection is
        // in a state no request can use: close it.
        c.broken = true;
        co_return Fail(Error{ErrorCode::kSqlError,
                             std::string("unsupported result: ") +
                                 pq->PQresStatus(pq->PQresultStatus(res)) +
                                 " (COPY and replication are not available over /sql)",
                             {}});
    }
  }
  if (pq->PQstatus(c.conn) != CONNECTION_OK) c.broken = true;
  if (failure) co_return Fail(std::move(*failure));
  co_return result;
}

// The connection settings: the URL's, with the session settings the value conversions need.
struct ConnectParams {
  std::vector<std::string> keywords;
  std::vector<std::string> values;
};

class PgPool;

class PgTransaction final : public Transaction {
 public:
  PgTransaction(std::shared_ptr<PgPool> pool, std::unique_ptr<PgConnection> conn,
                Clock::time_point deadline, bool read_only, asio::any_io_executor ex)
      : pool_(std::move(pool)),
        conn_(std::move(conn)),
        deadline_(deadline),
        read_only_(read_only),
        ex_(std::move(ex)) {}
  ~PgTransaction() override;
  Task<ResultSet> Run(Statement statement) override;
  // A read-only transaction has nothing to keep: it rolls back, which also undoes session
  // settings a statement made (set_config(…, false)) before the connection is pooled again.
  Task<void> Commit() override { co_return co_await Finish(read_only_ ? "ROLLBACK" : "COMMIT"); }
  Task<void> Rollback() override { co_return co_await Finish("ROLLBACK"); }

 private:
  Task<void> Finish(const char* sql);

  std::shared_ptr<PgPool> pool_;
  std::unique_ptr<PgConnection> conn_;
  Clock::time_point deadline_;
  bool read_only_;
  asio::any_io_executor ex_;
};

// At most `max` connections; requests beyond it wait (until their deadline) for one to return.
class PgPool {
 public:
  PgPool(ConnectParams params, size_t max, size_t min, std::chrono::milliseconds timeout,
         bool prepare)
      : params_(std::move(params)),
        max_(max),
        min_(min),
        default_timeout_(timeout),
        prepare_(prepare) {}

  size_t min() const { return min_; }
  std::chrono::milliseconds default_timeout() const { return default_timeout_; }

  asio::awaitable<Result<std::unique_ptr<PgConnection>>> Acquire(Clock::time_point deadline) {
    const asio::execution_context* here =
        &asio::query(co_await asio::this_coro::executor, asio::execution::context);
    for (int attempt = 0; attempt < 64; ++attempt) {
      std::unique_ptr<PgConnection> conn;
      bool create = false;
      {
        std::lock_guard lock(mu_);
        if (closed_) co_return Fail(Unavailable("the pool is closed"));
        if (!idle_.empty()) {
          // Prefer one whose socket is registered with this thread's event loop.
          auto it = std::find_if(idle_.rbegin(), idle_.rend(),
                                 [here](const auto& c) { return c->home == here; });
          auto pick = it == idle_.rend() ? idle_.end() - 1 : std::next(it).base();
          conn = std::move(*pick);
          idle_.erase(pick);
        } else if (total_ < max_) {
          ++total_;
          create = true;
        }
      }
      if (conn) {
        if (conn->Alive()) co_return conn;
        Drop();  // closed by the server (restart, idle timeout): try the next one
        continue;
      }
      if (create) {
        auto made = co_await Connect(deadline);
        if (!made) Drop();
        co_return made;
      }
      auto waited = co_await Wait(deadline);
      if (!waited) co_return Fail(waited.error());
      if (*waited) co_return std::move(*waited);
      // nullptr: a connection was dropped, so there is room to connect: go round again.
    }
    co_return Fail(Unavailable("no usable connection"));
  }

  // Returns a connection after use; broken ones are closed.
  void Release(std::unique_ptr<PgConnection> conn) {
    if (!conn || conn->broken || pq->PQtransactionStatus(conn->conn) != PQTRANS_IDLE) {
      conn.reset();
      Drop();
      return;
    }
    std::lock_guard lock(mu_);
    if (!waiters_.Offer(conn)) idle_.push_back(std::move(conn));
  }

  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    idle_.clear();
  }

 private:
  // One connection fewer: a waiter may now connect a new one.
  void Drop() {
    std::lock_guard lock(mu_);
    --total_;
    std::unique_ptr<PgConnection> none;  // "connect one yourself"
    waiters_.Offer(none);
  }

  // Waits for a returned connection; nullptr means "there is room now: connect one".
  asio::awaitable<Result<std::unique_ptr<PgConnection>>> Wait(Clock::time_point deadline) {
    auto try_now = [this]() -> std::optional<std::unique_ptr<PgConnection>> {
      if (!idle_.empty() || total_ < max_) return std::unique_ptr<PgConnection>();
      return std::nullopt;
    };
    Error timeout{ErrorCode::kSqlUnavailable,
                  "no free PostgreSQL connection before the request deadline (all " +
                      std::to_string(max_) + " in use; see pool_max)",
                  {}};
    co_return co_await waiters_.Wait(mu_, deadline, std::move(try_now), std::move(timeout));
  }

  asio::awaitable<Result<std::unique_ptr<PgConnection>>> Connect(Clock::time_point deadline) {
    std::vector<const char*> keys, vals;
    for (size_t i = 0; i < params_.keywords.size(); ++i) {
      keys.push_back(params_.keywords[i].c_str());
      vals.push_back(params_.values[i].c_str());
    }
    keys.push_back(nullptr);
    vals.push_back(nullptr);
    auto c = std::make_unique<PgConnection>();
    c->conn = pq->PQconnectStartParams(keys.data(), vals.data(), 0);
    if (!c->conn) co_return Fail(Unavailable("out of memory"));
    if (pq->PQstatus(c->conn) == CONNECTION_BAD)
      co_return Fail(Unavailable(Trimmed(pq->PQerrorMessage(c->conn))));
    for (;;) {
      PostgresPollingStatusType poll = pq->PQconnectPoll(c->conn);
      if (poll == PGRES_POLLING_OK) break;
      if (poll == PGRES_POLLING_FAILED)
        co_return Fail(Unavailable(Trimmed(pq->PQerrorMessage(c->conn))));
      auto type = poll == PGRES_POLLING_READING ? asio::posix::descriptor_base::wait_read
                                                : asio::posix::descriptor_base::wait_write;
      // The socket may change while libpq tries addresses: a registration per wait.
      asio::posix::stream_descriptor socket(co_await asio::this_coro::executor,
                                            pq->PQsocket(c->conn));
      auto ready = co_await WaitSocket(socket, type, deadline);
      socket.release();
      if (!ready) co_return Fail(Unavailable("connecting: " + ready.error().message));
    }
    if (pq->PQsetnonblocking(c->conn, 1) != 0)
      co_return Fail(Unavailable(Trimmed(pq->PQerrorMessage(c->conn))));
    c->statement_timeout = default_timeout_;
    c->prepare = prepare_;
    co_return c;
  }

  ConnectParams params_;
  const size_t max_;
  const size_t min_;
  const std::chrono::milliseconds default_timeout_;
  const bool prepare_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_;
  WaitList<std::unique_ptr<PgConnection>> waiters_;
  size_t total_ = 0;
  bool closed_ = false;
};

// The session's statement_timeout for this request. Rounded up to whole seconds above one
// second, so the common case (the default, minus the time already spent) needs no extra SET.
std::chrono::milliseconds SessionTimeout(std::chrono::milliseconds wanted) {
  if (wanted <= std::chrono::seconds(1)) return std::max(wanted, std::chrono::milliseconds(1));
  return std::chrono::ceil<std::chrono::seconds>(wanted);
}

// Runs `statement` with the request's statement timeout; `autocommit` statements go through the
// connection's prepared statements (when it prepares, see ExecPrepared).
asio::awaitable<Result<ResultSet>> ExecWithin(PgConnection& c, const Statement& statement,
                                              const Limits& limits, bool autocommit) {
  auto wanted = SessionTimeout(limits.statement_timeout);
  if (wanted != c.statement_timeout) {
    Statement set{"SET statement_timeout = " + std::to_string(wanted.count()), {}};
    auto done = co_await Exec(c, set, limits.deadline);
    if (!done) co_return Fail(done.error());
    c.broken = false;  // mikcar's own SET: the session stays as the connection expects
    c.statement_timeout = wanted;
  }
  if (autocommit) co_return co_await ExecPrepared(c, statement, limits.deadline);
  co_return co_await Exec(c, statement, limits.deadline);
}

PgTransaction::~PgTransaction() {
  if (!conn_) return;
  // Neither committed nor rolled back: roll back, then return the connection.
  auto rollback = [](std::shared_ptr<PgPool> pool, std::unique_ptr<PgConnection> conn,
                     Clock::time_point deadline) -> asio::awaitable<void> {
    Statement statement{"ROLLBACK", {}};
    if (!co_await Exec(*conn, statement, deadline)) conn->broken = true;
    pool->Release(std::move(conn));
  };
  asio::co_spawn(ex_, rollback(pool_, std::move(conn_), Clock::now() + std::chrono::seconds(5)),
                 asio::detached);
}

Task<ResultSet> PgTransaction::Run(Statement statement) {
  if (!conn_) co_return Fail(ErrorCode::kInternal, "transaction already finished");
  auto result = co_await Exec(*conn_, statement, deadline_);
  if (!result && read_only_ && HasSqlState(result.error(), "25006"))
    result.error().code = ErrorCode::kForbidden;  // a read-only token's statement that writes
  if (result && pq->PQtransactionStatus(conn_->conn) != PQTRANS_INTRANS) {
    co_return Fail(ErrorCode::kSqlError,
                   "COMMIT, ROLLBACK and BEGIN are not allowed inside a batch or script (mikcar "
                   "ends the transaction)");
  }
  co_return result;
}

Task<void> PgTransaction::Finish(const char* sql) {
  if (!conn_) co_return Fail(ErrorCode::kInternal, "transaction already finished");
  Statement statement{sql, {}};
  auto done = co_await Exec(*conn_, statement, deadline_);
  pool_->Release(std::move(conn_));
  if (!done) co_return Fail(done.error());
  co_return Result<void>{};
}

class PostgresSqlBackend final : public SqlBackend {
 public:
  explicit PostgresSqlBackend(std::shared_ptr<PgPool> pool) : pool_(std::move(pool)) {}

  std::string name() const override { return "postgres"; }
  std::chrono::milliseconds default_statement_timeout() const override {
    return pool_->default_timeout();
  }

  Task<ResultSet> Run(Statement statement, Limits limits) override {
    auto conn = co_await pool_->Acquire(limits.deadline);
    if (!conn) co_return Fail(conn.error());
    auto result = co_await ExecWithin(**conn, statement, limits, /*autocommit=*/true);
    if (result && pq->PQtransactionStatus((*conn)->conn) != PQTRANS_IDLE) {
      // BEGIN (or similar) outside /sql/batch: a pooled connection must not stay in it.
      Statement rollback{"ROLLBACK", {}};
      if (!co_await Exec(**conn, rollback, limits.deadline)) (*conn)->broken = true;
      result = Fail(ErrorCode::kSqlError,
                    "transaction control is only available through /sql/batch (each request "
                    "runs in a transaction of its own)");
    }
    pool_->Release(std::move(*conn));
    co_return result;
  }

  Task<std::unique_ptr<Transaction>> Begin(Limits limits) override {
    auto conn = co_await pool_->Acquire(limits.deadline);
    if (!conn) co_return Fail(conn.error());
    Statement begin{limits.read_only ? "BEGIN READ ONLY" : "BEGIN", {}};
    auto begun = co_await ExecWithin(**conn, begin, limits, /*autocommit=*/false);
    if (begun && limits.read_only) {
      // Until a query has taken the transaction's snapshot, SET TRANSACTION READ WRITE would
      // make it writable again; after one, PostgreSQL refuses that.
      Statement snapshot{"SELECT 1", {}};
      begun = co_await ExecWithin(**conn, snapshot, limits, /*autocommit=*/false);
    }
    if (!begun) {
      pool_->Release(std::move(*conn));
      co_return Fail(begun.error());
    }
    auto ex = co_await asio::this_coro::executor;
    co_return std::unique_ptr<Transaction>(std::make_unique<PgTransaction>(
        pool_, std::move(*conn), limits.deadline, limits.read_only, ex));
  }

  Task<void> Ready() override {
    Limits limits;
    limits.deadline = Clock::now() + std::chrono::seconds(3);
    limits.statement_timeout = std::chrono::seconds(3);
    // The first check opens pool_min connections; later ones ping a single connection, so
    // overlapping checks never hold part of the pool while waiting for more.
    std::vector<std::unique_ptr<PgConnection>> held;
    const size_t open = warmed_.exchange(true) ? 1 : std::max<size_t>(1, pool_->min());
    for (size_t i = 0; i < open; ++i) {
      auto conn = co_await pool_->Acquire(limits.deadline);
      if (!conn) {
        for (auto& c : held) pool_->Release(std::move(c));
        co_return Fail(conn.error());
      }
      held.push_back(std::move(*conn));
    }
    Statement ping{"SELECT 1", {}};
    auto result = co_await Exec(*held.front(), ping, limits.deadline);
    // The check may run on a private event loop (CheckReady() at start-up) that ends with it.
    for (auto& c : held) {
      c->Unregister();
      pool_->Release(std::move(c));
    }
    if (!result) co_return Fail(result.error());
    co_return Result<void>{};
  }

  void Close() override { pool_->Close(); }

 private:
  std::shared_ptr<PgPool> pool_;
  std::atomic<bool> warmed_{false};
};

Result<size_t> SizeParam(const Uri& uri, std::string_view name, size_t fallback) {
  auto raw = uri.query_param(name);
  if (!raw) return fallback;
  size_t value = 0;
  auto [ptr, ec] = std::from_chars(raw->data(), raw->data() + raw->size(), value);
  if (raw->empty() || ec != std::errc() || ptr != raw->data() + raw->size() || value > 10000) {
    return Fail(ErrorCode::kBadRequest,
                std::string(name) + ": expected a number 0-10000; got '" + *raw + "'");
  }
  return value;
}

}  // namespace

Result<std::unique_ptr<SqlBackend>> OpenPostgresSqlBackend(const Uri& uri) {
  auto library = LoadLibPq();
  if (!library) return Fail(library.error());
  pq = *library;
  auto pool_max = SizeParam(uri, "pool_max", 16);
  if (!pool_max) return Fail(pool_max.error());
  if (*pool_max == 0) return Fail(ErrorCode::kBadRequest, "pool_max: expected at least 1");
  auto pool_min = SizeParam(uri, "pool_min", 0);
  if (!pool_min) return Fail(pool_min.error());
  if (*pool_min > *pool_max)
    return Fail(ErrorCode::kBadRequest, "pool_min: expected at most pool_max");
  std::chrono::milliseconds timeout{30'000};
  if (auto raw = uri.query_param("statement_timeout")) {
    auto parsed = ParseDuration(*raw);
    if (!parsed || parsed->count() <= 0) {
      return Fail(
          ErrorCode::kBadRequest,
          "statement_timeout: expected a positive duration such as 30s; got '" + *raw + "'");
    }
    timeout = *parsed;
  }
  auto prepare = uri.query_param("prepare");
  if (!prepare) prepare = "true";
  if (*prepare != "true" && *prepare != "false")
    return Fail(ErrorCode::kBadRequest, "prepare: expected true or false; got '" + *prepare + "'");
  ConnectParams params;
  auto add = [&](std::string key, std::string value) {
    params.keywords.push_back(std::move(key));
    params.values.push_back(std::move(value));
  };
  if (!uri.host.empty()) add("host", uri.host);
  if (uri.port) add("port", std::to_string(*uri.port));
  if (!uri.user.empty()) add("user", uri.user);
  if (!uri.password.empty()) add("password", uri.password);
  if (uri.path.size() > 1) add("dbname", uri.path.substr(1));
  bool connect_timeout = false;
  for (const auto& [key, value] : uri.query) {
    if (key == "pool_max" || key == "pool_min" || key == "statement_timeout" || key == "prepare")
      continue;
    if (key == "options") {
      return Fail(ErrorCode::kBadRequest,
                  "options: not supported (mikcar sets the session options it needs)");
    }
    connect_timeout = connect_timeout || key == "connect_timeout";
    add(key, value);
  }
  if (!connect_timeout) add("connect_timeout", "5");
  add("client_encoding", "UTF8");
  add("options",
      "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres "
      "-c extra_float_digits=3 -c statement_timeout=" +
          std::to_string(SessionTimeout(timeout).count()));
  // Validate the keywords now (libpq rejects unknown ones only when connecting).
  std::vector<const char*> keys;
  for (const auto& k : params.keywords) keys.push_back(k.c_str());
  for (const auto& k : params.keywords) {
    bool known = false;
    PQconninfoOption* defaults = pq->PQconndefaults();
    for (PQconninfoOption* o = defaults; o && o->keyword; ++o) known = known || k == o->keyword;
    pq->PQconninfoFree(defaults);
    if (!known) {
      return Fail(ErrorCode::kBadRequest, "unknown connection parameter '" + k +
                                              "'; expected libpq parameters (sslmode, "
                                              "connect_timeout, …) or pool_max, pool_min, "
                                              "statement_timeout, prepare");
    }
  }
  auto pool = std::make_shared<PgPool>(std::move(params), *pool_max, *pool_min,
                                       SessionTimeout(timeout), *prepare == "true");
  return std::unique_ptr<SqlBackend>(std::make_unique<PostgresSqlBackend>(std::move(pool)));
}

}  // namespace mikcar::sql
