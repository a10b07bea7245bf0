#include "kv/glob.h"

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
    size_t i = p + 1;
    bool negate = i < pattern.size() && pattern[i] == '^';
    if (negate) ++i;
    bool matched = false;
    bool first = true;
    while (i < pattern.size() && (pattern[i] != ']' || first)) {
      first = false;
      unsigned char lo;
      if (pattern[i] == '\\' && i + 1 < pattern.size()) {
        lo = static_cast<unsigned char>(pattern[i + 1]);
        i += 2;
      } else {
        lo = static_cast<unsigned char>(pattern[i]);
        i += 1;
      }
      if (i + 1 < pattern.size() && pattern[i] == '-' && pattern[i + 1] != ']') {
        unsigned char hi;
        if (pattern[i + 1] == '\\' && i + 2 < pattern.size()) {
          hi = static_cast<unsigned char>(pattern[i + 2]);
          i += 3;
        } else {
          hi = static_cast<unsigned char>(pattern[i + 1]);
          i += 2;
        }
        if (lo > hi) std::swap(lo, hi);
        if (c >= lo && c <= hi) matched = true;
      } else if (c == lo) {
        matched = true;
      }
    }
    // An unterminated class runs to the end of the pattern (Redis does the same).
    next = i < pattern.size() ? i + 1 : i;
    return matched != negate;
  }
  next = p + 1;
  return static_cast<unsigned char>(pc) == c;
}

}  // namespace

// Iterative matcher with single-star backtracking: O(len(pattern) × len(text)) worst case, never
// exponential, so a hostile pattern cannot stall an I/O thread.
bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      while (p < pattern.size() && pattern[p] == '*') ++p;
      if (p == pattern.size()) return true;
      star_p = p;
      star_t = t;
      continue;
    }
    size_t next = 0;
    if (p < pattern.size() && MatchOne(pattern, p, static_cast<unsigned char>(text[t]), next)) {
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
