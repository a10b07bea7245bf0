#include "sql/postgres/libpq.h"

#include <dlfcn.h>

#include <string>

namespace mikcar::sql {

Result<const LibPq*> LoadLibPq() {
  static const Result<const LibPq*> loaded = []() -> Result<const LibPq*> {
    void* handle = ::dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      return Fail(ErrorCode::kUnavailable,
                  std::string("cannot load libpq.so.5 (install the libpq5 package): ") +
                      (why ? why : "unknown error"));
    }
    static LibPq pq;  // the handle is never closed: the functions stay valid for the process
#define MIKCAR_PQ_RESOLVE(name)                                          \
  pq.name = reinterpret_cast<decltype(pq.name)>(::dlsym(handle, #name)); \
  if (!pq.name) return Fail(ErrorCode::kUnavailable, "libpq.so.5 has no " #name);
    MIKCAR_PQ_FUNCTIONS(MIKCAR_PQ_RESOLVE)
#undef MIKCAR_PQ_RESOLVE
    return &pq;
  }();
  return loaded;
}

}  // namespace mikcar::sql
