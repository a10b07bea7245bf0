// Redis-style glob patterns for /kv/keys: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, and `\` escapes,
// anchored at both ends, matched on bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mikcar::kv {

// Adds the pattern bytes it compared to `*work` (given): a keys scan's budget, see kv_rules.h.
bool GlobMatch(std::string_view pattern, std::string_view text, size_t* work = nullptr);
// The literal bytes every match must start with (escapes resolved), used as a range-scan start.
std::string GlobLiteralPrefix(std::string_view pattern);

}  // namespace mikcar::kv
