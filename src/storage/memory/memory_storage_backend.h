// memory:// — objects in a sorted map in this process; not durable. The same semantics as the
// file backend, and the test double of the storage service.
#pragma once

#include <memory>

#include "mikcar/storage/backend.h"

namespace mikcar::storage {

std::unique_ptr<StorageBackend> NewMemoryStorageBackend();

}  // namespace mikcar::storage
