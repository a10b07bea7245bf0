// The queue service (/queue): SPEC §6 routes over one `QueueBackend`.
//
//   auto queue = mikcar::QueueService::FromUrl("file:///var/lib/mikcar/queue");  // or memory://,
//   builder.add(std::move(*queue));                                     // redis://, amqp://
//
// Custom backends: register a factory for a new scheme before calling FromUrl():
//   mikcar::QueueService::Registry().Register({"mine", {"mine"}, "my broker", factory, ""});
#pragma once

#include <memory>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/queue/backend.h"
#include "mikcar/registry.h"
#include "mikcar/sidecar.h"

namespace mikcar {

class QueueService {
 public:
  // The backend registry for QUEUE_URL schemes, with the built-in backends registered.
  static BackendRegistry<queue::QueueBackend>& Registry();
  // The /queue sidecar on the backend named by `url`.
  static Result<std::unique_ptr<Sidecar>> FromUrl(std::string_view url);
  // The /queue sidecar on an existing backend.
  static std::unique_ptr<Sidecar> FromBackend(std::unique_ptr<queue::QueueBackend> backend);
};

}  // namespace mikcar
