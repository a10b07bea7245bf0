// Backend URLs: parsing, percent-decoding and redaction for logs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mikcar/error.h"

namespace mikcar {

// A parsed backend URL such as `redis://:pw@host:6379/2?prefix=app:` or `file:///var/lib/kv`.
// Components are percent-decoded. `sqlite::memory:` style opaque URLs keep everything after the
// first ':' in `path`.
struct Uri {
  std::string scheme;  // lower case
  std::string user;
  std::string password;
  std::string host;
  std::optional<uint16_t> port;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;

  std::optional<std::string> query_param(std::string_view name) const;
};

// Errors name what was expected; the message never contains the password.
Result<Uri> ParseUri(std::string_view url);

// The URL with its password and credential-like query parameters (password, token, key,
// secret, access_key_id, secret_access_key, sig, signature …) replaced by "REDACTED".
std::string RedactUri(std::string_view url);

// Percent-decodes once. '+' stays '+' unless `plus_is_space`. Malformed escapes → error.
Result<std::string> PercentDecode(std::string_view in, bool plus_is_space = false);

}  // namespace mikcar
