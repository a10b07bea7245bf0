// mikcar-signed URLs for backends without native presigning (file, memory): an HMAC-SHA-256 over
// the method, the object path and the expiry, so the URL works without the bearer token for
// exactly that object, that method and until that time.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::storage {

class UrlSigner {
 public:
  // An empty secret gives a random one (URLs then die with the process).
  explicit UrlSigner(std::string secret);

  // "<mount>/object/<encoded
  // path>?X-Mikcar-Method=GET&X-Mikcar-Expires=<unix>&X-Mikcar-Signature=<hex>"
  std::string Sign(std::string_view mount, std::string_view method, std::string_view path,
                   std::chrono::system_clock::time_point expires) const;
  // True if `request` carries any of the signature parameters.
  static bool IsSigned(const Request& request);
  // Success when the request's signature is valid for its method and `path` and not expired;
  // FORBIDDEN otherwise.
  Result<void> Verify(const Request& request, std::string_view path) const;

 private:
  std::string Mac(std::string_view method, std::string_view path, std::string_view expires) const;
  std::string secret_;
};

}  // namespace mikcar::storage
