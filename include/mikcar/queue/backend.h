// `QueueBackend`: the interface a message queue implements (memory, the embedded LMDB queue,
// Redis Streams, RabbitMQ, or an embedder's).
//
// The queue service validates every argument before calling a backend: queue, topic and group
// names are 1–200 bytes of [A-Za-z0-9._:-], ids are 1–128 printable ASCII bytes, payloads are
// JSON text, durations are non-negative. Backends translate native errors into mikcar::Error at
// their edge and never pick HTTP statuses. All methods may be called concurrently from any I/O
// thread and must not block it.
//
// Semantics (SPEC §6):
// * A message gets its id at push/publish; the same id is seen at pop/subscribe and used to
//   ack/nack. Ids are unique within the backend.
// * Queues are FIFO for first deliveries. A pop without a lease removes the message
//   (at-most-once). A pop with a lease hides it for `visibility`; ack removes it, nack or lease
//   expiry makes it ready again. A message's `attempts` counts its deliveries; when delivery
//   number `max_attempts` (a backend option, default 5) is nacked or its lease expires, the
//   message moves to the queue `<queue>.dlq` instead (for topic groups: `<topic>.dlq`).
// * A topic fans out: every subscriber group receives every message published after the group's
//   first subscribe; consumers of one group share the group's messages. Topics and queues are
//   separate namespaces (a queue and a topic may share a name).
// * Durable backends acknowledge a push only once the message is stored durably: a 200 survives
//   kill -9 of mikcar.
// * Waiting: Pop and Subscribe return as soon as a message is ready, or with nothing at
//   `wait_until`; they never return after it (the service sets it before the HTTP deadline, so a
//   taken message is never dropped by a timed-out request).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mikcar/error.h"

namespace mikcar::queue {

template <typename T>
using Task = boost::asio::awaitable<Result<T>>;

using Clock = std::chrono::steady_clock;

struct NewMessage {
  std::string payload;   // JSON text
  int64_t delay_ms = 0;  // > 0: not delivered before this many milliseconds from now
  // Non-empty: a push with a dedup id already pushed to the same queue in the last
  // `dedup_window` (a backend option, default 5 minutes) stores nothing and returns the first
  // message's id.
  std::string dedup_id;
};

struct Message {
  std::string id;
  std::string payload;         // JSON text, exactly as pushed
  int64_t received_at_ms = 0;  // unix ms when the queue accepted the message
  uint32_t attempts = 1;       // deliveries so far, this one included
};

struct Receive {
  // nullopt: delivered messages are removed. Otherwise each is leased for this long.
  std::optional<std::chrono::milliseconds> visibility;
  Clock::time_point wait_until;  // wait for the first message until then (past = do not wait)
  size_t max_messages = 1;       // 1 for pop; up to 1000 for subscribe
  // After the first message, how long to wait for more (up to max_messages) before answering;
  // never past wait_until.
  std::chrono::milliseconds gather{0};
  // The latest moment a message taken without a lease can still reach the caller (the service:
  // shortly before the HTTP deadline). A backend whose server answers later leaves such
  // messages in the queue rather than removing them. Unset: wait_until + 250 ms.
  std::optional<Clock::time_point> deliver_by;
  // When this becomes true (the HTTP client has gone), take no more messages and return what was
  // taken. Read on the receive's own executor; null when nobody watches.
  const bool* client_gone = nullptr;
};

struct Length {
  uint64_t ready = 0;    // deliverable now
  uint64_t leased = 0;   // delivered, not yet acked
  uint64_t delayed = 0;  // pushed with a delay or nacked with one, not yet due
};

class QueueBackend {
 public:
  virtual ~QueueBackend() = default;

  // Short name for logs and /health/ready, e.g. "lmdb".
  virtual std::string name() const = 0;

  // Appends `messages` to `queue` (created on first use) in order, all or none; returns their
  // ids in the same order.
  virtual Task<std::vector<std::string>> Push(std::string queue,
                                              std::vector<NewMessage> messages) = 0;
  // Up to `receive.max_messages` ready messages of `queue`, oldest first; empty when none came
  // by `receive.wait_until`.
  virtual Task<std::vector<Message>> Pop(std::string queue, Receive receive) = 0;
  // Removes a leased message of `queue`, or of topic `queue` in `group`. NOT_FOUND when the
  // lease is unknown, expired or already acked.
  virtual Task<void> Ack(std::string queue, std::string group, std::string id) = 0;
  // Returns a leased message of `queue` to it, ready after `delay` (or moved to the DLQ when
  // its attempts are used up). NOT_FOUND as for Ack.
  virtual Task<void> Nack(std::string queue, std::string id, std::chrono::milliseconds delay) = 0;

  // Delivers `message` to every group that has subscribed to `topic`; returns its id (one id
  // for all groups).
  virtual Task<std::string> Publish(std::string topic, NewMessage message) = 0;
  // Like Pop, for `group` of `topic`; the first call creates the group.
  virtual Task<std::vector<Message>> Subscribe(std::string topic, std::string group,
                                               Receive receive) = 0;

  virtual Task<Length> Len(std::string queue) = 0;

  // Readiness: success when the backend answers.
  virtual Task<void> Ready() = 0;
  // Graceful shutdown has begun: every waiting Pop/Subscribe answers now with what it has, and
  // later ones do not wait. Called from any thread; must not block.
  virtual void Drain() = 0;
  // Called once at shutdown, after the last request: flush and close connections.
  virtual void Close() {}
};

}  // namespace mikcar::queue
