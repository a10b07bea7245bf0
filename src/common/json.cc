#include "common/json.h"

#include <strings.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace mikcar {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0, n = s.size();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else
      return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string JsonQuote(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  bool utf8 = IsValidUtf8(s);
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || (!utf8 && c >= 0x80)) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

Result<boost::json::value> ParseJsonBody(const Request& request, std::string_view expected,
                                         boost::json::storage_ptr storage) {
  std::string_view type = request.header("content-type");
  if (!type.empty()) {
    std::string_view media = type.substr(0, type.find(';'));
    while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
    bool json =
        strncasecmp(media.data(), "application/json", media.size()) == 0 && media.size() == 16;
    bool plus_json = media.size() > 17 && strncasecmp(media.data(), "application/", 12) == 0 &&
                     strncasecmp(media.data() + media.size() - 5, "+json", 5) == 0;
    if (!json && !plus_json) {
      return Fail(ErrorCode::kUnsupportedMediaType,
                  "expected Content-Type application/json; got '" + std::string(type) + "'");
    }
  }
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(request.body, ec, std::move(storage));
  if (ec) {
    std::string got = request.body.empty() ? "empty body" : "malformed JSON (" + ec.message() + ")";
    return Fail(ErrorCode::kBadRequest,
                "expected JSON body " + std::string(expected) + "; got: " + got);
  }
  return value;
}

Error WrongShape(std::string_view expected, std::string_view got) {
  return Error{ErrorCode::kUnprocessable,
               "expected JSON body " + std::string(expected) + "; got: " + std::string(got),
               {}};
}

}  // namespace mikcar
