#include "queue/amqp/amqp_queue_backend.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/async.h"
#include "common/units.h"
#include "queue/message_id.h"
#include "queue/poll_receive.h"

namespace mikcar::queue {
namespace {

using namespace std::chrono_literals;

constexpr auto kPoll = 50ms;
constexpr auto kTick = 50ms;  // lease expiry granularity
// How long a receive's basic.get may wait behind other broker calls after its wait_until (the
// queue service answers 250 ms before the request deadline).
constexpr auto kQueuedGetBudget = 150ms;
constexpr int kConnectTimeoutS = 3;
constexpr int kRpcTimeoutS = 10;
constexpr amqp_channel_t kChannel = 1;     // confirm mode: publishes, declarations
constexpr amqp_channel_t kTxChannel = 2;   // tx mode (a channel cannot be in both): batch pushes
constexpr amqp_channel_t kGetChannel = 3;  // basic.get and the ack/reject of what it leased
constexpr size_t kMaxQueuedJobs = 10000;
constexpr int64_t kDelayQueueIdleMs = 60000;
constexpr int64_t kDefaultDedupWindowMs = 5 * 60 * 1000;
constexpr uint32_t kDefaultMaxAttempts = 5;
// Deliveries before this copy was published, and the time the queue first accepted the message:
// our republished copies (nack, lease expiry) carry both, so attempts and received_at survive.
constexpr char kAttemptsHeader[] = "x-mikcar-attempts";
constexpr char kReceivedHeader[] = "x-mikcar-received-at";

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

amqp_bytes_t Bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
std::string Str(amqp_bytes_t b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

int64_t IntValue(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8:
      return v.value.i8;
    case AMQP_FIELD_KIND_U8:
      return v.value.u8;
    case AMQP_FIELD_KIND_I16:
      return v.value.i16;
    case AMQP_FIELD_KIND_U16:
      return v.value.u16;
    case AMQP_FIELD_KIND_I32:
      return v.value.i32;
    case AMQP_FIELD_KIND_U32:
      return v.value.u32;
    case AMQP_FIELD_KIND_I64:
      return v.value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return static_cast<int64_t>(v.value.u64);
    default:
      return 0;
  }
}

// RabbitMQ prepends to the x-death array on each dead-lettering, so entry 0 is the latest. A
// latest reason "rejected" means the message has just arrived in a dead-letter queue (ours, by
// basic.reject after its last attempt); "expired" means it came out of a delay queue.
bool JustDeadLettered(const amqp_field_value_t& v) {
  if (v.kind != AMQP_FIELD_KIND_ARRAY || v.value.array.num_entries == 0) return false;
  const amqp_field_value_t& first = v.value.array.entries[0];
  if (first.kind != AMQP_FIELD_KIND_TABLE) return false;
  for (int i = 0; i < first.value.table.num_entries; ++i) {
    const auto& e = first.value.table.entries[i];
    if (Str(e.key) == "reason" &&
        (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES)) {
      return Str(e.value.value.bytes) == "rejected";
    }
  }
  return false;
}

std::string Describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "broker closed the connection: " + std::to_string(m->reply_code) + " " +
               Str(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "broker closed the channel: " + std::to_string(m->reply_code) + " " +
               Str(m->reply_text);
      }
      return "unexpected broker method " + std::to_string(r.reply.id);
  }
  return "unknown reply";
}

// A channel-level refusal (404, 406 …) is the request's fault or a conflicting declaration;
// RabbitMQ refuses a message over its max_message_size with 406 "message size N is larger than
// configured max size M".
ErrorCode CodeOf(const amqp_channel_close_t& close) {
  return Str(close.reply_text).find("larger than configured max size") != std::string::npos
             ? ErrorCode::kPayloadTooLarge
             : ErrorCode::kBackend;
}
// Anything but a channel-level refusal means the broker went away.
ErrorCode CodeOf(const amqp_rpc_reply_t& r) {
  return r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD
             ? CodeOf(*static_cast<amqp_channel_close_t*>(r.reply.decoded))
             : ErrorCode::kUnavailable;
}

struct Config {
  std::string host;
  int port = 5672;
  std::string vhost = "/";
  std::string user = "guest";
  std::string password = "guest";
  bool tls = false;
  bool tls_insecure = false;
  uint32_t max_attempts = kDefaultMaxAttempts;
  int64_t dedup_window_ms = kDefaultDedupWindowMs;
  std::string where;  // "amqp host:port", for messages (never the credentials)
};

// RabbitMQ names. User names are [A-Za-z0-9._:-], so '/' keeps ours apart from theirs: topic T
// is the fanout exchange "topic/T" with one durable queue "topic/T/G" per group; the delay
// queue for target X and delay D ms is "X/delay/D".
std::string TopicExchange(const std::string& topic) { return "topic/" + topic; }
std::string GroupQueue(const std::string& topic, const std::string& group) {
  return "topic/" + topic + "/" + group;
}

struct Lane {         // a RabbitMQ queue we receive from
  std::string queue;  // its name
  std::string dlq;    // where basic.reject dead-letters to (x-dead-letter-routing-key)
  std::string topic;  // non-empty for a group queue
};
Lane QueueLane(const std::string& q) { return {q, q + ".dlq", ""}; }
Lane GroupLane(const std::string& t, const std::string& g) {
  return {GroupQueue(t, g), t + ".dlq", t};
}

struct Lease {
  uint64_t tag = 0;  // delivery tag on our channel
  Clock::time_point deadline;
  std::string payload;
  int64_t received_at = 0;
  uint32_t attempts = 0;
};

struct Outgoing {
  std::string exchange;
  std::string routing_key;
  std::string id;
  std::string payload;
  int64_t received_at = 0;
  uint32_t attempts = 0;  // deliveries before this copy
  int64_t expiration_ms = 0;
};

// Messages a push or publish job has prepared; `finish` runs once the broker has them (or not).
struct Staged {
  std::vector<Outgoing> messages;
  std::function<void(Result<void>)> finish;
};

