// JSON cells of SPEC §5.2, shared by the SQL backends: each database value becomes JSON text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mikcar::sql {

// A number; beyond ±2^53 (not exact in a JSON double) a string of its digits.
std::string IntegerCell(int64_t value);
// The same rule for a value already in decimal text (PostgreSQL int8).
std::string IntegerTextCell(std::string_view digits);
// A number; NaN and ±Infinity are null (JSON has no such numbers).
std::string RealCell(double value);
// {"base64": "..."}
std::string BytesCell(std::string_view bytes);

}  // namespace mikcar::sql
