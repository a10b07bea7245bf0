// The embedded queue: every SPEC §6 semantic (FIFO, leases, nack, attempts and DLQ, delays,
// dedup, fan-out groups, long-polls) implemented once over a `Store` — std::map for memory://,
// LMDB for file:// (see README.md here).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"
#include "queue/embedded/store.h"

namespace mikcar::queue::embedded {

struct Options {
  uint32_t max_attempts = 5;                           // deliveries before the DLQ
  std::chrono::milliseconds dedup_window{5 * 60'000};  // how long a dedup id is remembered
};

// `?max_attempts=` (1-1000) and `?dedup_window=` (a duration) of a queue URL.
Result<Options> ParseOptions(const Uri& uri);

std::unique_ptr<QueueBackend> NewEmbeddedQueueBackend(std::unique_ptr<Store> store,
                                                      Options options);

}  // namespace mikcar::queue::embedded
