#include "storage/presign.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>

#include "common/hex.h"

namespace mikcar::storage {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Percent-encodes a path for a URL, keeping '/' and unreserved characters.
std::string EncodePath(std::string_view path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

UrlSigner::UrlSigner(std::string secret) : secret_(std::move(secret)) {
  if (secret_.empty()) {
    unsigned char key[32];
    RAND_bytes(key, sizeof key);
    secret_.assign(reinterpret_cast<char*>(key), sizeof key);
  }
}

std::string UrlSigner::Mac(std::string_view method, std::string_view path,
                           std::string_view expires) const {
  // Length-prefixed, so no path and expiry can be re-split into another valid pair.
  std::string message;
  message.append(method).append("\n").append(std::to_string(path.size())).append(":");
  message.append(path).append("\n").append(expires);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &n);
  return HexEncode(std::string_view(reinterpret_cast<char*>(mac), n));
}

std::string UrlSigner::Sign(std::string_view mount, std::string_view method, std::string_view path,
                            std::chrono::system_clock::time_point expires) const {
  std::string at = std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count());
  std::string url(mount);
  url.append("/object/").append(EncodePath(path));
  url.append("?X-Mikcar-Method=").append(method);
  url.append("&X-Mikcar-Expires=").append(at);
  url.append("&X-Mikcar-Signature=").append(Mac(method, path, at));
  return url;
}

bool UrlSigner::IsSigned(const Request& request) {
  return request.query_param("X-Mikcar-Signature") || request.query_param("X-Mikcar-Expires") ||
         request.query_param("X-Mikcar-Method");
}

Result<void> UrlSigner::Verify(const Request& request, std::string_view path) const {
  auto method = request.query_param("X-Mikcar-Method");
  auto expires = request.query_param("X-Mikcar-Expires");
  auto signature = request.query_param("X-Mikcar-Signature");
  if (!method || !expires || !signature) {
    return Fail(ErrorCode::kForbidden,
                "presigned URL is incomplete: expected X-Mikcar-Method, X-Mikcar-Expires and "
                "X-Mikcar-Signature");
  }
  // HEAD is allowed with a GET signature, as with S3.
  std::string_view used = request.method == "HEAD" ? "GET" : std::string_view(request.method);
  std::string expected = Mac(*method, path, *expires);
  if (signature->size() != expected.size() ||
      CRYPTO_memcmp(signature->data(), expected.data(), expected.size()) != 0) {
    return Fail(ErrorCode::kForbidden,
                "presigned URL signature does not match this object, method and expiry");
  }
  if (*method != used) {
    return Fail(ErrorCode::kForbidden,
                "presigned URL is for " + *method + ", not " + std::string(request.method));
  }
  int64_t at = 0;
  auto [ptr, ec] = std::from_chars(expires->data(), expires->data() + expires->size(), at);
  if (ec != std::errc() || ptr != expires->data() + expires->size())
    return Fail(ErrorCode::kForbidden, "presigned URL expiry is not a number");
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  if (ec != std::errc() || at <= now)
    return Fail(ErrorCode::kForbidden, "presigned URL has expired");
  return {};
}

}  // namespace mikcar::storage