// A receive job's basic.gets, pipelined with those of the other jobs of its round.
struct StagedGet {
  Lane lane;
  size_t want = 0;   // messages still wanted
  size_t burst = 1;  // gets to send in the next round (doubles while all return messages)
  std::optional<std::chrono::milliseconds> visibility;
  Clock::time_point give_up;
  std::vector<Message> got;
  std::optional<Error> error;
  std::shared_ptr<Completion<std::vector<Message>>> done;
};

class AmqpQueueBackend final : public QueueBackend {
 public:
  explicit AmqpQueueBackend(Config config) : config_(std::move(config)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~AmqpQueueBackend() override { Close(); }

  std::string name() const override { return "amqp"; }

  Task<std::vector<std::string>> Push(std::string queue,
                                      std::vector<NewMessage> messages) override {
    auto job = [this, queue, messages = std::move(messages)](auto done) {
      StagePush(queue, messages, std::move(done));
    };
    auto ids = co_await SubmitWith<std::vector<std::string>>(std::move(job));
    if (ids) wake_.Notify(QueueKey(queue));
    co_return ids;
  }

  Task<std::vector<Message>> Pop(std::string queue, Receive receive) override {
    co_return co_await Take(QueueLane(queue), QueueKey(queue), receive);
  }

  Task<void> Ack(std::string queue, std::string group, std::string id) override {
    auto job = [this, queue, group, id]() -> Result<void> {
      // The queue's lease first, else the lease of the topic's group (the service passes a
      // group on every ack).
      std::string lane = queue;
      auto lease = FindLease(lane, id);
      if (!lease && !group.empty()) {
        lane = GroupQueue(queue, group);
        lease = FindLease(lane, id);
      }
      if (!lease) {
        return NoLease(group.empty() ? queue : queue + "' or topic group '" + queue + "/" + group,
                       id);
      }
      uint64_t tag = lease->tag;
      leases_[lane].erase(id);
      if (int st = amqp_basic_ack(conn_, kGetChannel, tag, 0); st != AMQP_STATUS_OK) {
        return Broken("basic.ack", amqp_error_string2(st));
      }
      return {};
    };
    co_return co_await Submit<void>(std::move(job));
  }

  Task<void> Nack(std::string queue, std::string id, std::chrono::milliseconds delay) override {
    auto job = [this, queue, id, delay]() -> Result<void> {
      auto lease = FindLease(queue, id);
      if (!lease) return NoLease(queue, id);
      Lease copy = *lease;
      leases_[queue].erase(id);
      return Return(QueueLane(queue), id, copy, delay.count());
    };
    auto done = co_await Submit<void>(std::move(job));
    if (done) {
      wake_.Notify(QueueKey(queue));
      wake_.Notify(QueueKey(queue + ".dlq"));
    }
    co_return done;
  }

  Task<std::string> Publish(std::string topic, NewMessage message) override {
    auto job = [this, topic, message = std::move(message)](auto done) {
      StagePublish(topic, message, std::move(done));
    };
    auto id = co_await SubmitWith<std::string>(std::move(job));
    if (id) wake_.Notify(TopicKey(topic));
    co_return id;
  }

  Task<std::vector<Message>> Subscribe(std::string topic, std::string group,
                                       Receive receive) override {
    co_return co_await Take(GroupLane(topic, group), TopicKey(topic), receive);
  }

  Task<Length> Len(std::string queue) override {
    auto job = [this, queue]() -> Result<Length> {
      if (auto ok = Ensure(); !ok) return Fail(ok.error());
      Length len;
      auto ready = DeclareLane(QueueLane(queue), /*cached=*/false);
      if (!ready) return Fail(ready.error());
      len.ready = *ready;
      len.leased = leases_.contains(queue) ? leases_[queue].size() : 0;
      auto& delays = delay_queues_[queue];
      for (auto it = delays.begin(); it != delays.end();) {
        auto n = DeclareDelayQueue(it->first, "", queue, it->second);
        if (!n) return Fail(n.error());
        len.delayed += *n;
        it = *n == 0 ? delays.erase(it) : std::next(it);
      }
      if (delays.empty()) delay_queues_.erase(queue);
      return len;
    };
    co_return co_await Submit<Length>(std::move(job));
  }

  Task<void> Ready() override {
    auto job = [this]() -> Result<void> {
      if (auto ok = Ensure(); !ok) return ok;
      // A passive declare of a built-in exchange: one round trip that proves the channel works.
      amqp_exchange_declare(conn_, kChannel, amqp_cstring_bytes("amq.fanout"),
                            amqp_cstring_bytes("fanout"), 1, 1, 0, 0, amqp_empty_table);
      return Check(amqp_get_rpc_reply(conn_), "readiness check");
    };
    co_return co_await Submit<void>(std::move(job));
  }

  void Drain() override {
    draining_ = true;
    wake_.NotifyAll();
  }

  void Close() override {
    std::call_once(closed_once_, [this] {
      draining_ = true;
      wake_.NotifyAll();
      {
        std::lock_guard lock(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      if (thread_.joinable()) thread_.join();
    });
  }

 private:
  static std::string QueueKey(const std::string& queue) { return "q\n" + queue; }
  static std::string TopicKey(const std::string& topic) { return "t\n" + topic; }

  // ---- I/O-thread side ------------------------------------------------------------------

  // Runs `fn(done)` on the connection thread; it completes `done` (at once, or after the
  // publisher confirms of what it staged).
  template <typename T, typename Fn>
  Task<T> SubmitWith(Fn fn) {
    auto start = [this, fn = std::move(fn)](std::shared_ptr<Completion<T>> done) mutable {
      if (auto refused = Enqueue([fn = std::move(fn), done]() mutable { fn(done); })) {
        done->Complete(Fail(std::move(*refused)));
      }
    };
    co_return co_await Suspend<T>(std::move(start));
  }

  // Runs `fn` (returning Result<T>) on the connection thread.
  template <typename T, typename Fn>
  Task<T> Submit(Fn fn) {
    auto job = [fn = std::move(fn)](std::shared_ptr<Completion<T>> done) mutable {
      done->Complete(fn());
    };
    co_return co_await SubmitWith<T>(std::move(job));
  }

  std::optional<Error> Enqueue(std::function<void()> job) {
    std::unique_lock lock(mu_);
    if (stop_) return Error{ErrorCode::kUnavailable, config_.where + ": backend closed", {}};
    if (jobs_.size() >= kMaxQueuedJobs) {
      return Error{ErrorCode::kUnavailable,
                   config_.where + ": server busy: too many broker calls queued",
                   {}};
    }
    jobs_.push_back(std::move(job));
    lock.unlock();
    cv_.notify_one();
    return std::nullopt;
  }

  Task<std::vector<Message>> Take(Lane lane, std::string key, Receive receive) {
    auto visibility = receive.visibility;
    const auto wait_until = receive.wait_until;
    auto fetch = [this, &lane, visibility, wait_until](size_t n) -> Task<std::vector<Message>> {
      // A get that waited in the job queue past the service's margin before the HTTP deadline
      // takes nothing: the answer could arrive after the request gave up, and a message taken
      // without a lease would be lost.
      const auto give_up = std::max(wait_until, Clock::now()) + kQueuedGetBudget;
      auto job = [this, lane, n, visibility, give_up](auto done) {
        StageGet(lane, n, visibility, give_up, std::move(done));
      };
      co_return co_await SubmitWith<std::vector<Message>>(std::move(job));
    };
    co_return co_await PollReceive(wake_, std::move(key), receive, kPoll, draining_, fetch);
  }

  // ---- connection thread ----------------------------------------------------------------

  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, kTick, [this] { return stop_ || !jobs_.empty(); });
      std::deque<std::function<void()>> batch;
      batch.swap(jobs_);
      const bool stopping = stop_;
      lock.unlock();
      if (stopping) closing_ = true;  // jobs still queued fail instead of reconnecting
      ExpireLeases();
      for (auto& job : batch) job();
      FlushStaged();
      FlushGets();
      if (conn_ != nullptr) amqp_maybe_release_buffers(conn_);
      lock.lock();
      if (stopping && jobs_.empty()) break;
    }
    lock.unlock();
    Disconnect(/*graceful=*/true);
  }

