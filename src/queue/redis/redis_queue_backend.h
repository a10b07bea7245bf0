// redis:// and rediss:// — queues on Redis Streams with consumer groups, see README.md here.
#pragma once

#include <memory>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"

namespace mikcar::queue {

// redis[s]://[user:password@]host[:port][/db][?prefix=&max_attempts=&dedup_window=&insecure=].
// Connects lazily; Ready() checks the server.
Result<std::unique_ptr<QueueBackend>> OpenRedisQueueBackend(const Uri& uri);

}  // namespace mikcar::queue
