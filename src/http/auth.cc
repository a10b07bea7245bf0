#include "http/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <strings.h>

#include <algorithm>

#include "common/hex.h"

namespace mikcar::http {
namespace {

std::array<unsigned char, 32> Sha256(std::string_view text) {
  std::array<unsigned char, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

// 64 hex digits (either case) into `out`; false when malformed.
bool DecodeSha256(std::string_view hex, std::array<unsigned char, 32>& out) {
  if (hex.size() != 2 * out.size()) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    int high = HexDigitValue(hex[2 * i]), low = HexDigitValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<unsigned char>(high * 16 + low);
  }
  return true;
}

}  // namespace

TokenAuth::TokenAuth(std::string_view token) {
  if (!token.empty()) entries_.push_back({Sha256(token), true, {}});
}

Result<TokenAuth> TokenAuth::Create(std::string_view token, std::vector<ScopedToken> scoped) {
  TokenAuth auth(token);
  for (size_t i = 0; i < scoped.size(); ++i) {
    ScopedToken& t = scoped[i];
    if (t.scope.name.empty()) t.scope.name = "tokens[" + std::to_string(i) + "]";
    Entry entry{{}, false, std::move(t.scope)};
    auto bad = [&entry](std::string_view what) {
      return Fail(ErrorCode::kBadRequest, "token '" + entry.scope.name + "': " + std::string(what));
    };
    if (t.token.empty() == t.token_sha256.empty())
      return bad("expected exactly one of token and token_sha256");
    if (!t.token.empty()) {
      entry.digest = Sha256(t.token);
    } else if (!DecodeSha256(t.token_sha256, entry.digest)) {
      return bad("token_sha256: expected 64 hex digits (sha256sum of the token)");
    }
    if (entry.scope.services.empty())
      return bad("services: expected at least one service the token may call");
    for (const std::string& prefix : entry.scope.prefixes) {
      if (prefix.empty()) return bad("prefixes: expected non-empty prefixes");
    }
    // Prefixes confine names; SQL statements name no key, path or queue.
    const auto& services = entry.scope.services;
    if (!entry.scope.prefixes.empty() &&
        std::find(services.begin(), services.end(), "sql") != services.end()) {
      return bad("prefixes cannot confine SQL statements; give sql to a token without prefixes");
    }
    for (const Entry& other : auth.entries_) {
      if (other.digest == entry.digest) {
        return bad("the token is the same as " + (other.full_access
                                                      ? std::string("the full-access token")
                                                      : "token '" + other.scope.name + "'"));
      }
    }
    auth.entries_.push_back(std::move(entry));
  }
  return auth;
}

std::vector<const TokenScope*> TokenAuth::scopes() const {
  std::vector<const TokenScope*> out;
  for (const Entry& entry : entries_) {
    if (!entry.full_access) out.push_back(&entry.scope);
  }
  return out;
}

// Comparing SHA-256 digests with CRYPTO_memcmp makes the check independent of where the first
// differing byte is and of the presented token's length; every entry is compared, so the time
// does not say which token matched either.
Result<const TokenScope*> TokenAuth::Check(std::string_view authorization) const {
  if (entries_.empty()) return nullptr;
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
  const Digest presented = Sha256(token);
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {
    bool same = CRYPTO_memcmp(presented.data(), entry.digest.data(), presented.size()) == 0;
    match = same ? &entry : match;
  }
  if (match == nullptr) return Fail(ErrorCode::kUnauthorized, "invalid bearer token");
  return match->full_access ? nullptr : &match->scope;
}

}  // namespace mikcar::http
