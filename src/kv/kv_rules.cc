#include "kv/kv_rules.h"

#include <charconv>
#include <chrono>

#include "common/clock.h"

namespace mikcar::kv {

int64_t NowMs() { return UnixNowMs(); }

Result<int64_t> AddToInteger(std::optional<std::string_view> value, int64_t by) {
  int64_t current = 0;
  if (value) {
    std::string_view v = *value;
    bool ok = !v.empty() && v.size() <= 20 && v != "-";
    for (size_t i = 0; ok && i < v.size(); ++i) {
      ok = (v[i] >= '0' && v[i] <= '9') || (i == 0 && v[i] == '-');
    }
    // Redis also refuses leading zeros ("007") and "-0".
    if (ok && v.size() > 1 && (v[0] == '0' || (v[0] == '-' && v[1] == '0'))) ok = false;
    if (ok) {
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), current);
      ok = ec == std::errc() && ptr == v.data() + v.size();
    }
    if (!ok)
      return Fail(ErrorCode::kNotAnInteger,
                  "value is not an integer or out of range; expected a base-10 64-bit integer");
  }
  int64_t result = 0;
  if (__builtin_add_overflow(current, by, &result)) {
    return Fail(ErrorCode::kOverflow, "increment or decrement would overflow a 64-bit integer");
  }
  return result;
}

std::string EncodeCursor(std::string_view last_key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(last_key.size() * 2);
  for (unsigned char c : last_key) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

Result<std::string> DecodeCursor(std::string_view cursor) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (cursor.size() % 2 != 0)
    return Fail(ErrorCode::kBadRequest,
                "cursor: expected a value returned by a previous keys call");
  std::string out;
  out.reserve(cursor.size() / 2);
  for (size_t i = 0; i < cursor.size(); i += 2) {
    int hi = nibble(cursor[i]), lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0)
      return Fail(ErrorCode::kBadRequest,
                  "cursor: expected a value returned by a previous keys call");
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace mikcar::kv
