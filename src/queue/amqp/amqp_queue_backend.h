// amqp:// and amqps:// — queues on RabbitMQ (rabbitmq-c), see README.md here.
#pragma once

#include <memory>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"

namespace mikcar::queue {

// amqp[s]://[user:password@]host[:port][/vhost][?max_attempts=&dedup_window=&insecure=].
// Connects lazily; Ready() checks the broker.
Result<std::unique_ptr<QueueBackend>> OpenAmqpQueueBackend(const Uri& uri);

}  // namespace mikcar::queue
