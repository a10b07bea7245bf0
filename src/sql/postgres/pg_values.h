// PostgreSQL values in text format → JSON cells of SPEC §5.2, by type OID. The session runs with
// DateStyle=ISO, TimeZone=UTC, IntervalStyle=postgres and extra_float_digits=3, which the
// conversions rely on.
#pragma once

#include <string>
#include <string_view>

namespace mikcar::sql {

using PgOid = unsigned int;

// The JSON cell of one non-null value of type `oid`.
std::string PgCell(PgOid oid, std::string_view text);
// The type's name ("int4", "_text", …) for built-in types; "unknown" for others (enums, domains).
std::string PgTypeName(PgOid oid);

}  // namespace mikcar::sql
