// memory:// — the embedded queue on in-process tables: every semantic of file://, not durable.
#pragma once

#include <memory>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"

namespace mikcar::queue {

Result<std::unique_ptr<QueueBackend>> OpenMemoryQueueBackend(const Uri& uri);

}  // namespace mikcar::queue
