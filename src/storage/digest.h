// MD5 over a streamed body (the ETag and the Content-MD5 check) and the ETag it gives.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/hex.h"

namespace mikcar::storage {

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr);
  }
  void Update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
  // The 16 raw bytes. Call once.
  std::string Final() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), out, &n);
    return std::string(reinterpret_cast<char*>(out), n);
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

// "\"<32 hex digits>\"" for a raw MD5.
inline std::string EtagOf(std::string_view md5) { return "\"" + HexEncode(md5) + "\""; }

}  // namespace mikcar::storage
