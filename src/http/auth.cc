#include "http/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <strings.h>

namespace mikcar::http {

// Comparing SHA-256 digests with CRYPTO_memcmp makes the check independent of where the first
// differing byte is and of the presented token's length.
TokenAuth::TokenAuth(std::string_view token) : enabled_(!token.empty()) {
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest_.data());
}

Result<void> TokenAuth::Check(std::string_view authorization) const {
  if (!enabled_) return {};
  if (authorization.empty()) {
    return Fail(ErrorCode::kUnauthorized,
                "missing Authorization header; expected 'Authorization: Bearer <token>'");
  }
  constexpr std::string_view kScheme = "Bearer ";
  // HTTP parsers strip trailing whitespace, so "Bearer " with an empty token arrives as "Bearer".
  if (authorization.size() == kScheme.size() - 1 &&
      strncasecmp(authorization.data(), kScheme.data(), authorization.size()) == 0) {
    return Fail(ErrorCode::kUnauthorized,
                "empty bearer token; expected 'Authorization: Bearer <token>'");
  }
  if (authorization.size() < kScheme.size() ||
      strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0) {
    return Fail(ErrorCode::kUnauthorized,
                "unsupported authorization scheme; expected 'Authorization: Bearer <token>'");
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) {
    return Fail(ErrorCode::kUnauthorized,
                "empty bearer token; expected 'Authorization: Bearer <token>'");
  }
  std::array<unsigned char, 32> presented{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), presented.data());
  if (CRYPTO_memcmp(presented.data(), digest_.data(), presented.size()) != 0) {
    return Fail(ErrorCode::kUnauthorized, "invalid bearer token");
  }
  return {};
}

}  // namespace mikcar::http
