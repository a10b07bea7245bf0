// redis:// — KV on Redis (or any RESP server with Lua), see README.md here.
#pragma once

#include <memory>

#include "mikcar/kv/backend.h"
#include "mikcar/uri.h"

namespace mikcar::kv {

// redis://[user:password@]host[:port][/db][?prefix=app:]. Connects lazily; Ping() checks it.
Result<std::unique_ptr<KvBackend>> OpenRedisKvBackend(const Uri& uri);

}  // namespace mikcar::kv