  Result<void> Ensure() {
    if (conn_ != nullptr) return {};
    if (closing_) return Fail(ErrorCode::kUnavailable, config_.where + ": backend closed");
    conn_ = amqp_new_connection();
    amqp_socket_t* socket = config_.tls ? amqp_ssl_socket_new(conn_) : amqp_tcp_socket_new(conn_);
    if (socket == nullptr) return Broken("connect", "cannot create a socket");
    if (config_.tls) {
      amqp_ssl_socket_set_verify_peer(socket, config_.tls_insecure ? 0 : 1);
      amqp_ssl_socket_set_verify_hostname(socket, config_.tls_insecure ? 0 : 1);
      const char* ca = std::getenv("SSL_CERT_FILE");
      std::string bundle = ca != nullptr ? ca : "/etc/ssl/certs/ca-certificates.crt";
      if (int st = amqp_ssl_socket_set_cacert(socket, bundle.c_str()); st != AMQP_STATUS_OK) {
        return Broken("TLS setup", "cannot load CA file " + bundle);
      }
    }
    timeval connect_timeout{kConnectTimeoutS, 0};
    if (int st =
            amqp_socket_open_noblock(socket, config_.host.c_str(), config_.port, &connect_timeout);
        st != AMQP_STATUS_OK) {
      // rabbitmq-c reports refused, unreachable and timed-out connects alike (its non-blocking
      // connect leaves no useful errno).
      return Broken("cannot connect", amqp_error_string2(st));
    }
    timeval rpc_timeout{kRpcTimeoutS, 0};
    amqp_set_rpc_timeout(conn_, &rpc_timeout);
    // heartbeat 0: the broker takes the client's tune-ok value, so none are needed (a heartbeat
    // would require reading the socket while idle, which this synchronous client does not do).
    auto login = amqp_login(conn_, config_.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                            AMQP_SASL_METHOD_PLAIN, config_.user.c_str(), config_.password.c_str());
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
      return Broken("login to vhost '" + config_.vhost + "' failed", Describe(login));
    }
    if (auto ok = OpenConfirmChannel(); !ok) return ok;
    amqp_channel_open(conn_, kGetChannel);
    return Check(amqp_get_rpc_reply(conn_), "channel.open (get)");
  }

  Result<void> OpenConfirmChannel() {
    amqp_channel_open(conn_, kChannel);
    if (auto ok = Check(amqp_get_rpc_reply(conn_), "channel.open"); !ok) return ok;
    amqp_confirm_select(conn_, kChannel);
    if (auto ok = Check(amqp_get_rpc_reply(conn_), "confirm.select"); !ok) return ok;
    next_tag_ = 1;
    return {};
  }

  // Answers the broker's channel.close of `channel`, which can then be opened again: a refusal
  // on one channel leaves the connection, and the leases on the get channel, as they were.
  Result<void> AcceptClose(amqp_channel_t channel) {
    amqp_channel_close_ok_t close_ok{};
    if (int st = amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
        st != AMQP_STATUS_OK) {
      return Broken("channel.close-ok", amqp_error_string2(st));
    }
    return {};
  }

  // Drops the connection. The broker requeues every unacked delivery, so our leases are void:
  // those messages come back (redelivered) — the documented at-least-once case.
  void Disconnect(bool graceful) {
    if (conn_ == nullptr) return;
    if (graceful) {
      if (tx_open_) amqp_channel_close(conn_, kTxChannel, AMQP_REPLY_SUCCESS);
      amqp_channel_close(conn_, kGetChannel, AMQP_REPLY_SUCCESS);
      amqp_channel_close(conn_, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
    tx_open_ = false;
    leases_.clear();
    declared_.clear();
  }

  tl::unexpected<Error> Broken(const std::string& what, const std::string& why,
                               ErrorCode code = ErrorCode::kUnavailable) {
    Disconnect(/*graceful=*/false);
    return Fail(code, config_.where + ": " + what + ": " + why);
  }

  Result<void> Check(const amqp_rpc_reply_t& r, const std::string& what) {
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return {};
    return Broken(what, Describe(r), CodeOf(r));
  }

  static tl::unexpected<Error> NoLease(const std::string& where, const std::string& id) {
    return Fail(ErrorCode::kNotFound,
                "no active lease for message '" + id + "' in '" + where +
                    "' (unknown, already acknowledged, or its visibility timeout expired)");
  }

  Lease* FindLease(const std::string& lane, const std::string& id) {
    auto it = leases_.find(lane);
    if (it == leases_.end()) return nullptr;
    auto l = it->second.find(id);
    if (l == it->second.end() || l->second.deadline <= Clock::now()) return nullptr;
    return &l->second;
  }

  // queue.declare (durable, dead-lettering to `dlq_key` through the default exchange); returns
  // the ready count.
  Result<uint32_t> DeclareQueue(const std::string& name, const std::string& dlx_exchange,
                                const std::string& dlq_key, int64_t expires_ms = 0) {
    amqp_table_entry_t entries[3];
    int n = 0;
    entries[n].key = amqp_cstring_bytes("x-dead-letter-exchange");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n++].value.value.bytes = Bytes(dlx_exchange);
    entries[n].key = amqp_cstring_bytes("x-dead-letter-routing-key");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n++].value.value.bytes = Bytes(dlq_key);
    if (expires_ms > 0) {
      entries[n].key = amqp_cstring_bytes("x-expires");
      entries[n].value.kind = AMQP_FIELD_KIND_I64;
      entries[n++].value.value.i64 = expires_ms;
    }
    amqp_table_t args{n, entries};
    auto* ok = amqp_queue_declare(conn_, kChannel, Bytes(name), 0, 1, 0, 0, args);
    if (auto c = Check(amqp_get_rpc_reply(conn_), "queue.declare '" + name + "'"); !c) {
      return Fail(c.error());
    }
    return ok != nullptr ? ok->message_count : 0;
  }

  // Declares what receiving from `lane` needs: the queue, its dead-letter queue and, for a
  // group, the topic's exchange and the binding. Returns the lane's ready count.
  Result<uint32_t> DeclareLane(const Lane& lane, bool cached = true) {
    if (cached && declared_.contains(lane.queue)) return 0;
    if (!lane.topic.empty()) {
      if (auto ok = DeclareExchange(TopicExchange(lane.topic)); !ok) return Fail(ok.error());
    }
    auto dlq = DeclareQueue(lane.dlq, "", lane.dlq + ".dlq");
    if (!dlq) return dlq;
    auto ready = DeclareQueue(lane.queue, "", lane.dlq);
    if (!ready) return ready;
    if (!lane.topic.empty()) {
      amqp_queue_bind(conn_, kChannel, Bytes(lane.queue), Bytes(TopicExchange(lane.topic)),
                      amqp_empty_bytes, amqp_empty_table);
      if (auto ok = Check(amqp_get_rpc_reply(conn_), "queue.bind '" + lane.queue + "'"); !ok) {
        return Fail(ok.error());
      }
    }
    declared_.insert(lane.queue);
    return *ready;
  }

  Result<void> DeclareExchange(const std::string& name) {
    if (declared_.contains("exchange " + name)) return {};
    amqp_exchange_declare(conn_, kChannel, Bytes(name), amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                          amqp_empty_table);
    if (auto ok = Check(amqp_get_rpc_reply(conn_), "exchange.declare '" + name + "'"); !ok) {
      return ok;
    }
    declared_.insert("exchange " + name);
    return {};
  }

  // The delay queue for `base` and `delay_ms`: messages expire (per-message TTL, all equal in
  // one queue, so none waits behind a longer one) and dead-letter to `dlx_exchange`/`dlx_key`.
  // Declared on every use: x-expires counts only declares and reads as use, not publishes.
  Result<uint32_t> DeclareDelayQueue(const std::string& name, const std::string& dlx_exchange,
                                     const std::string& dlx_key, int64_t delay_ms) {
    return DeclareQueue(name, dlx_exchange, dlx_key, delay_ms + kDelayQueueIdleMs);
  }

  // Publishes and waits for the broker's confirms of all of `messages`.
  Result<void> PublishConfirmed(const std::vector<Outgoing>& messages) {
    auto refused = Publish(messages);
    if (!refused) return Fail(refused.error());
    for (bool r : *refused) {
      if (r) return Fail(Refused());
    }
    return {};
  }

  Error Refused() const {
    return {ErrorCode::kBackend,
            config_.where + ": the broker refused to store the message (basic.nack)",
            {}};
  }

  // Sends one persistent message on `channel` (no wait for the broker).
  Result<void> PublishOne(amqp_channel_t channel, const Outgoing& m) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                   AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;  // persistent
    props.message_id = Bytes(m.id);
    props.timestamp = static_cast<uint64_t>(m.received_at / 1000);
    amqp_table_entry_t headers[2];
    headers[0].key = amqp_cstring_bytes(kAttemptsHeader);
    headers[0].value.kind = AMQP_FIELD_KIND_I64;
    headers[0].value.value.i64 = m.attempts;
    headers[1].key = amqp_cstring_bytes(kReceivedHeader);
    headers[1].value.kind = AMQP_FIELD_KIND_I64;
    headers[1].value.value.i64 = m.received_at;
    props.headers = amqp_table_t{2, headers};
    std::string expiration;
    if (m.expiration_ms > 0) {
      expiration = std::to_string(m.expiration_ms);
      props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
      props.expiration = Bytes(expiration);
    }
    int st = amqp_basic_publish(conn_, channel, Bytes(m.exchange), Bytes(m.routing_key), 0, 0,
                                &props, Bytes(m.payload));
    if (st != AMQP_STATUS_OK) return Broken("basic.publish", amqp_error_string2(st));
    return {};
  }

  // Publishes `messages` and waits for every publisher confirm; returns, per message, whether
  // the broker refused it (basic.nack). One wait covers them all: the broker confirms a batch
  // with one disk sync, which is what makes concurrent pushes fast.
  Result<std::vector<bool>> Publish(const std::vector<Outgoing>& messages) {
    std::vector<bool> refused(messages.size(), false);
    const uint64_t first_tag = next_tag_;
    std::set<uint64_t> waiting;
    for (const auto& m : messages) {
      if (auto ok = PublishOne(kChannel, m); !ok) return Fail(ok.error());
      waiting.insert(next_tag_++);
    }
    while (!waiting.empty()) {
      amqp_frame_t frame;
      timeval timeout{kRpcTimeoutS, 0};
      int st = amqp_simple_wait_frame_noblock(conn_, &frame, &timeout);
      if (st == AMQP_STATUS_TIMEOUT) {
        return Broken("publisher confirm", "none within " + std::to_string(kRpcTimeoutS) + " s",
                      ErrorCode::kBackendTimeout);
      }
      if (st != AMQP_STATUS_OK) {
        return Broken("connection lost waiting for publisher confirms", amqp_error_string2(st));
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      const auto id = frame.payload.method.id;
      if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
        uint64_t tag;
        bool multiple;
        const bool nack = id == AMQP_BASIC_NACK_METHOD;
        if (!nack) {
          auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          tag = a->delivery_tag;
          multiple = a->multiple != 0;
        } else {
          auto* n = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          tag = n->delivery_tag;
          multiple = n->multiple != 0;
        }
        auto begin = multiple ? waiting.begin() : waiting.find(tag);
        auto end = multiple ? waiting.upper_bound(tag)
                            : (begin == waiting.end() ? begin : std::next(begin));
        if (nack) {
          for (auto it = begin; it != end; ++it) refused[*it - first_tag] = true;
        }
        waiting.erase(begin, end);
      } else if (id == AMQP_CHANNEL_CLOSE_METHOD && frame.channel == kChannel) {
        // A refused message (e.g. over max_message_size): what came before it may be stored,
        // nothing after it is. The channel is reopened; the leases on the get channel stay.
        auto* c = static_cast<amqp_channel_close_t*>(frame.payload.method.decoded);
        Error refused{CodeOf(*c),
                      config_.where + ": publish: broker closed the channel: " +
                          std::to_string(c->reply_code) + " " + Str(c->reply_text),
                      {}};
        if (auto ok = AcceptClose(kChannel); !ok) return Fail(ok.error());
        if (auto ok = OpenConfirmChannel(); !ok) return Fail(ok.error());
        return Fail(std::move(refused));
      } else if (id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* c = static_cast<amqp_connection_close_t*>(frame.payload.method.decoded);
        return Broken("publish", "broker closed the connection: " + std::to_string(c->reply_code) +
                                     " " + Str(c->reply_text));
      }
    }
    return refused;
  }

  // Publishes what the jobs of one round staged and completes each job: single messages with
  // one wait for all their confirms, then each batch push in a transaction of its own.
  void FlushStaged() {
    if (staged_.empty()) return;
    std::vector<Staged> singles, batches;
    for (auto& s : staged_) (s.messages.size() > 1 ? batches : singles).push_back(std::move(s));
    staged_.clear();
    FlushConfirmed(singles);
    for (auto& b : batches) b.finish(PublishAtomically(b.messages));
  }

  Error LostBeforePublish() const {
    return {ErrorCode::kUnavailable,
            config_.where + ": connection lost before the message was published",
            {}};
  }

  void FlushConfirmed(std::vector<Staged>& staged) {
    if (staged.empty()) return;
    if (conn_ == nullptr) {  // a later job of the round lost the connection: nothing was sent
      for (auto& s : staged) s.finish(Fail(LostBeforePublish()));
      return;
    }
    std::vector<Outgoing> all;
    std::vector<size_t> owner;
    for (size_t i = 0; i < staged.size(); ++i) {
      for (auto& m : staged[i].messages) {
        all.push_back(std::move(m));
        owner.push_back(i);
      }
    }
    auto refused = Publish(all);
    std::vector<bool> failed(staged.size(), false);
    if (refused) {
      for (size_t k = 0; k < all.size(); ++k) {
        if ((*refused)[k]) failed[owner[k]] = true;
      }
    }
    for (size_t i = 0; i < staged.size(); ++i) {
      if (!refused) {
        staged[i].finish(Fail(refused.error()));
      } else if (failed[i]) {
        staged[i].finish(Fail(Refused()));
      } else {
        staged[i].finish({});
      }
    }
  }

  // Publishes `messages` in one transaction on the tx channel, so a batch push is stored whole
  // or not at all. RabbitMQ routes none of them before tx.commit and answers commit-ok only
  // once they are in their queues, persistent messages in durable queues on disk (its docs:
  // "responsibility transfer / durability on commit"). A message it refuses (too big, an
  // unknown exchange …) closes the channel, which discards the transaction; the connection,
  // and the leases held on it, stay. A connection lost during the commit leaves the outcome
  // unknown, as a lost confirm does.
  Result<void> PublishAtomically(const std::vector<Outgoing>& messages) {
    if (conn_ == nullptr) return Fail(LostBeforePublish());
    if (!tx_open_) {
      amqp_channel_open(conn_, kTxChannel);
      if (auto ok = Check(amqp_get_rpc_reply(conn_), "channel.open (tx)"); !ok) return ok;
      amqp_tx_select(conn_, kTxChannel);
      if (auto ok = Check(amqp_get_rpc_reply(conn_), "tx.select"); !ok) return ok;
      tx_open_ = true;
    }
    for (const auto& m : messages) {
      if (auto ok = PublishOne(kTxChannel, m); !ok) return ok;
    }
    amqp_tx_commit(conn_, kTxChannel);
    auto r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      tx_open_ = false;
      Error refused{
          CodeOf(r),
          config_.where + ": the broker refused the batch (none of it was stored): " + Describe(r),
          {}};
      if (auto ok = AcceptClose(kTxChannel); !ok) return ok;
      return Fail(std::move(refused));
    }
    return Check(r, "tx.commit");
  }

  // A dedup id seen in the window: the first message's id. Process-local (see README.md).
  std::optional<std::string> Deduped(const std::string& scope, const std::string& dedup_id) {
    if (dedup_id.empty()) return std::nullopt;
    auto it = dedup_.find(scope + '\n' + dedup_id);
    if (it == dedup_.end() || it->second.second <= Clock::now()) return std::nullopt;
    return it->second.first;
  }
  void Remember(const std::string& scope, const std::string& dedup_id, const std::string& id) {
    if (dedup_id.empty()) return;
    auto now = Clock::now();
    if (dedup_.size() >= 100000)
      std::erase_if(dedup_, [&](auto& e) { return e.second.second <= now; });
    dedup_[scope + '\n' + dedup_id] = {id,
                                       now + std::chrono::milliseconds(config_.dedup_window_ms)};
  }
  void Forget(const std::string& scope, const std::string& dedup_id, const std::string& id) {
    auto it = dedup_.find(scope + '\n' + dedup_id);
    if (it != dedup_.end() && it->second.first == id) dedup_.erase(it);
  }

  // Routes a new message for `target` (queue name, or exchange when `exchange` is set) with
  // its delay.
  Result<Outgoing> Route(const std::string& target, bool exchange, const std::string& id,
                         std::string payload, int64_t received_at, uint32_t attempts,
                         int64_t delay_ms) {
    Outgoing o{exchange ? target : "",
               exchange ? "" : target,
               id,
               std::move(payload),
               received_at,
               attempts,
               0};
    if (delay_ms > 0) {
      std::string name = target + "/delay/" + std::to_string(delay_ms);
      auto ok = DeclareDelayQueue(name, o.exchange, o.routing_key, delay_ms);
      if (!ok) return Fail(ok.error());
      if (!exchange) delay_queues_[target][name] = delay_ms;
      o.exchange.clear();
      o.routing_key = name;
      o.expiration_ms = delay_ms;
    }
    return o;
  }

  // Prepares a push (declares, dedup, routing) and stages its messages for the round's
  // publish; `done` completes once the broker has them. Dedup ids are remembered at once (so a
  // duplicate in the same batch is caught) and forgotten again if the publish fails.
  void StagePush(const std::string& queue, const std::vector<NewMessage>& messages,
                 std::shared_ptr<Completion<std::vector<std::string>>> done) {
    if (auto ok = Ensure(); !ok) return done->Complete(Fail(ok.error()));
    if (auto ok = DeclareLane(QueueLane(queue)); !ok) return done->Complete(Fail(ok.error()));
    std::vector<std::string> ids;
    std::vector<Outgoing> out;
    std::vector<std::pair<std::string, std::string>> remembered;
    const int64_t now = UnixMs();
    for (const auto& m : messages) {
      if (auto first = Deduped(queue, m.dedup_id)) {
        ids.push_back(*first);
        continue;
      }
      ids.push_back(NewMessageId());
      auto o = Route(queue, false, ids.back(), m.payload, now, 0, m.delay_ms);
      if (!o) {
        for (const auto& [dedup_id, id] : remembered) Forget(queue, dedup_id, id);
        return done->Complete(Fail(o.error()));
      }
      out.push_back(std::move(*o));
      if (!m.dedup_id.empty()) {
        Remember(queue, m.dedup_id, ids.back());
        remembered.emplace_back(m.dedup_id, ids.back());
      }
    }
    if (out.empty()) return done->Complete(std::move(ids));
    auto finish = [this, done, ids = std::move(ids), queue,
                   remembered = std::move(remembered)](Result<void> stored) mutable {
      if (stored) return done->Complete(std::move(ids));
      for (const auto& [dedup_id, id] : remembered) Forget(queue, dedup_id, id);
      done->Complete(Fail(stored.error()));
    };
    staged_.push_back(Staged{std::move(out), std::move(finish)});
  }

  void StagePublish(const std::string& topic, const NewMessage& m,
                    std::shared_ptr<Completion<std::string>> done) {
    if (auto ok = Ensure(); !ok) return done->Complete(Fail(ok.error()));
    const std::string scope = "topic/" + topic;
    if (auto first = Deduped(scope, m.dedup_id)) return done->Complete(std::move(*first));
    auto exchange = TopicExchange(topic);
    if (auto ok = DeclareExchange(exchange); !ok) return done->Complete(Fail(ok.error()));
    std::string id = NewMessageId();
    auto o = Route(exchange, true, id, m.payload, UnixMs(), 0, m.delay_ms);
    if (!o) return done->Complete(Fail(o.error()));
    Remember(scope, m.dedup_id, id);
    auto finish = [this, done, id, scope, dedup_id = m.dedup_id](Result<void> stored) {
      if (stored) return done->Complete(id);
      Forget(scope, dedup_id, id);
      done->Complete(Fail(stored.error()));
    };
    std::vector<Outgoing> one;
    one.push_back(std::move(*o));
    staged_.push_back(Staged{std::move(one), std::move(finish)});
  }

  Message Decode(const amqp_message_t& msg, bool redelivered) {
    Message m;
    m.payload = Str(msg.body);
    const auto& p = msg.properties;
    if ((p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) && p.message_id.len > 0) {
      m.id = Str(p.message_id);
    } else {
      m.id = NewMessageId();  // published by another tool: stable only within this lease
    }
    int64_t prior = 0, received = 0;
    bool dead_lettered = false;
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
      for (int i = 0; i < p.headers.num_entries; ++i) {
        const auto& e = p.headers.entries[i];
        std::string key = Str(e.key);
        if (key == kAttemptsHeader) prior = IntValue(e.value);
        if (key == kReceivedHeader) received = IntValue(e.value);
        if (key == "x-death") dead_lettered = JustDeadLettered(e.value);
      }
    }
    if (received <= 0 && (p._flags & AMQP_BASIC_TIMESTAMP_FLAG)) {
      received = static_cast<int64_t>(p.timestamp) * 1000;
    }
    m.received_at_ms = received > 0 ? received : UnixMs();
    if (dead_lettered) prior = 0;  // first delivery from its dead-letter queue
    // A broker requeue (our connection dropped with the lease held) leaves the header as it was
    // and sets `redelivered`: count that delivery too (one, however many such requeues).
    m.attempts = static_cast<uint32_t>(std::max<int64_t>(prior, 0) + 1 + (redelivered ? 1 : 0));
    return m;
  }

  void StageGet(const Lane& lane, size_t n, std::optional<std::chrono::milliseconds> visibility,
                Clock::time_point give_up, std::shared_ptr<Completion<std::vector<Message>>> done) {
    if (Clock::now() > give_up) return done->Complete(std::vector<Message>{});
    if (auto ok = Ensure(); !ok) return done->Complete(Fail(ok.error()));
    if (auto ok = DeclareLane(lane); !ok) return done->Complete(Fail(ok.error()));
    gets_.push_back(StagedGet{lane, n, 1, visibility, give_up, {}, {}, std::move(done)});
  }

  // Runs the basic.gets of one round's receive jobs, pipelined: every job's gets are sent
  // before the first reply is read (the broker answers them in order on the channel), so a
  // round costs one round trip, not one per job. A job wanting several messages sends one get,
  // then twice as many each round while all of them return a message, and stops at the first
  // get-empty. A job whose give_up has passed sends nothing more (what it has is answered).
  void FlushGets() {
    if (gets_.empty()) return;
    auto jobs = std::move(gets_);
    gets_.clear();
    std::vector<StagedGet*> hungry;
    for (auto& j : jobs) hungry.push_back(&j);
    while (!hungry.empty() && conn_ != nullptr) {
      const auto now = Clock::now();
      std::vector<StagedGet*> sent;  // one entry per basic.get, in order
      for (auto* j : hungry) {
        if (now > j->give_up) continue;
        for (size_t k = std::min(j->want, j->burst); k > 0; --k) {
          amqp_basic_get_t get{0, Bytes(j->lane.queue), j->visibility ? amqp_boolean_t{0} : 1};
          if (int st = amqp_send_method(conn_, kGetChannel, AMQP_BASIC_GET_METHOD, &get);
              st != AMQP_STATUS_OK) {
            Abandon(hungry, Broken("basic.get", amqp_error_string2(st)).value());
            return Answer(jobs);
          }
          sent.push_back(j);
        }
      }
      std::set<StagedGet*> emptied;
      for (size_t i = 0; i < sent.size(); ++i) {
        auto* j = sent[i];
        auto taken = ReadGetReply(*j);
        if (!taken) {
          Abandon(std::vector<StagedGet*>(sent.begin() + i, sent.end()), taken.error());
          return Answer(jobs);
        }
        if (!*taken) emptied.insert(j);
      }
      std::vector<StagedGet*> next;
      for (auto* j : hungry) {
        if (j->want == 0 || emptied.contains(j) || Clock::now() > j->give_up) continue;
        j->burst *= 2;
        next.push_back(j);
      }
      hungry = std::move(next);
    }
    if (!hungry.empty()) {  // a publish of this round lost the connection
      Abandon(hungry, {ErrorCode::kUnavailable,
                       config_.where + ": connection lost before basic.get was sent",
                       {}});
    }
    Answer(jobs);
  }

  // Reads the reply to one pipelined basic.get of `job`; true when it carried a message.
  Result<bool> ReadGetReply(StagedGet& job) {
    amqp_frame_t frame;
    timeval timeout{kRpcTimeoutS, 0};
    int st = amqp_simple_wait_frame_noblock(conn_, &frame, &timeout);
    if (st == AMQP_STATUS_TIMEOUT) {
      return Broken("basic.get '" + job.lane.queue + "'",
                    "no reply within " + std::to_string(kRpcTimeoutS) + " s",
                    ErrorCode::kBackendTimeout);
    }
    if (st != AMQP_STATUS_OK) {
      return Broken("basic.get '" + job.lane.queue + "'", amqp_error_string2(st));
    }
    const auto id = frame.frame_type == AMQP_FRAME_METHOD ? frame.payload.method.id : 0;
    if (frame.channel != kGetChannel && id != AMQP_CONNECTION_CLOSE_METHOD) {
      return Broken("basic.get '" + job.lane.queue + "'",
                    "unexpected frame on channel " + std::to_string(frame.channel));
    }
    if (id == AMQP_BASIC_GET_EMPTY_METHOD) return false;
    if (id != AMQP_BASIC_GET_OK_METHOD) {  // channel.close (a 404 …), connection.close, or junk
      amqp_rpc_reply_t r{AMQP_RESPONSE_SERVER_EXCEPTION, frame.payload.method, 0};
      if (frame.frame_type != AMQP_FRAME_METHOD) {
        r = {AMQP_RESPONSE_LIBRARY_EXCEPTION, {}, AMQP_STATUS_UNEXPECTED_STATE};
      }
      return Fail(Check(r, "basic.get '" + job.lane.queue + "'").error());
    }
    auto* get_ok = static_cast<amqp_basic_get_ok_t*>(frame.payload.method.decoded);
    const uint64_t tag = get_ok->delivery_tag;
    const bool redelivered = get_ok->redelivered != 0;
    amqp_message_t msg;
    auto read = amqp_read_message(conn_, kGetChannel, &msg, 0);
    if (auto ok = Check(read, "reading a message of '" + job.lane.queue + "'"); !ok) {
      return Fail(ok.error());
    }
    job.got.push_back(Accept(job.lane, tag, redelivered, msg, job.visibility));
    amqp_destroy_message(&msg);
    --job.want;
    return true;
  }

  // Decodes a message taken from `lane` and, with a visibility, holds its lease.
  Message Accept(const Lane& lane, uint64_t tag, bool redelivered, const amqp_message_t& msg,
                 std::optional<std::chrono::milliseconds> visibility) {
    Message m = Decode(msg, redelivered);
    if (visibility) {
      auto& held = leases_[lane.queue];
      if (auto dup = held.find(m.id); dup != held.end()) {
        // A second copy of a message we hold (a republish raced a broker requeue): keep one.
        amqp_basic_ack(conn_, kGetChannel, dup->second.tag, 0);
      }
      held[m.id] = Lease{tag, Clock::now() + *visibility, m.payload, m.received_at_ms, m.attempts};
      next_expiry_ = std::min(next_expiry_, Clock::now() + *visibility);
    }
    return m;
  }

  // Jobs whose gets failed: those that took nothing get the error; what the others took is
  // gone from the broker (no_ack) or requeued with the connection, so they answer with it.
  static void Abandon(const std::vector<StagedGet*>& jobs, const Error& error) {
    for (auto* j : jobs) {
      if (j->got.empty() && !j->error) j->error = error;
    }
  }
  static void Answer(std::vector<StagedGet>& jobs) {
    for (auto& j : jobs) {
      if (j.error) {
        j.done->Complete(Fail(std::move(*j.error)));
      } else {
        j.done->Complete(std::move(j.got));
      }
    }
  }

  // Ends a lease without an ack: after the last attempt the broker dead-letters it (reject →
  // x-dead-letter-exchange); otherwise a copy carrying the attempts so far is published (to the
  // lane, or to a delay queue) and confirmed before the original is acked, so a crash in
  // between duplicates the message rather than losing it.
  Result<void> Return(const Lane& lane, const std::string& id, const Lease& lease,
                      int64_t delay_ms) {
    if (lease.attempts >= config_.max_attempts) {
      if (int st = amqp_basic_reject(conn_, kGetChannel, lease.tag, 0); st != AMQP_STATUS_OK) {
        return Broken("basic.reject", amqp_error_string2(st));
      }
      return {};
    }
    auto o =
        Route(lane.queue, false, id, lease.payload, lease.received_at, lease.attempts, delay_ms);
    if (!o) return Fail(o.error());
    std::vector<Outgoing> one{std::move(*o)};
    if (auto ok = PublishConfirmed(one); !ok) {
      // The broker refused the copy but the connection stays: requeue the original rather than
      // hold it unacked with no lease (it comes back redelivered, which counts this delivery).
      if (conn_ != nullptr) amqp_basic_reject(conn_, kGetChannel, lease.tag, 1);
      return ok;
    }
    if (int st = amqp_basic_ack(conn_, kGetChannel, lease.tag, 0); st != AMQP_STATUS_OK) {
      return Broken("basic.ack", amqp_error_string2(st));
    }
    return {};
  }

  void ExpireLeases() {
    auto now = Clock::now();
    if (conn_ == nullptr || now < next_expiry_) return;
    next_expiry_ = Clock::time_point::max();
    std::vector<std::tuple<std::string, std::string, Lease>> due;
    for (auto& [lane, held] : leases_) {
      for (auto it = held.begin(); it != held.end();) {
        if (it->second.deadline <= now) {
          due.emplace_back(lane, it->first, std::move(it->second));
          it = held.erase(it);
        } else {
          next_expiry_ = std::min(next_expiry_, it->second.deadline);
          ++it;
        }
      }
    }
    for (auto& [queue, id, lease] : due) {
      if (conn_ == nullptr) break;  // a failure below dropped the connection: all requeued
      Lane lane{queue, "", ""};
      if (auto ok = Return(lane, id, lease, 0); !ok) {
        spdlog::warn("{}: returning expired lease of '{}' in '{}': {}", config_.where, id, queue,
                     ok.error().message);
      }
      // The lane's own key is enough for waiters: group queues are keyed by topic.
      auto slash = queue.find('/');
      if (slash == std::string::npos) {
        wake_.Notify(QueueKey(queue));
        wake_.Notify(QueueKey(queue + ".dlq"));
      } else {
        auto rest = queue.substr(slash + 1);
        auto topic = rest.substr(0, rest.find('/'));
        wake_.Notify(TopicKey(topic));
        wake_.Notify(QueueKey(topic + ".dlq"));
      }
    }
  }

  Config config_;
  WatchHub wake_;
  std::atomic<bool> draining_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stop_ = false;                       // guarded by mu_
  std::thread thread_;
  std::once_flag closed_once_;

  // Connection thread only.
  bool closing_ = false;
  amqp_connection_state_t conn_ = nullptr;
  uint64_t next_tag_ = 1;  // the next publish's sequence number on the confirm channel
  bool tx_open_ = false;   // kTxChannel is open and in tx mode
  std::set<std::string> declared_;
  std::vector<Staged> staged_;
  std::vector<StagedGet> gets_;
  std::unordered_map<std::string, std::unordered_map<std::string, Lease>> leases_;
  Clock::time_point next_expiry_ = Clock::time_point::max();
  std::unordered_map<std::string, std::map<std::string, int64_t>> delay_queues_;
  std::unordered_map<std::string, std::pair<std::string, Clock::time_point>> dedup_;
};

}  // namespace

