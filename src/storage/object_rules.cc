#include "storage/object_rules.h"

#include <charconv>
#include <ctime>

#include "common/json.h"
#include "common/text.h"
#include "storage/digest.h"

namespace mikcar::storage {

Result<void> ValidatePath(std::string_view path) {
  if (path.empty()) return Fail(ErrorCode::kBadRequest, "Path cannot be empty");
  if (path.front() == '/' || path.front() == '\\')
    return Fail(ErrorCode::kBadRequest, "Absolute paths not allowed");
  if (path.find('\0') != std::string_view::npos)
    return Fail(ErrorCode::kBadRequest, "Null bytes not allowed in path");
  for (size_t start = 0;;) {
    size_t end = path.find('/', start);
    std::string_view segment = path.substr(start, end - start);
    // Windows clients send '\' as a separator: "..\" is traversal too.
    if (segment == ".." || segment.starts_with("..\\") || segment.ends_with("\\..") ||
        segment.find("\\..\\") != std::string_view::npos) {
      return Fail(ErrorCode::kBadRequest, "Path traversal not allowed");
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (path.size() > kMaxPathBytes) {
    return Fail(ErrorCode::kBadRequest,
                "path is " + std::to_string(path.size()) + " bytes; expected at most 1024 bytes");
  }
  if (!IsValidUtf8(path))
    return Fail(ErrorCode::kBadRequest, "path is not valid UTF-8; expected UTF-8 text");
  return {};
}

namespace {

std::optional<uint64_t> Number(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<RangeSpec> ParseRange(std::string_view header) {
  header = TrimBlanks(header);
  if (!header.starts_with("bytes=")) return std::nullopt;
  std::string_view spec = TrimBlanks(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return std::nullopt;
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::string_view first = TrimBlanks(spec.substr(0, dash));
  std::string_view last = TrimBlanks(spec.substr(dash + 1));
  RangeSpec range;
  if (first.empty()) {  // suffix: the last n bytes
    auto n = Number(last);
    if (!n) return std::nullopt;
    range.suffix = *n;
    return range;
  }
  range.first = Number(first);
  if (!range.first) return std::nullopt;
  if (!last.empty()) {
    range.last = Number(last);
    if (!range.last || *range.last < *range.first) return std::nullopt;
  }
  return range;
}

bool EtagListMatches(std::string_view header, std::string_view etag) {
  auto opaque = [](std::string_view tag) {
    tag = TrimBlanks(tag);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    return tag;
  };
  if (TrimBlanks(header) == "*") return true;
  std::string_view want = opaque(etag);
  while (!header.empty()) {
    size_t comma = header.find(',');
    if (opaque(header.substr(0, comma)) == want) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

namespace {
constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
}  // namespace

std::string HttpDate(TimePoint t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::optional<TimePoint> ParseHttpDate(std::string_view s) {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  s = TrimBlanks(s);
  if (s.size() != 29 || s.substr(3, 2) != ", " || s.substr(25) != " GMT") return std::nullopt;
  auto num = [&](size_t at, size_t len) { return Number(s.substr(at, len)); };
  auto day = num(5, 2), year = num(12, 4), hour = num(17, 2), min = num(20, 2), sec = num(23, 2);
  int month = -1;
  for (int i = 0; i < 12; ++i)
    if (s.substr(8, 3) == kMonths[i]) month = i;
  if (!day || !year || !hour || !min || !sec || month < 0 || s[7] != ' ' || s[11] != ' ' ||
      s[16] != ' ' || s[19] != ':' || s[22] != ':' || *day < 1 || *day > 31 || *hour > 23 ||
      *min > 59 || *sec > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = static_cast<int>(*year) - 1900;
  tm.tm_mon = month;
  tm.tm_mday = static_cast<int>(*day);
  tm.tm_hour = static_cast<int>(*hour);
  tm.tm_min = static_cast<int>(*min);
  tm.tm_sec = static_cast<int>(*sec);
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace mikcar::storage

namespace mikcar::storage {

Result<void> CheckPutConditions(const PutOptions& options, const ObjectInfo* current) {
  if (options.if_match && (!current || !EtagListMatches(*options.if_match, current->etag))) {
    return Fail(ErrorCode::kPreconditionFailed, current ? "If-Match: the object's ETag is " +
                                                              current->etag + "; expected one of " +
                                                              *options.if_match
                                                        : "If-Match: the object does not exist");
  }
  if (options.if_none_match && current && EtagListMatches(*options.if_none_match, current->etag)) {
    return Fail(ErrorCode::kPreconditionFailed,
                "If-None-Match: the object exists (ETag " + current->etag + ")");
  }
  return {};
}

std::optional<ByteRange> SelectRange(Object& object, const std::optional<RangeSpec>& range) {
  if (!range) return ByteRange{0, object.info.size};
  object.range = ResolveRange(*range, object.info.size);
  object.unsatisfiable = !object.range;
  return object.range;
}

Result<void> CheckDigest(const PutOptions& options, std::string_view md5) {
  if (options.md5 && *options.md5 != md5) {
    return Fail(ErrorCode::kBadDigest,
                "Content-MD5 does not match the body: the body's MD5 is " + EtagOf(md5));
  }
  return {};
}

}  // namespace mikcar::storage
