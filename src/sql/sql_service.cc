// The /sql service: parses and validates each request once, calls one SqlBackend, shapes the
// response (SPEC §5.2). Knows nothing about HTTP parsing or concrete databases.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>

#include "common/json.h"
#include "common/units.h"
#include "mikcar/sql/sql.h"
#include "sql/register.h"

namespace mikcar {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using sql::Param;
using sql::SqlBackend;
using sql::Statement;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBatchStatements = 1000;
constexpr size_t kMaxParams = 65535;  // PostgreSQL's protocol limit
constexpr auto kDeadlineMargin = std::chrono::milliseconds(50);

Result<Param> ToParam(const json::value& v) {
  Param p;
  switch (v.kind()) {
    case json::kind::null:
      break;
    case json::kind::bool_:
      p.kind = Param::Kind::kBool;
      p.boolean = v.get_bool();
      break;
    case json::kind::int64:
      p.kind = Param::Kind::kInt;
      p.integer = v.get_int64();
      break;
    case json::kind::uint64:  // above INT64_MAX: exact as text, the database converts it
      p.kind = Param::Kind::kText;
      p.text = std::to_string(v.get_uint64());
      break;
    case json::kind::double_:
      p.kind = Param::Kind::kFloat;
      p.real = v.get_double();
      break;
    case json::kind::string:
      p.kind = Param::Kind::kText;
      p.text = std::string(v.get_string());
      break;
    case json::kind::array:
    case json::kind::object:
      p.kind = Param::Kind::kJson;
      p.text = json::serialize(v);
      break;
  }
  return p;
}

// True if `sql` starts (after whitespace and comments) with a transaction-control keyword: mikcar
// runs every request in a transaction of its own, so such statements would leave a pooled
// connection inside one, or end a batch's transaction half-way.
bool IsTransactionControl(std::string_view sql) {
  size_t i = 0;
  for (;;) {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
    if (sql.substr(i, 2) == "--") {
      size_t end = sql.find('\n', i);
      i = end == std::string_view::npos ? sql.size() : end + 1;
    } else if (sql.substr(i, 2) == "/*") {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else {
      break;
    }
  }
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
  for (const char* keyword :
       {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}) {
    if (word == keyword) return true;
  }
  return false;
}

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

// The request's time bounds: ?statement_timeout= (default 30 s), never past the HTTP deadline.
Result<sql::Limits> LimitsOf(const Request& request) {
  sql::Limits limits;
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
  if (request.deadline != Clock::time_point::max() && left < limits.statement_timeout)
    limits.statement_timeout = std::max(left, std::chrono::milliseconds(1));
  return limits;
}

std::string RowsJson(const sql::ResultSet& result) {
  std::vector<std::string> names;
  names.reserve(result.columns.size());
  for (const auto& c : result.columns) names.push_back(JsonQuote(c.name) + ":");
  std::string out = "[";
  for (size_t r = 0; r < result.rows.size(); ++r) {
    if (r) out += ',';
    out += '{';
    const auto& row = result.rows[r];
    for (size_t c = 0; c < row.size() && c < names.size(); ++c) {
      if (c) out += ',';
      out += names[c];
      out += row[c];
    }
    out += '}';
  }
  out += ']';
  return out;
}

std::string ColumnsJson(const sql::ResultSet& result) {
  std::string out = "[";
  for (size_t c = 0; c < result.columns.size(); ++c) {
    if (c) out += ',';
    out += "{\"name\":" + JsonQuote(result.columns[c].name) +
           ",\"type\":" + JsonQuote(result.columns[c].type) + "}";
  }
  out += ']';
  return out;
}

class SqlSidecar final : public Sidecar {
 public:
  explicit SqlSidecar(std::unique_ptr<SqlBackend> backend) : backend_(std::move(backend)) {}

  std::string name() const override { return "sql"; }
  std::string backend_name() const override { return backend_->name(); }
  asio::awaitable<Result<void>> Ready() override { co_return co_await backend_->Ready(); }
  void Shutdown() override { backend_->Close(); }

  std::vector<Route> Routes() override {
    auto bind = [this](auto method) { return BindHandler(this, method); };
    return {
        {"POST", "/query", bind(&SqlSidecar::Query)},
        {"POST", "/execute", bind(&SqlSidecar::Execute)},
        {"POST", "/batch", bind(&SqlSidecar::Batch)},
    };
  }

 private:
  static constexpr std::string_view kExpected = R"({"sql": string, "params": [any]})";

  // The statement of a /query or /execute body and the request's limits.
  Result<std::pair<Statement, sql::Limits>> Parse(const Request& request) {
    auto body = ParseJsonBody(request, kExpected);
    if (!body) return Fail(body.error());
    auto statement = ToStatement(*body, kExpected);
    if (!statement) return Fail(statement.error());
    auto limits = LimitsOf(request);
    if (!limits) return Fail(limits.error());
    return std::pair{std::move(*statement), *limits};
  }

  asio::awaitable<Result<Response>> Query(Request& request) {
    auto parsed = Parse(request);
    if (!parsed) co_return Fail(parsed.error());
    auto result = co_await backend_->Run(std::move(parsed->first), parsed->second);
    if (!result) co_return Fail(result.error());
    co_return Response::Json("{\"rows\":" + RowsJson(*result) +
                             ",\"row_count\":" + std::to_string(result->rows.size()) +
                             ",\"columns\":" + ColumnsJson(*result) + "}");
  }

  asio::awaitable<Result<Response>> Execute(Request& request) {
    auto parsed = Parse(request);
    if (!parsed) co_return Fail(parsed.error());
    auto result = co_await backend_->Run(std::move(parsed->first), parsed->second);
    if (!result) co_return Fail(result.error());
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
    auto limits = LimitsOf(request);
    if (!limits) co_return Fail(limits.error());
    auto transaction = co_await backend_->Begin(*limits);
    if (!transaction) co_return Fail(transaction.error());
    uint64_t affected = 0;
    for (size_t i = 0; i < statements.size(); ++i) {
      auto result = co_await (*transaction)->Run(std::move(statements[i]));
      if (!result) {
        Error error = std::move(result.error());
        error.fields.emplace_back("statement_index", std::to_string(i));
        co_await (*transaction)->Rollback();
        co_return Fail(std::move(error));
      }
      affected += result->rows_affected;
    }
    if (auto done = co_await (*transaction)->Commit(); !done) co_return Fail(done.error());
    co_return Response::Json(
        "{\"statements_executed\":" + std::to_string(statements.size()) +
        ",\"status\":\"ok\",\"total_rows_affected\":" + std::to_string(affected) + "}");
  }

  std::unique_ptr<SqlBackend> backend_;
};

}  // namespace

BackendRegistry<sql::SqlBackend>& SqlService::Registry() {
  return ServiceRegistry(&sql::RegisterBuiltinBackends);
}

Result<std::unique_ptr<Sidecar>> SqlService::FromUrl(std::string_view url) {
  auto backend = Registry().Create(url);
  if (!backend) return Fail(backend.error());
  return FromBackend(std::move(*backend));
}

std::unique_ptr<Sidecar> SqlService::FromBackend(std::unique_ptr<sql::SqlBackend> backend) {
  return std::make_unique<SqlSidecar>(std::move(backend));
}

}  // namespace mikcar
