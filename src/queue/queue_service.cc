// The /queue service: parses and validates each request once, calls one QueueBackend, shapes
// the response (SPEC §6). Knows nothing about HTTP parsing or concrete backends.
#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/backend_calls.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/units.h"
#include "mikcar/queue/queue.h"
#include "queue/register.h"

namespace mikcar::embedded {
extern const std::string_view kQueueOpenApi;  // src/queue/openapi.json (cmake/embed.cmake)
}  // namespace mikcar::embedded

namespace mikcar {
namespace {

namespace json = boost::json;
using queue::Clock;
using queue::Message;
using queue::NewMessage;
using queue::QueueBackend;
using queue::Receive;

constexpr size_t kMaxName = 200;
constexpr size_t kMaxId = 128;
constexpr size_t kMaxBatch = 10'000;
constexpr size_t kDefaultMaxMessages = 10;
constexpr size_t kMaxMaxMessages = 1000;
constexpr auto kMaxDelay = std::chrono::hours(24 * 30);
constexpr auto kMaxVisibility = std::chrono::hours(12);
constexpr auto kMaxTimeout = std::chrono::hours(1);
constexpr auto kGather = std::chrono::milliseconds(20);
constexpr size_t kMaxMeasuredQueues = 256;              // queues whose depth /metrics reports
constexpr auto kDepthBudget = std::chrono::seconds(1);  // a scrape's time for asking depths
// A long-poll answers this long before the request deadline, so the response always goes out.
constexpr auto kDeadlineMargin = std::chrono::milliseconds(250);
// A message taken without a lease is handed out only if the backend has it by then.
constexpr auto kDeliverMargin = std::chrono::milliseconds(100);
constexpr char kDefaultGroup[] = "default";

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':';
}

// A dead-letter queue's name is its queue's plus ".dlq", so it may be that much longer.
Result<std::string> Name(std::string_view value, std::string_view what) {
  size_t max = kMaxName + (value.ends_with(".dlq") ? 4 : 0);
  if (value.empty() || value.size() > max || !std::all_of(value.begin(), value.end(), IsNameChar)) {
    return Fail(ErrorCode::kBadRequest, std::string(what) + " name '" + std::string(value) +
                                            "' is invalid; expected 1-200 characters of "
                                            "A-Z a-z 0-9 . _ - : (+ .dlq)");
  }
  return std::string(value);
}

// The {queue} or {topic} path parameter, validated and within the token's scope.
Result<std::string> NameParam(const Request& request, std::string_view param) {
  auto name = Name(request.param(param), param);
  if (!name) return name;
  if (auto ok = request.Permit(*name); !ok) return Fail(ok.error());
  return name;
}

Result<std::string> IdParam(const Request& request) {
  std::string_view id = request.param("id");
  bool printable = std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (id.empty() || id.size() > kMaxId || !printable) {
    return Fail(ErrorCode::kBadRequest,
                "message id is invalid; expected the id returned by push or publish");
  }
  return std::string(id);
}

// The message body as stored: JSON as sent (re-serialised compactly), anything else wrapped as
// {"data": "<text>"} (compat). JSON nested deeper than the parser takes is refused, as the batch
// route refuses it, rather than stored as a string the consumer did not send.
Result<std::string> Payload(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec) return json::serialize(v);
  if (ec == json::error::too_deep)
    return Fail(ErrorCode::kBadRequest,
                "the body is JSON nested too deeply; expected at most 32 levels of arrays and "
                "objects");
  return "{\"data\":" + JsonQuote(body) + "}";
}

std::string MessageJson(const Message& m) {
  return "{\"id\":" + JsonQuote(m.id) + ",\"payload\":" + m.payload + ",\"received_at\":" +
         JsonQuote(Rfc3339(
             std::chrono::system_clock::time_point(std::chrono::milliseconds(m.received_at_ms)))) +
         ",\"attempts\":" + std::to_string(m.attempts) + "}";
}

class QueueSidecar final : public Sidecar {
 public:
  explicit QueueSidecar(std::unique_ptr<QueueBackend> backend) : backend_(std::move(backend)) {}

