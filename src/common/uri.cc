#include "mikcar/uri.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "common/hex.h"

namespace mikcar {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Query parameter names whose values are credentials.
bool IsSecretParam(std::string_view name) {
  static constexpr std::array kSecret = {
      "password",      "pass",   "pwd",           "token",
      "key",           "secret", "access_key_id", "secret_access_key",
      "session_token", "sig",    "signature",     "sas",
      "account_key",   "auth"};
  std::string lower = Lower(name);
  for (std::string_view s : kSecret) {
    if (lower == s || lower.find(s) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

Result<std::string> PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) {
        return Fail(ErrorCode::kBadRequest,
                    "malformed percent-encoding: '%' must be followed by two hex digits");
      }
      int hi = HexDigitValue(in[i + 1]), lo = HexDigitValue(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return Fail(ErrorCode::kBadRequest,
                    "malformed percent-encoding: '%' must be followed by two hex digits");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string> Uri::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

Result<Uri> ParseUri(std::string_view url) {
  Uri uri;
  size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Fail(ErrorCode::kBadRequest,
                "malformed URL: expected scheme://..., e.g. memory:// or file:///var/lib/mikcar");
  }
  uri.scheme = Lower(url.substr(0, colon));
  for (char c : uri.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return Fail(ErrorCode::kBadRequest,
                  "malformed URL: invalid character in scheme; expected scheme://...");
    }
  }
  std::string_view rest = url.substr(colon + 1);
  // Split off the query.
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      authority = authority.substr(at + 1);
      std::string_view user = userinfo, pass;
      if (size_t c = userinfo.find(':'); c != std::string_view::npos) {
        user = userinfo.substr(0, c);
        pass = userinfo.substr(c + 1);
      }
      auto u = PercentDecode(user);
      auto p = PercentDecode(pass);
      if (!u || !p)
        return Fail(ErrorCode::kBadRequest, "malformed URL: bad percent-encoding in user info");
      uri.user = std::move(*u);
      uri.password = std::move(*p);
    }
    std::string_view host = authority, port;
    if (authority.starts_with('[')) {  // IPv6 literal
      size_t close = authority.find(']');
      if (close == std::string_view::npos) {
        return Fail(ErrorCode::kBadRequest,
                    "malformed URL: unterminated IPv6 address; expected [addr]:port");
      }
      host = authority.substr(1, close - 1);
      std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':')
          return Fail(ErrorCode::kBadRequest, "malformed URL: expected ':' after ']'");
        port = after.substr(1);
      }
    } else if (size_t c = authority.rfind(':'); c != std::string_view::npos) {
      host = authority.substr(0, c);
      port = authority.substr(c + 1);
    }
    auto h = PercentDecode(host);
    if (!h) return Fail(ErrorCode::kBadRequest, "malformed URL: bad percent-encoding in host");
    uri.host = std::move(*h);
    if (!port.empty()) {
      unsigned value = 0;
      for (char c : port) {
        if (!std::isdigit(static_cast<unsigned char>(c)) || value > 65535) {
          return Fail(ErrorCode::kBadRequest, "malformed URL: port must be a number 1-65535");
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
      }
      if (value == 0 || value > 65535) {
        return Fail(ErrorCode::kBadRequest, "malformed URL: port must be a number 1-65535");
      }
      uri.port = static_cast<uint16_t>(value);
    }
    auto p = PercentDecode(path);
    if (!p) return Fail(ErrorCode::kBadRequest, "malformed URL: bad percent-encoding in path");
    uri.path = std::move(*p);
  } else {
    uri.path = std::string(rest);  // opaque form, e.g. sqlite::memory:
  }
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto k = PercentDecode(pair.substr(0, eq), true);
    auto v = PercentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                           true);
    if (!k || !v)
      return Fail(ErrorCode::kBadRequest, "malformed URL: bad percent-encoding in query");
    uri.query.emplace_back(std::move(*k), std::move(*v));
  }
  return uri;
}

std::string RedactUri(std::string_view url) {
  std::string out;
  std::string_view rest = url;
  std::string_view query;
  bool has_query = false;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    has_query = true;
  }
  // user:password@ → user:REDACTED@
  size_t scheme_end = rest.find("://");
  if (scheme_end != std::string_view::npos) {
    size_t auth_start = scheme_end + 3;
    size_t auth_end = rest.find('/', auth_start);
    std::string_view authority =
        rest.substr(auth_start, auth_end == std::string_view::npos ? std::string_view::npos
                                                                   : auth_end - auth_start);
    size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      size_t c = userinfo.find(':');
      out.append(rest.substr(0, auth_start));
      if (c != std::string_view::npos) {
        out.append(userinfo.substr(0, c)).append(":REDACTED");
      } else {
        out.append(userinfo);
      }
      out.append(rest.substr(auth_start + at));
    } else {
      out.append(rest);
    }
  } else {
    out.append(rest);
  }
  if (has_query) {
    out.push_back('?');
    bool first = true;
    while (true) {
      size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      if (!first) out.push_back('&');
      first = false;
      size_t eq = pair.find('=');
      std::string_view name = pair.substr(0, eq);
      auto decoded = PercentDecode(name, true);
      if (eq != std::string_view::npos && IsSecretParam(decoded ? *decoded : std::string(name))) {
        out.append(name).append("=REDACTED");
      } else {
        out.append(pair);
      }
      if (amp == std::string_view::npos) break;
      query = query.substr(amp + 1);
    }
  }
  return out;
}

}  // namespace mikcar
