// A backend registry per service, keyed by URL scheme (STYLE "Backends").
//
// Each service (kv, storage, …) owns one `BackendRegistry<ItsBackend>`. Built-in backends are
// registered explicitly by the service's RegisterBuiltinBackends(); an embedder may register its
// own (`foo://`) before creating the service. Entries compiled out of this build stay listed
// with the CMake option that enables them, so the error for `redis://` in a build without Redis
// names the option. Not thread-safe for registration; lookups after registration are.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/uri.h"

namespace mikcar {

template <typename Backend>
class BackendRegistry {
 public:
  using Factory = std::function<Result<std::unique_ptr<Backend>>(const Uri&)>;

  struct Entry {
    std::string name;                  // "lmdb"
    std::vector<std::string> schemes;  // {"file", "lmdb", "redb"}
    std::string doc;                   // one line: URL grammar and meaning
    Factory create;                    // empty when compiled out
    std::string cmake_option;          // e.g. "MIKCAR_WITH_KV_REDIS"
  };

  // Fails (CONFLICT) if a scheme is already registered.
  Result<void> Register(Entry entry) {
    for (const auto& scheme : entry.schemes) {
      if (Find(scheme) != nullptr) {
        return Fail(ErrorCode::kConflict,
                    "backend scheme '" + scheme + "://' is already registered");
      }
    }
    entries_.push_back(std::move(entry));
    return {};
  }

  const Entry* Find(std::string_view scheme) const {
    for (const auto& e : entries_) {
      if (std::find(e.schemes.begin(), e.schemes.end(), scheme) != e.schemes.end()) return &e;
    }
    return nullptr;
  }

  // Parses `url` and creates the backend for its scheme. Errors (BAD_REQUEST) list the
  // supported schemes or name the CMake option of a compiled-out one.
  Result<std::unique_ptr<Backend>> Create(std::string_view url) const {
    auto uri = ParseUri(url);
    if (!uri) return Fail(uri.error());
    const Entry* e = Find(uri->scheme);
    if (e == nullptr) {
      return Fail(ErrorCode::kBadRequest,
                  "unknown scheme '" + uri->scheme + "://'; expected one of " + SchemeList());
    }
    if (!e->create) {
      return Fail(ErrorCode::kBadRequest, "scheme '" + uri->scheme + "://' (" + e->name +
                                              ") is not compiled into this build; rebuild with -D" +
                                              e->cmake_option + "=ON");
    }
    return e->create(*uri);
  }

  const std::vector<Entry>& entries() const { return entries_; }

  std::string SchemeList() const {
    std::string out;
    for (const auto& e : entries_) {
      if (!e.create) continue;
      for (const auto& s : e.schemes) out += (out.empty() ? "" : ", ") + s + "://";
    }
    return out;
  }

 private:
  std::vector<Entry> entries_;
};

// A service's process-wide registry, with `register_builtins` run on first use.
template <typename Backend>
BackendRegistry<Backend>& ServiceRegistry(void (*register_builtins)(BackendRegistry<Backend>&)) {
  static BackendRegistry<Backend>* registry = [register_builtins] {
    auto* r = new BackendRegistry<Backend>();  // never destroyed: used until exit
    register_builtins(*r);
    return r;
  }();
  return *registry;
}

}  // namespace mikcar