  std::string name() const override { return "queue"; }
  std::string backend_name() const override { return backend_->name(); }
  std::string_view OpenApi() const override { return embedded::kQueueOpenApi; }
  // The backend's calls, and the depth of every queue this process has pushed to or measured
  // (a dead-letter queue once measured), asked for one after another for at most a second.
  boost::asio::awaitable<void> Collect(MetricsSink& sink) override {
    calls_.Collect(sink);
    std::vector<std::string> names;
    {
      std::lock_guard lock(used_mu_);
      names.assign(used_.begin(), used_.end());
    }
    const auto budget_end = Clock::now() + kDepthBudget;
    for (const std::string& queue : names) {
      if (Clock::now() > budget_end) break;
      auto len = co_await backend_->Len(queue);
      if (!len) continue;  // unreachable: the requests' own calls count the failure
      for (auto [state, n] :
           {std::pair{"ready", len->ready}, {"leased", len->leased}, {"delayed", len->delayed}}) {
        sink.Gauge("mikcar_queue_messages",
                   "Messages of each queue this process has pushed to or measured, by state.",
                   {{"queue", queue}, {"state", state}}, static_cast<double>(n));
      }
    }
  }
  boost::asio::awaitable<Result<void>> Ready() override { co_return co_await backend_->Ready(); }
  void Drain() override { backend_->Drain(); }
  void Shutdown() override { backend_->Close(); }

  std::vector<Route> Routes() override {
    auto bind = [this](auto method) { return BindHandler(this, method); };
    return {
        {"POST", "/push/{queue}", bind(&QueueSidecar::Push)},
        {"POST", "/push/{queue}/batch", bind(&QueueSidecar::PushBatch)},
        WatchClient({"GET", "/pop/{queue}", bind(&QueueSidecar::Pop)}),
        {"POST", "/ack/{queue}/{id}", bind(&QueueSidecar::Ack)},
        {"POST", "/nack/{queue}/{id}", bind(&QueueSidecar::Nack)},
        {"POST", "/publish/{topic}", bind(&QueueSidecar::Publish)},
        WatchClient({"GET", "/subscribe/{topic}", bind(&QueueSidecar::Subscribe)}),
        ReadOnly({"GET", "/len/{queue}", bind(&QueueSidecar::Len)}),
    };
  }

 private:
  // ?delay= and ?dedup_id= of a push.
  static Result<NewMessage> PushOptions(const Request& request) {
    NewMessage m;
    auto delay = DurationParam(request, "delay", std::chrono::milliseconds(0), kMaxDelay);
    if (!delay) return Fail(delay.error());
    m.delay_ms = delay->count();
    if (auto dedup = request.query_param("dedup_id")) {
      if (dedup->empty() || dedup->size() > kMaxId)
        return Fail(ErrorCode::kBadRequest, "dedup_id: expected 1-128 bytes");
      m.dedup_id = std::move(*dedup);
    }
    return m;
  }

  // ?timeout= (default 0: answer at once), ?visibility=, capped below the request deadline.
  static Result<Receive> ReceiveOptions(const Request& request, size_t max_messages) {
    Receive r;
    r.max_messages = max_messages;
    auto timeout = DurationParam(request, "timeout", std::chrono::milliseconds(0), kMaxTimeout);
    if (!timeout) return Fail(timeout.error());
    r.wait_until = std::min(Clock::now() + *timeout, request.deadline - kDeadlineMargin);
    r.deliver_by = request.deadline - kDeliverMargin;
    r.client_gone = &request.client_gone;
    if (request.query_param("visibility")) {
      auto visibility =
          DurationParam(request, "visibility", std::chrono::milliseconds(0), kMaxVisibility);
      if (!visibility) return Fail(visibility.error());
      if (visibility->count() <= 0)
        return Fail(ErrorCode::kBadRequest, "visibility: expected a duration above 0");
      r.visibility = *visibility;
    }
    return r;
  }

