// file:// lmdb:// redb:// — the embedded, durable KV store on LMDB (see README.md here).
#pragma once

#include <memory>

#include "mikcar/kv/backend.h"
#include "mikcar/uri.h"

namespace mikcar::kv {

// Opens (creating) the LMDB environment in directory `uri.path`.
Result<std::unique_ptr<KvBackend>> OpenLmdbKvBackend(const Uri& uri);

}  // namespace mikcar::kv
