// The /sql service: parses and validates each request once, calls one SqlBackend, shapes the
// response (SPEC §5.2). Knows nothing about HTTP parsing or concrete databases.
#include <boost/json/array.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>

#include "common/backend_calls.h"
#include "common/json.h"
#include "common/units.h"
#include "mikcar/sql/sql.h"
#include "sql/register.h"
#include "sql/statement_json.h"

namespace mikcar::embedded {
extern const std::string_view kSqlOpenApi;  // src/sql/openapi.json (cmake/embed.cmake)
}  // namespace mikcar::embedded

namespace mikcar {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using sql::IsTransactionControl;
using sql::Limits;
using sql::Param;
using sql::ResultSet;
using sql::SqlBackend;
using sql::Statement;
using sql::Task;
using sql::ToParam;
using sql::Transaction;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBatchStatements = 1000;
constexpr size_t kMaxParams = 65535;  // PostgreSQL's protocol limit
constexpr auto kDeadlineMargin = std::chrono::milliseconds(50);

// {"sql": string, "params": [..]} (params optional) as a Statement; `where` prefixes messages.
Result<Statement> ToStatement(const json::value& body, std::string_view expected,
                              std::string_view where = "") {
  const json::object* obj = body.if_object();
  if (!obj) return Fail(WrongShape(expected, std::string(where) + "not an object"));
  const json::value* text = obj->if_contains("sql");
  if (!text) return Fail(WrongShape(expected, std::string(where) + "missing field sql"));
  if (!text->is_string())
    return Fail(WrongShape(expected, std::string(where) + "sql is not a string"));
  Statement statement;
  statement.sql = std::string(text->get_string());
  if (statement.sql.find('\0') != std::string::npos)
    return Fail(ErrorCode::kBadRequest, std::string(where) + "sql contains a NUL byte");
  if (IsTransactionControl(statement.sql)) {
    return Fail(ErrorCode::kBadRequest,
                std::string(where) +
                    "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …) is not "
                    "available: each request runs in a transaction of its own; use /sql/batch "
                    "for several statements in one");
  }
  if (const json::value* params = obj->if_contains("params"); params && !params->is_null()) {
    const json::array* list = params->if_array();
    if (!list) return Fail(WrongShape(expected, std::string(where) + "params is not an array"));
    if (list->size() > kMaxParams)
      return Fail(WrongShape(expected, std::string(where) + "more than 65535 params"));
    for (const json::value& v : *list) {
      auto param = ToParam(v);
      if (!param) return Fail(param.error());
      statement.params.push_back(std::move(*param));
    }
  }
  return statement;
}

// The request's time bounds: ?statement_timeout= (else the backend's default), never past the
// HTTP deadline.
Result<sql::Limits> LimitsOf(const Request& request, const sql::SqlBackend& backend) {
  sql::Limits limits;
  limits.statement_timeout = backend.default_statement_timeout();
  limits.read_only = request.read_only();
  if (auto raw = request.query_param("statement_timeout")) {
    auto timeout = ParseDuration(*raw);
    if (!timeout || timeout->count() <= 0) {
      return Fail(ErrorCode::kBadRequest,
                  "statement_timeout: expected a positive duration such as 500ms or 5s; got '" +
                      *raw + "'");
    }
    limits.statement_timeout = *timeout;
  }
  limits.deadline = request.deadline == Clock::time_point::max()
                        ? request.deadline
                        : request.deadline - kDeadlineMargin;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(limits.deadline - Clock::now());
  if (request.deadline != Clock::time_point::max() && left < limits.statement_timeout) {
    limits.statement_timeout = std::max(left, std::chrono::milliseconds(1));
    limits.deadline_first = true;
  }
  return limits;
}

// A statement stopped by the HTTP deadline is the request's 408 (SPEC §11), not a 504.
Error AtDeadline(Error error, const sql::Limits& limits) {
  if (error.code == ErrorCode::kSqlTimeout && limits.deadline_first) {
    error.code = ErrorCode::kTimeout;
    error.message = "the request deadline (--timeout) came before the statement finished (" +
                    error.message + ")";
  }
  return error;
}

// {"rows":[…],"row_count":N,"columns":[{"name":…,"type":…},…]}
std::string QueryJson(const sql::ResultSet& result) {
  std::string out = "{\"rows\":";
  sql::AppendRowsJson(out, result);
  out += ",\"row_count\":";
  out += std::to_string(result.rows.size());
  out += ",\"columns\":[";
  for (size_t c = 0; c < result.columns.size(); ++c) {
    if (c) out += ',';
    out += "{\"name\":";
    out += JsonQuote(result.columns[c].name);
    out += ",\"type\":";
    out += JsonQuote(result.columns[c].type);
    out += '}';
  }
  out += "]}";
  return out;
}

// Script limits named on the DATABASE_URL (script_timeout, script_max_timeout, script_heap,
// script_workers), taken off it before the backend sees the URL.
Result<std::pair<std::string, sql::script::ScriptOptions>> TakeScriptOptions(std::string_view url) {
  sql::script::ScriptOptions options;
  size_t question = url.find('?');
  if (question == std::string_view::npos) return std::pair{std::string(url), options};
  std::string kept(url.substr(0, question));
  std::string query;
  std::string_view rest = url.substr(question + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    auto bad = [&](std::string_view expected) {
      return Fail(ErrorCode::kBadRequest, std::string(key) + ": expected " + std::string(expected) +
                                              "; got '" + std::string(value) + "'");
    };
    if (key == "script_timeout" || key == "script_max_timeout") {
      auto d = ParseDuration(value);
      if (!d || d->count() <= 0) return bad("a positive duration such as 5s");
      (key == "script_timeout" ? options.timeout : options.max_timeout) = *d;
    } else if (key == "script_heap") {
      auto n = ParseSize(value);
      if (!n || *n < (1u << 20)) return bad("a size of at least 1MiB such as 64MiB");
      options.heap_limit = *n;
    } else if (key == "script_workers") {
      auto n = ParseSize(value);
      if (!n || *n < 1 || *n > 256) return bad("a number of threads from 1 to 256");
      options.workers = static_cast<unsigned>(*n);
    } else {
      query += query.empty() ? "" : "&";
      query += pair;
    }
  }
  if (options.timeout > options.max_timeout) options.max_timeout = options.timeout;
  if (!query.empty()) kept += "?" + query;
  return std::pair{std::move(kept), options};
}

// A duration in a JSON body: seconds as a number, or a string such as "500ms".
std::optional<std::chrono::milliseconds> JsonDuration(const json::value& v) {
  if (v.is_number()) {
    double seconds = v.to_number<double>();
    if (!(seconds > 0) || seconds > 86400) return std::nullopt;
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000 + 0.5));
  }
  if (v.is_string()) {
    auto d = ParseDuration(std::string(v.get_string()));
    if (d && d->count() > 0) return *d;
  }
  return std::nullopt;
}

