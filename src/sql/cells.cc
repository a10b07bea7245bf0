#include "sql/cells.h"

#include <charconv>
#include <cmath>

#include "common/base64.h"
#include "common/json.h"

namespace mikcar::sql {

namespace {
constexpr int64_t kMaxExact = int64_t{1} << 53;
}

std::string IntegerCell(int64_t value) {
  std::string digits = std::to_string(value);
  if (value > kMaxExact || value < -kMaxExact) return "\"" + digits + "\"";
  return digits;
}

std::string IntegerTextCell(std::string_view digits) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size()) return JsonQuote(digits);
  return IntegerCell(value);
}

std::string RealCell(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[32];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, value);  // shortest round-trip form
  std::string out(buf, ptr);
  return out;
}

std::string BytesCell(std::string_view bytes) {
  return "{\"base64\":\"" + Base64Encode(bytes) + "\"}";
}

}  // namespace mikcar::sql