Result<std::unique_ptr<QueueBackend>> OpenAmqpQueueBackend(const Uri& uri) {
  Config config;
  config.tls = uri.scheme == "amqps";
  config.host = uri.host.empty() ? "127.0.0.1" : uri.host;
  config.port = uri.port.value_or(config.tls ? 5671 : 5672);
  if (!uri.user.empty()) config.user = uri.user;
  if (!uri.user.empty() || !uri.password.empty()) config.password = uri.password;
  std::string_view vhost = uri.path;
  if (vhost.starts_with('/')) vhost.remove_prefix(1);
  config.vhost = vhost.empty() ? "/" : std::string(vhost);
  config.tls_insecure = uri.query_param("insecure").value_or("") == "true";
  if (auto v = uri.query_param("max_attempts")) {
    auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), config.max_attempts);
    if (ec != std::errc() || ptr != v->data() + v->size() || config.max_attempts < 1) {
      return Fail(ErrorCode::kBadRequest,
                  "amqp queue: expected ?max_attempts= a positive integer; got '" + *v + "'");
    }
  }
  if (auto v = uri.query_param("dedup_window")) {
    auto d = ParseDuration(*v);
    if (!d || d->count() <= 0) {
      return Fail(ErrorCode::kBadRequest,
                  "amqp queue: expected ?dedup_window= a positive duration (300s, 5000ms); got '" +
                      *v + "'");
    }
    config.dedup_window_ms = d->count();
  }
  config.where = std::string(config.tls ? "amqps" : "amqp") + " " + config.host + ":" +
                 std::to_string(config.port);
  return std::unique_ptr<QueueBackend>(std::make_unique<AmqpQueueBackend>(std::move(config)));
}

}  // namespace mikcar::queue