// The backend with every call counted and timed for /metrics (the script runner's too):
// "run" (one statement on its own), "begin", "statement" (inside a transaction), "commit" and
// "rollback".
class TimedSqlBackend final : public SqlBackend {
 public:
  explicit TimedSqlBackend(std::unique_ptr<SqlBackend> inner)
      : inner_(std::move(inner)),
        calls_(std::make_shared<BackendCalls>(
            "sql", inner_->name(),
            std::initializer_list<std::string_view>{"run", "begin", "statement", "commit",
                                                    "rollback"})) {}

  std::string name() const override { return inner_->name(); }
  std::chrono::milliseconds default_statement_timeout() const override {
    return inner_->default_statement_timeout();
  }
  Task<ResultSet> Run(Statement statement, Limits limits) override {
    return calls_->Time("run", inner_->Run(std::move(statement), limits));
  }
  Task<std::unique_ptr<Transaction>> Begin(Limits limits) override {
    auto begun = co_await calls_->Time("begin", inner_->Begin(limits));
    if (!begun) co_return Fail(std::move(begun.error()));
    co_return std::unique_ptr<Transaction>(
        std::make_unique<TimedTransaction>(std::move(*begun), calls_));
  }
  Task<void> Ready() override { return inner_->Ready(); }
  void Close() override { inner_->Close(); }
  const BackendCalls& calls() const { return *calls_; }

 private:
  class TimedTransaction final : public Transaction {
   public:
    // Shares the counters: a transaction may end after the service.
    TimedTransaction(std::unique_ptr<Transaction> inner, std::shared_ptr<BackendCalls> calls)
        : inner_(std::move(inner)), calls_(std::move(calls)) {}
    Task<ResultSet> Run(Statement statement) override {
      return calls_->Time("statement", inner_->Run(std::move(statement)));
    }
    Task<void> Commit() override { return calls_->Time("commit", inner_->Commit()); }
    Task<void> Rollback() override { return calls_->Time("rollback", inner_->Rollback()); }

