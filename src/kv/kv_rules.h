// Rules every KV backend shares: the clock, Redis integer arithmetic, keys cursors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mikcar/error.h"

namespace mikcar::kv {

// Wall-clock unix time in ms: TTLs are absolute so they survive restarts.
int64_t NowMs();
inline bool IsLive(int64_t expires_at_ms, int64_t now_ms) {
  return expires_at_ms == 0 || expires_at_ms > now_ms;
}

// `value` parsed as a Redis integer (optional '-', then 1–19 digits, no spaces) plus `by`.
// NOT_AN_INTEGER, OVERFLOW.
Result<int64_t> AddToInteger(std::optional<std::string_view> value, int64_t by);

// Cursors are the hex of the last key returned, so any key bytes survive JSON and URLs.
std::string EncodeCursor(std::string_view last_key);
Result<std::string> DecodeCursor(std::string_view cursor);

// A keys page examines at most this many keys beyond `limit`, and lets the glob matcher compare
// at most kMaxGlobWork pattern bytes, then returns with a cursor (possibly with no keys). The
// scan runs on an I/O thread: a pattern such as `g*aaa…ab` against long keys costs the pattern
// length times the key length per key, and without the budget one call over 20,000 keys of 1
// KiB held the thread for 6 s. 4M steps is a few milliseconds.
inline constexpr size_t kMaxKeysExamined = 100'000;
inline constexpr size_t kMaxGlobWork = 4'000'000;

}  // namespace mikcar::kv
