#include "kv/register.h"

#include "kv/memory/memory_kv_backend.h"
#ifdef MIKCAR_WITH_KV_LMDB
#include "kv/lmdb/lmdb_kv_backend.h"
#endif
#ifdef MIKCAR_WITH_KV_REDIS
#include "kv/redis/redis_kv_backend.h"
#endif

namespace mikcar::kv {

void RegisterBuiltinBackends(BackendRegistry<KvBackend>& registry) {
  (void)registry.Register(
      {"memory",
       {"memory"},
       "memory:// in-process, not durable",
       [](const Uri&) -> Result<std::unique_ptr<KvBackend>> { return NewMemoryKvBackend(); },
       ""});
  BackendRegistry<KvBackend>::Factory lmdb;
#ifdef MIKCAR_WITH_KV_LMDB
  lmdb = [](const Uri& uri) { return OpenLmdbKvBackend(uri); };
#endif
  (void)registry.Register({"lmdb",
                           {"file", "lmdb", "redb"},
                           "file://PATH embedded LMDB, durable, group-committed (redb:// alias)",
                           lmdb,
                           "MIKCAR_WITH_KV_LMDB"});
  BackendRegistry<KvBackend>::Factory redis;
#ifdef MIKCAR_WITH_KV_REDIS
  redis = [](const Uri& uri) { return OpenRedisKvBackend(uri); };
#endif
  (void)registry.Register(
      {"redis",
       {"redis", "rediss"},
       "redis[s]://[user:pass@]host:port[/db][?prefix=app:] shared across sidecars",
       redis,
       "MIKCAR_WITH_KV_REDIS"});
}

}  // namespace mikcar::kv
