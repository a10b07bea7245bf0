// The object storage service (/storage): SPEC §4 routes over one `StorageBackend`.
//
//   auto storage = mikcar::StorageService::FromUrl("file:///var/lib/mikcar/objects");
//   builder.add(std::move(*storage));
//
// Presigned URLs of file and memory backends are signed with `StorageOptions::presign_secret`
// (HMAC-SHA-256); an empty secret makes the service generate one for the life of the process.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/registry.h"
#include "mikcar/sidecar.h"
#include "mikcar/storage/backend.h"

namespace mikcar {

struct StorageOptions {
  uint64_t max_object_size = 5ull << 30;  // PUT bodies above this → 413
  std::string presign_secret;             // key for mikcar-signed URLs; empty = random
};

class StorageService {
 public:
  // The backend registry for STORAGE_URL schemes, with the built-in backends registered.
  static BackendRegistry<storage::StorageBackend>& Registry();
  // The /storage sidecar on the backend named by `url`.
  static Result<std::unique_ptr<Sidecar>> FromUrl(std::string_view url,
                                                  StorageOptions options = {});
  // The /storage sidecar on an existing backend.
  static std::unique_ptr<Sidecar> FromBackend(std::unique_ptr<storage::StorageBackend> backend,
                                              StorageOptions options = {});
};

}  // namespace mikcar
