// memory:// — an in-process ordered map. Same semantics as the durable backends; nothing
// survives a restart. Thread-safe (one shared_mutex: readers in parallel, one writer).
#pragma once

#include <memory>

#include "mikcar/kv/backend.h"

namespace mikcar::kv {

std::unique_ptr<KvBackend> NewMemoryKvBackend();

}  // namespace mikcar::kv
