#include "sql/statement_json.h"

#include <boost/json/serialize.hpp>
#include <cctype>

#include "common/json.h"

namespace mikcar::sql {

namespace json = boost::json;

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
  // The first word, upper-cased; no keyword is longer than 9 letters.
  char word[10];
  size_t len = 0;
  for (; i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])); ++i) {
    if (len == sizeof word) return false;
    word[len++] = static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
  }
  const std::string_view first(word, len);
  for (std::string_view keyword :
       {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}) {
    if (first == keyword) return true;
  }
  return false;
}

void AppendRowsJson(std::string& out, const sql::ResultSet& result) {
  std::vector<std::string> names;
  names.reserve(result.columns.size());
  for (const auto& c : result.columns) names.push_back(JsonQuote(c.name) + ":");
  out += '[';
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
}

std::string RowsJson(const sql::ResultSet& result) {
  std::string out;
  AppendRowsJson(out, result);
  return out;
}

}  // namespace mikcar::sql