   private:
    std::unique_ptr<Transaction> inner_;
    std::shared_ptr<BackendCalls> calls_;
  };

  std::unique_ptr<SqlBackend> inner_;
  std::shared_ptr<BackendCalls> calls_;
};

class SqlSidecar final : public Sidecar {
 public:
  SqlSidecar(std::unique_ptr<SqlBackend> backend, const sql::script::ScriptOptions& options)
      : backend_(std::make_unique<TimedSqlBackend>(std::move(backend))),
        script_options_(options),
        scripts_(sql::MakeBuiltinScriptRunner(*backend_, options)) {}

  std::string name() const override { return "sql"; }
  std::string backend_name() const override { return backend_->name(); }
  std::string_view OpenApi() const override { return embedded::kSqlOpenApi; }
  asio::awaitable<void> Collect(MetricsSink& sink) override {
    backend_->calls().Collect(sink);
    co_return;
  }
  asio::awaitable<Result<void>> Ready() override { co_return co_await backend_->Ready(); }
  void Shutdown() override {
    if (scripts_) scripts_->Stop();  // scripts still use the backend
    backend_->Close();
  }

  std::vector<Route> Routes() override {
    auto bind = [this](auto method) { return BindHandler(this, method); };
    // A read-only token may call every route: its statements run in read-only transactions.
    std::vector<Route> routes = {
        ReadOnly({"POST", "/query", bind(&SqlSidecar::Query)}),
        ReadOnly({"POST", "/execute", bind(&SqlSidecar::Execute)}),
        ReadOnly({"POST", "/batch", bind(&SqlSidecar::Batch)}),
    };
    if (scripts_) routes.push_back(ReadOnly({"POST", "/script", bind(&SqlSidecar::Script)}));
    return routes;
  }

 private:
  static constexpr std::string_view kExpected = R"({"sql": string, "params": [any]})";

  // The statement of a /query or /execute body and the request's limits.
  Result<std::pair<Statement, sql::Limits>> Parse(const Request& request) {
    // The parsed body lives only until the statement is copied out of it: arena-allocated.
    unsigned char arena[4096];
    json::monotonic_resource storage(arena, sizeof arena);
    auto body = ParseJsonBody(request, kExpected, &storage);
    if (!body) return Fail(body.error());
    auto statement = ToStatement(*body, kExpected);
    if (!statement) return Fail(statement.error());
    auto limits = LimitsOf(request, *backend_);
    if (!limits) return Fail(limits.error());
    return std::pair{std::move(*statement), *limits};
  }

  // One statement: on its own, or for a read-only token in a read-only transaction.
  asio::awaitable<Result<sql::ResultSet>> RunOne(Statement statement, const sql::Limits& limits) {
    if (!limits.read_only) co_return co_await backend_->Run(std::move(statement), limits);
    auto transaction = co_await backend_->Begin(limits);
    if (!transaction) co_return Fail(transaction.error());
    auto result = co_await (*transaction)->Run(std::move(statement));
    co_await (*transaction)->Rollback();
    co_return result;
  }

  asio::awaitable<Result<Response>> Query(Request& request) {
    auto parsed = Parse(request);
    if (!parsed) co_return Fail(parsed.error());
    auto result = co_await RunOne(std::move(parsed->first), parsed->second);
    if (!result) co_return Fail(AtDeadline(std::move(result.error()), parsed->second));
    co_return Response::Json(QueryJson(*result));
  }

  asio::awaitable<Result<Response>> Execute(Request& request) {
    auto parsed = Parse(request);
    if (!parsed) co_return Fail(parsed.error());
    auto result = co_await RunOne(std::move(parsed->first), parsed->second);
    if (!result) co_return Fail(AtDeadline(std::move(result.error()), parsed->second));
    std::string body = "{\"rows_affected\":" + std::to_string(result->rows_affected);
    if (result->last_insert_id)
      body += ",\"last_insert_id\":" + std::to_string(*result->last_insert_id);
    co_return Response::Json(body + "}");
  }

