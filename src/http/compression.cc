#include "http/compression.h"

#include <strings.h>
#include <zlib.h>

#include <cstdlib>

#include "common/text.h"

namespace mikcar::http {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

// An explicit gzip entry decides; "*" only applies when gzip is not listed (RFC 9110 §12.5.3),
// so "*;q=0, gzip" accepts and "*, gzip;q=0" refuses.
bool AcceptsGzip(std::string_view accept_encoding) {
  std::optional<bool> wildcard;
  while (!accept_encoding.empty()) {
    size_t comma = accept_encoding.find(',');
    std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view{} : accept_encoding.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = TrimBlanks(item.substr(0, semi));
    bool gzip = IEquals(coding, "gzip") || IEquals(coding, "x-gzip");
    if (!gzip && coding != "*") continue;
    bool accepted = true;
    if (semi != std::string_view::npos) {
      std::string_view param = TrimBlanks(item.substr(semi + 1));
      if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        std::string q(param.substr(2));
        accepted = std::strtod(q.c_str(), nullptr) > 0;
      }
    }
    if (gzip) return accepted;
    wildcard = accepted;
  }
  return wildcard.value_or(false);
}

bool IsCompressible(std::string_view type) {
  type = TrimBlanks(type.substr(0, type.find(';')));
  if (type.size() >= 5 && strncasecmp(type.data(), "text/", 5) == 0) return true;
  for (std::string_view t : {"application/json", "application/xml", "application/javascript",
                             "image/svg+xml", "application/x-ndjson"}) {
    if (IEquals(type, t)) return true;
  }
  return type.size() > 5 && (strncasecmp(type.data() + type.size() - 5, "+json", 5) == 0 ||
                             strncasecmp(type.data() + type.size() - 4, "+xml", 4) == 0);
}

std::optional<std::string> Gzip(std::string_view data) {
  z_stream zs{};
  // windowBits 15 + 16 = gzip wrapper; level 1 favours speed, as sidecar responses are small.
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return std::nullopt;
  std::string out;
  out.resize(deflateBound(&zs, data.size()));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END || zs.total_out >= data.size()) return std::nullopt;
  out.resize(zs.total_out);
  return out;
}

}  // namespace mikcar::http
