#include "queue/register.h"

#include "queue/memory/memory_queue_backend.h"
#ifdef MIKCAR_WITH_QUEUE_LMDB
#include "queue/lmdb/lmdb_queue_backend.h"
#endif
#ifdef MIKCAR_WITH_QUEUE_REDIS
#include "queue/redis/redis_queue_backend.h"
#endif
#ifdef MIKCAR_WITH_QUEUE_AMQP
#include "queue/amqp/amqp_queue_backend.h"
#endif

namespace mikcar::queue {

void RegisterBuiltinBackends(BackendRegistry<QueueBackend>& registry) {
  (void)registry.Register({"memory",
                           {"memory"},
                           "memory://[?max_attempts=5] in-process, not durable",
                           [](const Uri& uri) { return OpenMemoryQueueBackend(uri); },
                           ""});
  BackendRegistry<QueueBackend>::Factory lmdb;
#ifdef MIKCAR_WITH_QUEUE_LMDB
  lmdb = [](const Uri& uri) { return OpenLmdbQueueBackend(uri); };
#endif
  (void)registry.Register(
      {"lmdb",
       {"file", "lmdb"},
       "file://PATH[?max_attempts=5&dedup_window=5m] embedded LMDB queue, durable, group-committed",
       lmdb,
       "MIKCAR_WITH_QUEUE_LMDB"});
  BackendRegistry<QueueBackend>::Factory redis;
#ifdef MIKCAR_WITH_QUEUE_REDIS
  redis = [](const Uri& uri) { return OpenRedisQueueBackend(uri); };
#endif
  (void)registry.Register({"redis",
                           {"redis", "rediss"},
                           "redis[s]://[user:pass@]host:port[/db][?prefix=] Redis Streams",
                           redis,
                           "MIKCAR_WITH_QUEUE_REDIS"});
  BackendRegistry<QueueBackend>::Factory amqp;
#ifdef MIKCAR_WITH_QUEUE_AMQP
  amqp = [](const Uri& uri) { return OpenAmqpQueueBackend(uri); };
#endif
  (void)registry.Register({"amqp",
                           {"amqp", "amqps"},
                           "amqp://user:pass@host:5672[/vhost] RabbitMQ",
                           amqp,
                           "MIKCAR_WITH_QUEUE_AMQP"});
}

}  // namespace mikcar::queue