  asio::awaitable<Result<Response>> Batch(Request& request) {
    static constexpr std::string_view kBatch =
        R"({"statements": [{"sql": string, "params": [any]}] (1-1000)})";
    auto body = ParseJsonBody(request, kBatch);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kBatch, "not an object"));
    const json::value* list = obj->if_contains("statements");
    if (!list) co_return Fail(WrongShape(kBatch, "missing field statements"));
    const json::array* items = list->if_array();
    if (!items) co_return Fail(WrongShape(kBatch, "statements is not an array"));
    if (items->empty() || items->size() > kMaxBatchStatements) {
      co_return Fail(
          WrongShape(kBatch, "statements has " + std::to_string(items->size()) + " entries"));
    }
    std::vector<Statement> statements;
    for (size_t i = 0; i < items->size(); ++i) {
      auto statement = ToStatement((*items)[i], kBatch, "statements[" + std::to_string(i) + "]: ");
      if (!statement) co_return Fail(statement.error());
      statements.push_back(std::move(*statement));
    }
    auto limits = LimitsOf(request, *backend_);
    if (!limits) co_return Fail(limits.error());
    auto transaction = co_await backend_->Begin(*limits);
    if (!transaction) co_return Fail(AtDeadline(std::move(transaction.error()), *limits));
    uint64_t affected = 0;
    for (size_t i = 0; i < statements.size(); ++i) {
      auto result = co_await (*transaction)->Run(std::move(statements[i]));
      if (!result) {
        Error error = AtDeadline(std::move(result.error()), *limits);
        error.fields.emplace_back("statement_index", std::to_string(i));
        co_await (*transaction)->Rollback();
        co_return Fail(std::move(error));
      }
      affected += result->rows_affected;
    }
    if (auto done = co_await (*transaction)->Commit(); !done)
      co_return Fail(AtDeadline(std::move(done.error()), *limits));
    co_return Response::Json(
        "{\"statements_executed\":" + std::to_string(statements.size()) +
        ",\"status\":\"ok\",\"total_rows_affected\":" + std::to_string(affected) + "}");
  }

  asio::awaitable<Result<Response>> Script(Request& request) {
    static constexpr std::string_view kScript =
        R"({"script": string, "input": any, "timeout": seconds or duration})";
    auto body = ParseJsonBody(request, kScript);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kScript, "not an object"));
    const json::value* script = obj->if_contains("script");
    if (!script) co_return Fail(WrongShape(kScript, "missing field script"));
    if (!script->is_string()) co_return Fail(WrongShape(kScript, "script is not a string"));
    sql::script::ScriptJob job;
    job.source = std::string(script->get_string());
    if (const json::value* input = obj->if_contains("input"))
      job.input_json = json::serialize(*input);
    job.timeout = script_options_.timeout;
    if (const json::value* timeout = obj->if_contains("timeout"); timeout && !timeout->is_null()) {
      auto wanted = JsonDuration(*timeout);
      if (!wanted) co_return Fail(WrongShape(kScript, "timeout is not a positive duration"));
      if (*wanted > script_options_.max_timeout) {
        co_return Fail(WrongShape(kScript, "timeout is above the maximum of " +
                                               std::to_string(script_options_.max_timeout.count()) +
                                               " ms"));
      }
      job.timeout = *wanted;
    }
    auto limits = LimitsOf(request, *backend_);
    if (!limits) co_return Fail(limits.error());
    job.sql_limits = *limits;
    job.trace_id = request.trace_id;
    auto outcome = co_await scripts_->Run(std::move(job));
    if (!outcome) co_return Fail(outcome.error());
    co_return Response::Json("{\"result\":" + outcome->result_json + ",\"queries_executed\":" +
                             std::to_string(outcome->queries_executed) + "}");
  }

  std::unique_ptr<TimedSqlBackend> backend_;
  sql::script::ScriptOptions script_options_;
  std::unique_ptr<sql::script::ScriptRunner> scripts_;  // null without MIKCAR_WITH_SQL_SCRIPT
};

}  // namespace

BackendRegistry<sql::SqlBackend>& SqlService::Registry() {
  return ServiceRegistry(&sql::RegisterBuiltinBackends);
}

Result<std::unique_ptr<Sidecar>> SqlService::FromUrl(std::string_view url) {
  auto split = TakeScriptOptions(url);
  if (!split) return Fail(split.error());
  auto backend = Registry().Create(split->first);
  if (!backend) return Fail(backend.error());
  return std::unique_ptr<Sidecar>(std::make_unique<SqlSidecar>(std::move(*backend), split->second));
}

std::unique_ptr<Sidecar> SqlService::FromBackend(std::unique_ptr<sql::SqlBackend> backend) {
  return std::make_unique<SqlSidecar>(std::move(backend), sql::script::ScriptOptions{});
}

}  // namespace mikcar
