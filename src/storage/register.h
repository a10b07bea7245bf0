// Registers the storage backends of this build (memory and file always).
#pragma once

#include "mikcar/registry.h"
#include "mikcar/storage/backend.h"

namespace mikcar::storage {

void RegisterBuiltinBackends(BackendRegistry<StorageBackend>& registry);

}  // namespace mikcar::storage
