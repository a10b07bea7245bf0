#include "common/units.h"

#include <charconv>
#include <limits>
#include <string>

#include "mikcar/http.h"

namespace mikcar {
namespace {

// Splits "12.5KiB" into the number and the suffix.
bool SplitNumber(std::string_view text, double& number, std::string_view& suffix) {
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i) return false;
  suffix = text.substr(i);
  return true;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  double number = 0;
  std::string_view suffix;
  const std::string expected =
      "expected a size such as 10MiB, 512KiB or 1048576; got '" + std::string(text) + "'";
  if (!SplitNumber(text, number, suffix)) return Fail(ErrorCode::kBadRequest, expected);
  double unit = 0;
  if (suffix.empty() || suffix == "B")
    unit = 1;
  else if (suffix == "KiB" || suffix == "K" || suffix == "k")
    unit = 1024.0;
  else if (suffix == "MiB" || suffix == "M")
    unit = 1024.0 * 1024;
  else if (suffix == "GiB" || suffix == "G")
    unit = 1024.0 * 1024 * 1024;
  else if (suffix == "TiB" || suffix == "T")
    unit = 1024.0 * 1024 * 1024 * 1024;
  else if (suffix == "KB" || suffix == "kB")
    unit = 1e3;
  else if (suffix == "MB")
    unit = 1e6;
  else if (suffix == "GB")
    unit = 1e9;
  else
    return Fail(ErrorCode::kBadRequest, expected);
  double bytes = number * unit;
  if (bytes > static_cast<double>(std::numeric_limits<uint64_t>::max() / 2)) {
    return Fail(ErrorCode::kBadRequest, expected);
  }
  return static_cast<uint64_t>(bytes);
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  double number = 0;
  std::string_view suffix;
  const std::string expected =
      "expected a duration such as 30s, 500ms, 2m or 30; got '" + std::string(text) + "'";
  if (!SplitNumber(text, number, suffix)) return Fail(ErrorCode::kBadRequest, expected);
  double ms = 0;
  if (suffix.empty() || suffix == "s")
    ms = number * 1000;
  else if (suffix == "ms")
    ms = number;
  else if (suffix == "m" || suffix == "min")
    ms = number * 60'000;
  else if (suffix == "h")
    ms = number * 3'600'000;
  else
    return Fail(ErrorCode::kBadRequest, expected);
  if (ms > 1e15) return Fail(ErrorCode::kBadRequest, expected);
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

Result<std::chrono::milliseconds> DurationParam(const Request& request, std::string_view name,
                                                std::chrono::milliseconds fallback,
                                                std::chrono::milliseconds max) {
  auto raw = request.query_param(name);
  if (!raw) return fallback;
  auto d = ParseDuration(*raw);
  if (!d || *d > max) {
    return Fail(ErrorCode::kBadRequest,
                std::string(name) + ": expected a duration in seconds (or 500ms, 2m) up to " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(max).count()) +
                    "s; got '" + *raw + "'");
  }
  return *d;
}

}  // namespace mikcar