  boost::asio::awaitable<Result<Response>> Push(Request& request) {
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto message = PushOptions(request);
    if (!message) co_return Fail(message.error());
    auto payload = Payload(request.body);
    if (!payload) co_return Fail(payload.error());
    message->payload = std::move(*payload);
    std::vector<NewMessage> one;
    one.push_back(std::move(*message));
    auto ids = co_await calls_.Time("push", backend_->Push(*queue, std::move(one)));
    if (!ids) co_return Fail(ids.error());
    Use(*queue);
    co_return Response::Json("{\"message_id\":" + JsonQuote(ids->front()) +
                             ",\"queue\":" + JsonQuote(*queue) + ",\"status\":\"pushed\"}");
  }

  boost::asio::awaitable<Result<Response>> PushBatch(Request& request) {
    static constexpr std::string_view kExpected = "{\"messages\": [any JSON value]}";
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto options = PushOptions(request);
    if (!options) co_return Fail(options.error());
    if (!options->dedup_id.empty())
      co_return Fail(ErrorCode::kBadRequest, "dedup_id applies to single pushes, not a batch");
    auto body = ParseJsonBody(request, kExpected);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
    auto it = obj->find("messages");
    if (it == obj->end()) co_return Fail(WrongShape(kExpected, "missing field messages"));
    const json::array* arr = it->value().if_array();
    if (!arr) co_return Fail(WrongShape(kExpected, "messages is not an array"));
    if (arr->size() > kMaxBatch) {
      co_return Fail(ErrorCode::kPayloadTooLarge, "messages has " + std::to_string(arr->size()) +
                                                      " entries; at most " +
                                                      std::to_string(kMaxBatch) + " per batch");
    }
    std::vector<NewMessage> messages;
    messages.reserve(arr->size());
    for (const auto& v : *arr) messages.push_back({json::serialize(v), options->delay_ms, {}});
    auto ids = co_await calls_.Time("push", backend_->Push(*queue, std::move(messages)));
    if (!ids) co_return Fail(ids.error());
    Use(*queue);
    std::string list;
    for (const auto& id : *ids) list += (list.empty() ? "" : ",") + JsonQuote(id);
    co_return Response::Json("{\"message_ids\":[" + list +
                             "],\"count\":" + std::to_string(ids->size()) +
                             ",\"queue\":" + JsonQuote(*queue) + ",\"status\":\"pushed\"}");
  }

  boost::asio::awaitable<Result<Response>> Pop(Request& request) {
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto receive = ReceiveOptions(request, 1);
    if (!receive) co_return Fail(receive.error());
    auto messages = co_await calls_.Time("pop", backend_->Pop(*queue, *receive));
    if (!messages) co_return Fail(messages.error());
    std::string message = messages->empty() ? "null" : MessageJson(messages->front());
    co_return Response::Json("{\"message\":" + message + ",\"queue\":" + JsonQuote(*queue) + "}");
  }

  boost::asio::awaitable<Result<Response>> Ack(Request& request) {
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto id = IdParam(request);
    if (!id) co_return Fail(id.error());
    auto group = Name(request.query_param("group").value_or(kDefaultGroup), "group");
    if (!group) co_return Fail(group.error());
    if (auto ok = co_await calls_.Time("ack", backend_->Ack(*queue, *group, *id)); !ok)
      co_return Fail(ok.error());
    co_return Response::Json("{\"message_id\":" + JsonQuote(*id) +
                             ",\"queue\":" + JsonQuote(*queue) + ",\"status\":\"acknowledged\"}");
  }

  boost::asio::awaitable<Result<Response>> Nack(Request& request) {
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto id = IdParam(request);
    if (!id) co_return Fail(id.error());
    auto delay = DurationParam(request, "delay", std::chrono::milliseconds(0), kMaxDelay);
    if (!delay) co_return Fail(delay.error());
    if (auto ok = co_await calls_.Time("nack", backend_->Nack(*queue, *id, *delay)); !ok)
      co_return Fail(ok.error());
    co_return Response::Json("{\"message_id\":" + JsonQuote(*id) +
                             ",\"queue\":" + JsonQuote(*queue) + ",\"status\":\"nacked\"}");
  }

