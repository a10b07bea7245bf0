// The built-in queue backends, registered explicitly (STYLE "Backends").
#pragma once

#include "mikcar/queue/backend.h"
#include "mikcar/registry.h"

namespace mikcar::queue {

void RegisterBuiltinBackends(BackendRegistry<QueueBackend>& registry);

}  // namespace mikcar::queue
