// The key-value service (/kv): SPEC §3 routes over one `KvBackend`.
//
//   auto kv = mikcar::KvService::FromUrl("file:///var/lib/mikcar/kv");   // or memory://, redis://
//   builder.add(std::move(*kv));
//
// Custom backends: register a factory for a new scheme before calling FromUrl():
//   mikcar::KvService::Registry().Register({"mine", {"mine"}, "my store", factory, ""});
#pragma once

#include <memory>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/kv/backend.h"
#include "mikcar/registry.h"
#include "mikcar/sidecar.h"

namespace mikcar {

class KvService {
 public:
  // The backend registry for KV_URL schemes, with the built-in backends registered.
  static BackendRegistry<kv::KvBackend>& Registry();
  // The /kv sidecar on the backend named by `url`.
  static Result<std::unique_ptr<Sidecar>> FromUrl(std::string_view url);
  // The /kv sidecar on an existing backend.
  static std::unique_ptr<Sidecar> FromBackend(std::unique_ptr<kv::KvBackend> backend);
};

}  // namespace mikcar
