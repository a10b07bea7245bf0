#include "storage/register.h"

#include "storage/file/file_storage_backend.h"
#include "storage/memory/memory_storage_backend.h"

namespace mikcar::storage {

void RegisterBuiltinBackends(BackendRegistry<StorageBackend>& registry) {
  (void)registry.Register({"memory",
                           {"memory"},
                           "memory:// in-process, not durable",
                           [](const Uri&) -> Result<std::unique_ptr<StorageBackend>> {
                             return NewMemoryStorageBackend();
                           },
                           ""});
  (void)registry.Register({"file",
                           {"file"},
                           "file:///root/dir files under one directory, atomic and durable writes",
                           [](const Uri& uri) { return OpenFileStorageBackend(uri); },
                           ""});
}

}  // namespace mikcar::storage
