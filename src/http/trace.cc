#include "http/trace.h"

#include <random>

namespace mikcar::http {
namespace {

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// traceparent = version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex)
std::string_view TraceparentId(std::string_view tp) {
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return {};
  std::string_view version = tp.substr(0, 2), id = tp.substr(3, 32), parent = tp.substr(36, 16),
                   flags = tp.substr(53, 2);
  if (!IsHex(version) || version == "ff" || !IsHex(id) || !IsHex(parent) || !IsHex(flags))
    return {};
  if (id == std::string_view("00000000000000000000000000000000")) return {};
  if (parent == std::string_view("0000000000000000")) return {};
  if (version == "00" && tp.size() != 55) return {};
  // Later versions may append fields, but only after another '-'.
  if (tp.size() > 55 && tp[55] != '-') return {};
  return id;
}

}  // namespace

std::string NewUuidV4() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t words[2] = {rng(), rng()};
  words[0] = (words[0] & ~0xF000ull) | 0x4000ull;              // version 4
  words[1] = (words[1] & ~(0xC0ull << 56)) | (0x80ull << 56);  // variant 10
  std::string out(36, '-');
  // 8-4-4-4-12 hex digits: the dashes stay where the groups end.
  static constexpr uint8_t kAt[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  for (int i = 0; i < 16; ++i) {
    const auto byte = static_cast<uint8_t>(words[i / 8] >> (56 - 8 * (i % 8)));
    out[kAt[i]] = kHex[byte >> 4];
    out[kAt[i] + 1] = kHex[byte & 0xF];
  }
  return out;
}

std::string ResolveTraceId(std::string_view x_trace_id, std::string_view traceparent) {
  if (!x_trace_id.empty() && x_trace_id.size() <= 128) {
    bool printable = true;
    for (char c : x_trace_id) {
      if (c < 0x20 || c > 0x7e) {
        printable = false;
        break;
      }
    }
    if (printable) return std::string(x_trace_id);
  }
  if (std::string_view id = TraceparentId(traceparent); !id.empty()) return std::string(id);
  return NewUuidV4();
}

}  // namespace mikcar::http
