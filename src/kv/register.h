// Registers the KV backends of this build (memory always; LMDB and Redis per CMake options).
#pragma once

#include "mikcar/kv/backend.h"
#include "mikcar/registry.h"

namespace mikcar::kv {

void RegisterBuiltinBackends(BackendRegistry<KvBackend>& registry);

}  // namespace mikcar::kv
