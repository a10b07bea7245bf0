// Bearer tokens: one full-access token and any number of scoped ones (SPEC §2.4), each checked in
// constant time in its content and length.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "mikcar/builder.h"
#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::http {

class TokenAuth {
 public:
  // One full-access token; empty turns authentication off (every request passes).
  explicit TokenAuth(std::string_view token);
  // The full-access token (may be empty) and the scoped tokens. BAD_REQUEST naming the entry
  // when a scoped token has no token or two, a malformed SHA-256, no services, an empty prefix,
  // prefixes with sql, or repeats another token. Service names are the server's to check.
  static Result<TokenAuth> Create(std::string_view token, std::vector<ScopedToken> scoped);

  bool enabled() const { return !entries_.empty(); }
  // Checks an `Authorization` header value: the presented token's scope, null for full access
  // (or when authentication is off). Errors are UNAUTHORIZED with a message saying what was
  // expected (missing header, wrong scheme, empty or wrong token). The scope lives as long as
  // this object.
  Result<const TokenScope*> Check(std::string_view authorization) const;
  // Every scope, in the order given.
  std::vector<const TokenScope*> scopes() const;

 private:
  using Digest = std::array<unsigned char, 32>;  // SHA-256 of a token
  struct Entry {
    Digest digest{};
    bool full_access = false;
    TokenScope scope;
  };
  std::vector<Entry> entries_;
};

}  // namespace mikcar::http