  boost::asio::awaitable<Result<Response>> Publish(Request& request) {
    auto topic = NameParam(request, "topic");
    if (!topic) co_return Fail(topic.error());
    auto payload = Payload(request.body);
    if (!payload) co_return Fail(payload.error());
    NewMessage message;
    message.payload = std::move(*payload);
    auto id = co_await calls_.Time("publish", backend_->Publish(*topic, std::move(message)));
    if (!id) co_return Fail(id.error());
    co_return Response::Json("{\"message_id\":" + JsonQuote(*id) +
                             ",\"status\":\"published\",\"topic\":" + JsonQuote(*topic) + "}");
  }

  boost::asio::awaitable<Result<Response>> Subscribe(Request& request) {
    auto topic = NameParam(request, "topic");
    if (!topic) co_return Fail(topic.error());
    auto group = Name(request.query_param("group").value_or(kDefaultGroup), "group");
    if (!group) co_return Fail(group.error());
    size_t max_messages = kDefaultMaxMessages;
    if (auto raw = request.query_param("max_messages")) {
      auto n = ParseSize(*raw);
      if (!n || *n < 1 || *n > kMaxMaxMessages ||
          raw->find_first_not_of("0123456789") != std::string::npos) {
        co_return Fail(ErrorCode::kBadRequest,
                       "max_messages: expected a number 1-1000; got '" + *raw + "'");
      }
      max_messages = *n;
    }
    auto receive = ReceiveOptions(request, max_messages);
    if (!receive) co_return Fail(receive.error());
    receive->gather = kGather;
    auto messages =
        co_await calls_.Time("subscribe", backend_->Subscribe(*topic, *group, *receive));
    if (!messages) co_return Fail(messages.error());
    std::string list;
    for (const auto& m : *messages) list += (list.empty() ? "" : ",") + MessageJson(m);
    co_return Response::Json("{\"count\":" + std::to_string(messages->size()) +
                             ",\"group\":" + JsonQuote(*group) + ",\"messages\":[" + list +
                             "],\"topic\":" + JsonQuote(*topic) + "}");
  }

  boost::asio::awaitable<Result<Response>> Len(Request& request) {
    auto queue = NameParam(request, "queue");
    if (!queue) co_return Fail(queue.error());
    auto len = co_await calls_.Time("len", backend_->Len(*queue));
    if (!len) co_return Fail(len.error());
    Use(*queue);
    co_return Response::Json("{\"length\":" + std::to_string(len->ready) + ",\"queue\":" +
                             JsonQuote(*queue) + ",\"leased\":" + std::to_string(len->leased) +
                             ",\"delayed\":" + std::to_string(len->delayed) + "}");
  }

  // Remembers a queue the backend took a push or a len for, for /metrics (the first
  // kMaxMeasuredQueues: a pop of a name that was never pushed to adds nothing).
  void Use(const std::string& queue) {
    std::lock_guard lock(used_mu_);
    if (used_.size() < kMaxMeasuredQueues) used_.insert(queue);
  }

  std::unique_ptr<QueueBackend> backend_;
  std::mutex used_mu_;
  std::set<std::string> used_;
  BackendCalls calls_{
      "queue", backend_->name(), {"push", "pop", "ack", "nack", "publish", "subscribe", "len"}};
};

}  // namespace

BackendRegistry<queue::QueueBackend>& QueueService::Registry() {
  return ServiceRegistry(&queue::RegisterBuiltinBackends);
}

Result<std::unique_ptr<Sidecar>> QueueService::FromUrl(std::string_view url) {
  auto backend = Registry().Create(url);
  if (!backend) return Fail(backend.error());
  return FromBackend(std::move(*backend));
}

std::unique_ptr<Sidecar> QueueService::FromBackend(std::unique_ptr<queue::QueueBackend> backend) {
  return std::make_unique<QueueSidecar>(std::move(backend));
}

}  // namespace mikcar
