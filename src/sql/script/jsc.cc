#include "sql/script/jsc.h"

#include <dlfcn.h>

#include <string>

namespace mikcar::sql::script {

Result<const Jsc*> LoadJsc() {
  static const Result<const Jsc*> loaded = []() -> Result<const Jsc*> {
    constexpr const char* kLibrary = "libjavascriptcoregtk-4.1.so.0";
    void* handle = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      return Fail(ErrorCode::kUnavailable,
                  std::string("cannot load ") + kLibrary +
                      " (install the libjavascriptcoregtk-4.1-0 package): " +
                      (why ? why : "unknown error"));
    }
    static Jsc jsc;  // the handle is never closed: the functions stay valid for the process
#define MIKCAR_JSC_RESOLVE(name)                                           \
  jsc.name = reinterpret_cast<decltype(jsc.name)>(::dlsym(handle, #name)); \
  if (!jsc.name) return Fail(ErrorCode::kUnavailable, std::string(kLibrary) + " has no " #name);
    MIKCAR_JSC_FUNCTIONS(MIKCAR_JSC_RESOLVE)
#undef MIKCAR_JSC_RESOLVE
    // Options are process-wide and read when the first VM is created: no WebAssembly at all
    // (the per-request global also drops the WebAssembly object, this keeps the tiers off).
    jsc.jsc_options_set_boolean("useWasm", 0);
    return &jsc;
  }();
  return loaded;
}

}  // namespace mikcar::sql::script
