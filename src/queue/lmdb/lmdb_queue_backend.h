// file:// lmdb:// — the durable embedded queue on LMDB, group-committed (see README.md here).
#pragma once

#include <memory>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"

namespace mikcar::queue {

// Opens (creating) the LMDB environment in directory `uri.path`.
Result<std::unique_ptr<QueueBackend>> OpenLmdbQueueBackend(const Uri& uri);

}  // namespace mikcar::queue
