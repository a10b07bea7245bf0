// Statements and rows as JSON, shared by the /sql routes and /sql/script: a JSON parameter as a
// typed `Param`, the transaction-control check, result rows as a JSON array of objects.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

#include "mikcar/sql/backend.h"

namespace mikcar::sql {

// A JSON value as a statement parameter (SPEC §5.2: null, bool, i64, float, string, JSON).
Result<Param> ToParam(const boost::json::value& v);

// True if `sql` starts (after whitespace and comments) with a transaction-control keyword: mikcar
// runs every request in a transaction of its own, so such statements would leave a pooled
// connection inside one, or end a batch's transaction half-way.
bool IsTransactionControl(std::string_view sql);

// The rows of `result` as a JSON array of objects, keys in column order.
std::string RowsJson(const ResultSet& result);
void AppendRowsJson(std::string& out, const ResultSet& result);

}  // namespace mikcar::sql
