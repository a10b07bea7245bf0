// Bearer-token check, constant time in the token's content and length.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "mikcar/error.h"

namespace mikcar::http {

class TokenAuth {
 public:
  // An empty token turns authentication off (every request passes).
  explicit TokenAuth(std::string_view token);

  bool enabled() const { return enabled_; }
  // Checks an `Authorization` header value. Errors are UNAUTHORIZED with a message saying what
  // was expected (missing header, wrong scheme, empty or wrong token).
  Result<void> Check(std::string_view authorization) const;

 private:
  bool enabled_ = false;
  std::array<unsigned char, 32> digest_{};  // SHA-256 of the token
};

}  // namespace mikcar::http
