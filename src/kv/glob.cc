#include "kv/glob.h"

#include <utility>

namespace mikcar::kv {
namespace {

// Matches one pattern element at `p` against byte `c`; sets `next` to the element's end.
bool MatchOne(std::string_view pattern, size_t p, unsigned char c, size_t& next) {
  char pc = pattern[p];
  if (pc == '?') {
    next = p + 1;
    return true;
  }
  if (pc == '\\' && p + 1 < pattern.size()) {
    next = p + 2;
    return static_cast<unsigned char>(pattern[p + 1]) == c;
  }
  if (pc == '[') {
    // Redis's rules, byte for byte (util.c stringmatchlen): `]` closes the class even right
    // after `[` or `[^` (so `[]` matches nothing and `[^]` any byte); an escape only makes the
    // next byte literal; `x-y` is a range when two more bytes follow the `x`, whatever they are
    // (`[a-]]` is the range a..], closed by the second `]`); an unterminated class runs to the end.
    size_t i = p + 1;
    bool negate = i < pattern.size() && pattern[i] == '^';
    if (negate) ++i;
    bool matched = false;
    for (; i < pattern.size() && pattern[i] != ']'; ++i) {
      if (pattern[i] == '\\' && i + 1 < pattern.size()) {
        ++i;
        matched = matched || static_cast<unsigned char>(pattern[i]) == c;
      } else if (i + 2 < pattern.size() && pattern[i + 1] == '-') {
        auto lo = static_cast<unsigned char>(pattern[i]);
        auto hi = static_cast<unsigned char>(pattern[i + 2]);
        if (lo > hi) std::swap(lo, hi);
        matched = matched || (c >= lo && c <= hi);
        i += 2;
      } else {
        matched = matched || static_cast<unsigned char>(pattern[i]) == c;
      }
    }
    next = i < pattern.size() ? i + 1 : i;
    return matched != negate;
  }
  next = p + 1;
  return static_cast<unsigned char>(pc) == c;
}

}  // namespace

// Iterative matcher with single-star backtracking: O(len(pattern) × len(text)) worst case, never
// exponential. That is still up to a million steps for one long key, so the caller charges
// `*work` (pattern bytes compared) against its scan budget.
bool GlobMatch(std::string_view pattern, std::string_view text, size_t* work) {
  size_t p = 0, t = 0, steps = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  bool matched = [&] {
    while (t < text.size()) {
      if (p < pattern.size() && pattern[p] == '*') {
        while (p < pattern.size() && pattern[p] == '*') ++p;
        if (p == pattern.size()) return true;
        star_p = p;
        star_t = t;
        continue;
      }
      size_t next = p + 1;
      bool one =
          p < pattern.size() && MatchOne(pattern, p, static_cast<unsigned char>(text[t]), next);
      steps += next - p;
      if (one) {
        p = next;
        ++t;
        continue;
      }
      if (star_p == std::string_view::npos) return false;
      p = star_p;
      t = ++star_t;
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
  }();
  if (work) *work += steps + 1;
  return matched;
}

std::string GlobLiteralPrefix(std::string_view pattern) {
  std::string prefix;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '*' || c == '?' || c == '[') break;
    if (c == '\\') {
      if (i + 1 >= pattern.size()) break;
      prefix.push_back(pattern[++i]);
      continue;
    }
    prefix.push_back(c);
  }
  return prefix;
}

}  // namespace mikcar::kv
