#include "http/server.h"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/cores.h"
#include "common/json.h"
#include "common/text.h"
#include "http/auth.h"
#include "http/compression.h"
#include "http/continuation.h"
#include "http/error_response.h"
#include "http/metrics.h"
#include "http/openapi.h"
#include "http/response_head.h"
#include "http/router.h"
#include "http/trace.h"

namespace mikcar::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;
// Every I/O step of a connection continues its own chain (see continuation.h).
constexpr auto kTuple = Continuation(asio::as_tuple(asio::use_awaitable));
// Lingering close after an unread request body: how long and how much to discard.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 4 << 20;
constexpr size_t kSinkBytes = 16 * 1024;
// The most a request head may take; a chunk header with its extensions and a trailer section
// get the same, as the read buffer holds no more (a line that never ends cannot grow it).
constexpr size_t kHeadLimit = 64 * 1024;
constexpr const char* kFramingTooLarge =
    "a chunk header or the trailer section exceeds 64 KiB; expected chunked framing within it";

namespace {

// A request and the parser whose message its header views point into. A streamed route moves the
// parsed header into `stream_parser`, which then reads the body.
struct Exchange {
  std::optional<bhttp::request_parser<bhttp::string_body>> parser;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> stream_parser;
  Request request;
};

// What the connection checks in a head beyond what a handler sees: RFC 9112 §3.2 (Host) and
// §6.3 (Transfer-Encoding), counted in the pass that copies the headers.
struct HeadFraming {
  size_t hosts = 0;
  std::string_view host;
  size_t codings = 0;  // Transfer-Encoding lines
  std::string_view coding;
};

// Method, target and header views of `message`, and the trace id.
template <typename Body>
HeadFraming ReadHeader(const bhttp::request<Body>& message, Request& request) {
  const auto method = message.method_string();
  request.method.assign(method.data(), method.size());
  std::string_view target = message.target();
  size_t q = target.find('?');
  request.path.assign(target.substr(0, q));
  request.query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  request.headers.clear();
  HeadFraming framing;
  for (const auto& field : message) {
    const std::string_view value(field.value());
    request.headers.emplace_back(std::string_view(field.name_string()), value);
    if (field.name() == bhttp::field::host && framing.hosts++ == 0) framing.host = value;
    if (field.name() == bhttp::field::transfer_encoding && framing.codings++ == 0)
      framing.coding = value;
  }
  request.trace_id = ResolveTraceId(TrimBlanks(request.header("x-trace-id")),
                                    TrimBlanks(request.header("traceparent")));
  return framing;
}

// Runs `op` and waits for it until `deadline`: for readiness checks, which own what they use.
// nullopt when the deadline passed first; the operation then keeps running detached and its
// result is dropped.
template <typename T>
asio::awaitable<std::optional<Result<T>>> WithDeadline(asio::awaitable<Result<T>> op,
                                                       Clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  struct State {
    explicit State(asio::any_io_executor ex, Clock::time_point d) : timer(ex, d) {}
    std::optional<Result<T>> result;
    asio::steady_timer timer;
  };
  auto state = std::make_shared<State>(ex, deadline);
  auto done = [state](std::exception_ptr error, Result<T> result) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        spdlog::error("handler threw: {}", e.what());
      } catch (...) {
        spdlog::error("handler threw a non-standard exception");
      }
      state->result = Fail(ErrorCode::kInternal, "internal error while handling the request");
    } else {
      state->result = std::move(result);
    }
    state->timer.cancel();
  };
  asio::co_spawn(ex, std::move(op), std::move(done));
  if (!state->result) co_await state->timer.async_wait(kTuple);
  co_return std::move(state->result);
}

template <typename Conn>
asio::awaitable<bool> SendContinue(Conn& conn) {
  auto [ec, n] = co_await asio::async_write(
      conn.socket, asio::buffer(kContinueHead.data(), kContinueHead.size()), kTuple);
  co_return !ec;
}

// For a watch_client route while its handler runs (nothing else reads the socket then): sets
// `request.client_gone` when the client closes or resets the connection. Readable data is a
// pipelined request and ends the watch. `active` turns false (and the wait is cancelled) when the
// handler returns, before `request` is reused or freed.
template <typename Socket>
asio::awaitable<void> NoticeClientGone(Socket& socket, Request& request,
                                       std::shared_ptr<const bool> active) {
  auto [ec] = co_await socket.async_wait(asio::socket_base::wait_read, kTuple);
  if (!*active || ec == asio::error::operation_aborted) co_return;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (ec || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
    request.client_gone = true;
}

// Writes a head and a body in one gathered write.
template <typename Socket>
asio::awaitable<bool> WriteHeadAndBody(Socket& socket, const ResponseHead& head,
                                       std::string_view body) {
  std::array<asio::const_buffer, 2> buffers{asio::buffer(head.view().data(), head.view().size()),
                                            asio::buffer(body.data(), body.size())};
  auto [ec, n] = co_await asio::async_write(socket, buffers, kTuple);
  co_return !ec;
}

// Letters, digits and `extra`: a byte table for the checks below, which run on every request.
constexpr std::array<bool, 256> CharSet(std::string_view extra) {
  std::array<bool, 256> set{};
  for (int c = 0; c < 256; ++c)
    set[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  for (char c : extra) set[static_cast<unsigned char>(c)] = true;
  return set;
}

bool AllIn(const std::array<bool, 256>& set, std::string_view text) {
  for (char c : text) {
    if (!set[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

// A Host header value: empty, or a host and optional port (RFC 9112 §3.2, RFC 3986 §3.2.2).
constexpr auto kHostChars = CharSet("-._~%!$&'()*+,;=:[]");
// A comma-separated list of header names (tokens), as in Access-Control-Request-Headers.
constexpr auto kHeaderListChars = CharSet("!#$%&'*+-.^_`|~, ");

// RFC 9112 §2.2: empty lines before a request line are ignored. Consumes them from the front of
// `buffer`; false when there were none.
bool SkipBlankLines(beast::flat_buffer& buffer) {
  auto data = static_cast<const char*>(buffer.data().data());
  size_t n = 0;
  while (n < buffer.size() && (data[n] == '\r' || data[n] == '\n')) ++n;
  buffer.consume(n);
  return n > 0;
}

bool IsLoopback(const std::string& host) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return host == "localhost";
  return addr.is_loopback();
}

}  // namespace

// One live connection, shared between its coroutine, its watchdog timer and Stop().
struct ConnectionBase {
  virtual ~ConnectionBase() = default;
  virtual void CloseIfIdle() = 0;
};

template <typename Socket>
struct Connection;

struct Server::Impl {
  ServerOptions options;
  std::vector<std::unique_ptr<Sidecar>> services;
  Router router;
  // The tokens in use. A reload (SetTokens) adds a table and keeps the old ones until the server
  // is destroyed, so a request in flight never sees its scope freed; reloads are rare and a table
  // is small.
  std::atomic<const TokenAuth*> auth{nullptr};
  std::mutex tokens_mu;
  std::vector<std::unique_ptr<const TokenAuth>> token_tables;
  Result<void> UseTokens(std::string_view token, std::vector<ScopedToken> scoped);
  Metrics metrics;

  // One io_context run by every I/O thread: a connection whose thread the kernel preempts is
  // not stuck behind it, another thread takes its next event. Each connection (and acceptor)
  // runs on a strand of its own, so its handlers never run concurrently.
  std::unique_ptr<asio::io_context> io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  unsigned io_threads = 1;
  std::vector<std::thread> threads;
  // A new strand, or with one I/O thread the io_context itself (nothing runs concurrently).
  asio::any_io_executor Serial() {
    if (io_threads == 1) return io->get_executor();
    return asio::make_strand(*io);
  }
  std::optional<asio::ip::tcp::acceptor> tcp_acceptor;
  std::optional<asio::local::stream_protocol::acceptor> unix_acceptor;
  uint16_t bound_port = 0;

  std::atomic<bool> stopping{false};
  std::mutex stop_mu;
  bool stopped = false;
  std::mutex conns_mu;
  std::condition_variable conns_cv;
  std::list<std::weak_ptr<ConnectionBase>> conns;

  // /health/ready cache (~1 s).
  std::mutex ready_mu;
  Clock::time_point ready_at{};
  bool ready_ok = false;
  std::string ready_details;

  RouteStats* unmatched = nullptr;  // metrics of requests no route took
  // /openapi.json: the routes and their fragments, rendered on the first request (rendering
  // at start-up would add 0.4-0.8 MB to every idle process).
  std::vector<OpenApiGroup> documented;
  std::once_flag openapi_once;
  Result<std::string> openapi = std::string();

  Result<void> AddRoutes();
  Result<void> AddRoute(std::string_view method, RouteEntry entry) {
    entry.stats = metrics.Register(entry.service, entry.pattern, method);
    std::string pattern = entry.pattern;
    return router.Add(method, pattern, std::move(entry));
  }
  asio::awaitable<Result<Response>> Ready(Request& request);

  template <typename Acceptor>
  asio::awaitable<void> AcceptLoop(Acceptor& acceptor);
  template <typename Socket>
  asio::awaitable<void> Serve(Socket socket);
  // Shuts the connection down; `linger` discards what the client still sends for a while first.
  template <typename Socket>
  asio::awaitable<void> Close(Connection<Socket>& conn, bool linger);
  // Sends the 408 of a handler still running at its deadline, then closes the connection.
  template <typename Socket>
  asio::awaitable<void> AnswerLate(std::shared_ptr<Connection<Socket>> conn, ResponseHead head,
                                   std::string body, RouteStats* stats,
                                   Clock::time_point request_start);
  // Routing and auth: the route to call, or (entry == nullptr) the response to send.
  struct Routed {
    const RouteEntry* entry = nullptr;
    Response response = Response::Empty(200);  // not the default: no content type to allocate
    RouteStats* refused = nullptr;             // the metrics of a route that auth refused
  };
  Routed Route(Request& request) const;
  // Sends a response whose body is `response.stream`; false when the connection must close.
  template <typename Conn>
  asio::awaitable<bool> WriteStreamed(Conn& conn, const Request& request, Response& response,
                                      unsigned version, bool keep_alive, ResponseHead& head);
  template <typename Conn>
  asio::awaitable<bool> SendFile(Conn& conn, BodyStream::FileRegion region);
  // Content type, trace id, extra and CORS headers; true when the response is a range.
  bool SetHeaders(const Request& request, const Response& response, ResponseHead& out) const;
  // The head of a buffered response (compressing its body first when that pays); a `head`
  // request's body is cleared.
  void Finish(const Request& request, Response& response, bool head, unsigned version,
              bool keep_alive, ResponseHead& out) const;
};

Result<void> Server::Impl::AddRoutes() {
  // Adds to the router, and to the last group of the OpenAPI document.
  auto add = [this](mikcar::Route route, const std::string& service) {
    OpenApiGroup& group = documented.back();
    group.routes.push_back({route.method, route.pattern, route.access});
    RouteEntry entry{service, group.prefix + route.pattern, std::move(route.handler), route.access};
    entry.streamed_body = route.streamed_body;
    entry.body_limit = route.body_limit;
    entry.read_only = route.read_only;
    entry.watch_client = route.watch_client;
    return AddRoute(route.method, std::move(entry));
  };
  auto health = [](Request&) -> asio::awaitable<Result<Response>> {
    co_return Response::Json(R"({"status":"healthy"})");
  };
  auto metrics_handler = [this](Request&) -> asio::awaitable<Result<Response>> {
    FamilySink sink;
    metrics.Collect(sink);
    for (const auto& service : services) co_await service->Collect(sink);
    co_return Response::Bytes(sink.Render(), "text/plain; version=0.0.4; charset=utf-8");
  };
  auto openapi_handler = [this](Request&) -> asio::awaitable<Result<Response>> {
    std::call_once(openapi_once, [this] {
      openapi = BuildOpenApi(documented, auth.load()->enabled(), MIKCAR_VERSION);
    });
    if (!openapi) co_return Fail(openapi.error());
    co_return Response::Json(*openapi);
  };
  documented.push_back({"operations", "", embedded::kServerOpenApi, {}});
  std::vector<mikcar::Route> own{
      {"GET", "/health", health, Access::kPublic},
      {"HEAD", "/health", health, Access::kPublic},
      {"GET", "/health/ready", [this](Request& req) { return Ready(req); }, Access::kOptional},
      {"GET", "/metrics", metrics_handler,
       options.metrics_public ? Access::kPublic : Access::kToken},
      {"GET", "/openapi.json", openapi_handler, Access::kPublic}};
  for (mikcar::Route& route : own) {
    route.read_only = true;
    if (auto r = add(std::move(route), ""); !r) return r;
  }
  for (auto& service : services) {
    std::string prefix = options.mount_at_root ? "" : "/" + service->name();
    documented.push_back({service->name(), prefix, service->OpenApi(), {}});
    for (mikcar::Route& route : service->Routes()) {
      if (auto r = add(std::move(route), service->name()); !r) return r;
    }
  }
  return {};
}

asio::awaitable<Result<Response>> Server::Impl::Ready(Request& request) {
  bool ok;
  bool stale;
  std::string details;
  {
    std::lock_guard lock(ready_mu);
    ok = ready_ok;
    details = ready_details;
    stale = Clock::now() - ready_at > std::chrono::seconds(1);
  }
  if (stale) {
    ok = true;
    details.clear();
    for (auto& service : services) {
      auto start = Clock::now();
      auto result = co_await WithDeadline(service->Ready(), start + std::chrono::seconds(2));
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      bool up = result && *result;
      ok = ok && up;
      char latency[32];
      std::snprintf(latency, sizeof latency, "%.3f", ms);
      if (!details.empty()) details += ",";
      details += JsonQuote(service->name()) + ":{\"status\":\"" + (up ? "up" : "down") +
                 "\",\"backend\":" + JsonQuote(service->backend_name()) +
                 ",\"latency_ms\":" + latency;
      if (!up) {
        details += ",\"error\":" +
                   JsonQuote(result ? result->error().message : "readiness check timed out");
      }
      details += "}";
    }
    std::lock_guard lock(ready_mu);
    ready_ok = ok;
    ready_details = details;
    ready_at = Clock::now();
  }
  std::string body = std::string("{\"status\":\"") + (ok ? "ready" : "unavailable") + "\"";
  // Per-service details for a full-access token only: a scoped one may not know the others.
  if (request.authenticated && request.scope == nullptr) body += ",\"services\":{" + details + "}";
  body += "}";
  co_return Response::Json(std::move(body), ok ? 200 : 503);
}

template <typename Acceptor>
asio::awaitable<void> Server::Impl::AcceptLoop(Acceptor& acceptor) {
  for (;;) {
    typename Acceptor::protocol_type::socket socket(Serial());
    auto [ec] = co_await acceptor.async_accept(socket, kTuple);
    if (stopping || ec == asio::error::operation_aborted) break;
    if (ec) {
      // EMFILE and friends: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer backoff(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, Serve(std::move(socket)), asio::detached);
  }
}

template <typename Socket>
struct Connection final : ConnectionBase, std::enable_shared_from_this<Connection<Socket>> {
  explicit Connection(Socket s) : socket(std::move(s)), timer(socket.get_executor()) {}

  // Cancels pending socket I/O at `deadline`; `timed_out` tells the coroutine why it failed.
  // Re-arming later is a store: the timer wait in flight re-checks the latest deadline when it
  // fires, so a busy keep-alive connection costs no timer operation per request. Only a nearer
  // deadline (a stream's idle timeout shorter than --timeout) moves the timer.
  void Arm(Clock::time_point at) {
    deadline = at;
    if (waits == 0 || at < timer.expiry()) Wait(at);
  }
  void Disarm() { deadline = Clock::time_point::max(); }
  void Stop() {
    Disarm();
    timer.cancel();
  }
  void Wait(Clock::time_point at) {
    ++waits;
    timer.expires_at(at);  // cancels a pending wait: its handler only counts itself out
    timer.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
      --self->waits;
      if (ec || self->deadline == Clock::time_point::max()) return;  // stopped or disarmed
      if (self->waits > 0) return;  // fired just before being replaced by a newer wait
      if (Clock::now() < self->deadline) return self->Wait(self->deadline);
      self->timed_out = true;
      if (self->in_handler && !self->answered_late) return self->on_late();
      boost::system::error_code ignored;
      self->socket.cancel(ignored);
    });
  }
  void CloseIfIdle() override {
    asio::post(socket.get_executor(), [self = this->shared_from_this()] {
      if (self->idle) {
        boost::system::error_code ignored;
        self->socket.cancel(ignored);
      }
    });
  }

  Socket socket;
  asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();
  int waits = 0;  // timer waits in flight (a replaced one until its handler runs)
  bool timed_out = false;
  bool idle = true;
  // A handler runs inline in the connection's coroutine. When it is still running at the
  // deadline, the watchdog calls `on_late`, which answers 408 in its place and then owns the
  // socket (`answered_late`): the coroutine drops the handler's result and leaves.
  bool in_handler = false;
  bool answered_late = false;
  std::function<void()> on_late;
};

// The request body of a streamed route, read from the connection chunk by chunk as the handler
// asks for it. Each read has the idle timeout; the parser enforces the route's body limit. An
// `Expect: 100-continue` is answered at the first read, so a handler that refuses the request
// first (auth, preconditions) does so before the client sends the body.
template <typename Socket>
class StreamedBody final : public BodyStream {
 public:
  StreamedBody(Connection<Socket>& conn, beast::flat_buffer& buffer,
               bhttp::request_parser<bhttp::buffer_body>& parser, uint64_t limit,
               std::chrono::milliseconds idle_timeout, bool continue_pending)
      : conn_(conn),
        buffer_(buffer),
        parser_(parser),
        limit_(limit),
        idle_timeout_(idle_timeout),
        continue_pending_(continue_pending) {}

  asio::awaitable<Result<std::string_view>> Next() override {
    if (continue_pending_) {
      continue_pending_ = false;
      conn_.Arm(Clock::now() + idle_timeout_);
      const bool sent = co_await SendContinue(conn_);
      conn_.Disarm();
      if (!sent) co_return Fail(ErrorCode::kBadRequest, "connection closed before the body");
    }
    while (!parser_.is_done()) {
      auto& body = parser_.get().body();
      if (!chunk_) chunk_ = std::make_unique<char[]>(kChunk);
      body.data = chunk_.get();
      body.size = kChunk;
      conn_.Arm(Clock::now() + idle_timeout_);
      auto [ec, n] = co_await bhttp::async_read_some(conn_.socket, buffer_, parser_, kTuple);
      conn_.Disarm();
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        if (conn_.timed_out) {
          co_return Fail(ErrorCode::kTimeout, "request body stalled: no bytes for " +
                                                  std::to_string(idle_timeout_.count()) + " ms");
        }
        if (ec == bhttp::error::body_limit) {
          co_return Fail(ErrorCode::kPayloadTooLarge,
                         "request body exceeds the " + std::to_string(limit_) + "-byte limit");
        }
        if (ec == bhttp::error::buffer_overflow)
          co_return Fail(ErrorCode::kBadRequest, kFramingTooLarge);
        co_return Fail(ErrorCode::kBadRequest, "request body not received: " + ec.message());
      }
      size_t got = kChunk - body.size;
      if (got > 0) {
        received_ += got;
        co_return std::string_view(chunk_.get(), got);
      }
    }
    co_return std::string_view();
  }

  bool done() const { return parser_.is_done(); }
  uint64_t received() const { return received_; }

 private:
  Connection<Socket>& conn_;
  beast::flat_buffer& buffer_;
  bhttp::request_parser<bhttp::buffer_body>& parser_;
  uint64_t limit_;
  std::chrono::milliseconds idle_timeout_;
  bool continue_pending_;  // 100 Continue still to send
  uint64_t received_ = 0;
  static constexpr size_t kChunk = 256 * 1024;
  std::unique_ptr<char[]> chunk_;  // allocated on first use: not in every connection's frame
};

template <typename Socket>
asio::awaitable<void> Server::Impl::Serve(Socket socket) {
  if constexpr (std::is_same_v<typename Socket::protocol_type, asio::ip::tcp>) {
    boost::system::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  }
  auto conn = std::make_shared<Connection<Socket>>(std::move(socket));
  std::list<std::weak_ptr<ConnectionBase>>::iterator registration;
  {
    std::lock_guard lock(conns_mu);
    registration = conns.insert(conns.end(), conn);
  }
  beast::flat_buffer buffer(kHeadLimit);
  buffer.reserve(kHeadLimit);  // Beast reads 512 bytes per syscall into a smaller buffer

  ResponseHead head_out;  // reused by every response of the connection
  // What the watchdog needs to answer for a handler that overruns its deadline; it points into
  // this frame, which lives while the handler runs.
  struct Current {
    const Request* request = nullptr;
    bool head = false;
    unsigned version = 11;
    RouteStats* stats = nullptr;
    Clock::time_point start;
  } current;
  conn->on_late = [this, &current, weak = std::weak_ptr(conn)] {
    auto conn = weak.lock();
    if (!conn) return;
    conn->answered_late = true;
    Response late = ErrorResponse(Error{ErrorCode::kTimeout,
                                        "request not handled within the " +
                                            std::to_string(options.timeout.count()) +
                                            " ms deadline (--timeout)",
                                        {}});
    ResponseHead head;
    Finish(*current.request, late, current.head, current.version, false, head);
    asio::co_spawn(
        conn->socket.get_executor(),
        AnswerLate(conn, std::move(head), std::move(late.body), current.stats, current.start),
        asio::detached);
  };

  // Answers sent before a request is routed (400/408/413), then the connection closes. `context`
  // carries the trace id and, once the header is parsed, the headers CORS needs.
  // Callers build the Response as a named local first: GCC 12 destroys temporaries of a
  // co_await full-expression twice (a malformed request crashed the server with a double free).
  // They count in /metrics under the unmatched route.
  Clock::time_point request_start;  // of the request being read or answered
  auto send = [&](Response response, unsigned version,
                  const Request& context) -> asio::awaitable<bool> {
    Finish(context, response, false, version, false, head_out);
    conn->Arm(Clock::now() + options.timeout);
    metrics.Started();
    const bool written = co_await WriteHeadAndBody(conn->socket, head_out, response.body);
    const std::chrono::duration<double> elapsed = Clock::now() - request_start;
    metrics.Finished(unmatched, response.status, elapsed.count(), 0, response.body.size());
    co_return written;
  };

  bool unread_body = false;  // the last request's body was not read to its end
  Exchange exchange;         // reused, so the request's vectors keep their capacity
  auto new_parser = [&exchange]() -> bhttp::request_parser<bhttp::string_body>& {
    auto& parser = exchange.parser.emplace();
    parser.header_limit(kHeadLimit);
    parser.body_limit(boost::none);  // checked against the route's limit once it is known
    return parser;
  };
  while (!stopping) {
    auto& parser = new_parser();  // a new one reuses the same storage, so this stays valid
    exchange.stream_parser.reset();
    Request* request = &exchange.request;
    request->params.clear();
    request->body.clear();
    request->body_stream = nullptr;
    request->authenticated = false;
    request->scope = nullptr;  // the request object is reused by the connection's next request
    conn->idle = buffer.size() == 0;
    conn->timed_out = false;
    request_start = Clock::now();
    const auto deadline = request_start + options.timeout;
    conn->Arm(deadline);
    // The head is parsed as it arrives, so its whole size is counted here against kHeadLimit
    // (Beast's header_limit bounds only what is buffered at once). Beast takes the CRLF some
    // clients send after a body for a bad request line: it is skipped.
    boost::system::error_code ec;
    for (size_t head_bytes = 0; !parser.is_header_done();) {
      size_t parsed = 0;  // bytes the parser took: Beast stops at the end of the head
      std::tie(ec, parsed) = co_await bhttp::async_read_some(conn->socket, buffer, parser, kTuple);
      if (ec == bhttp::error::bad_method && SkipBlankLines(buffer)) {
        new_parser();
        head_bytes = 0;
        continue;
      }
      if (ec) break;
      head_bytes += parsed;
      if (head_bytes > kHeadLimit) {
        ec = bhttp::error::header_limit;
        break;
      }
    }
    conn->idle = false;
    if (ec) {
      if (ec == bhttp::error::end_of_stream || !parser.got_some() || stopping) break;
      Request context;
      context.trace_id = ResolveTraceId("", "");
      if (conn->timed_out) {
        Response rejection = ErrorResponse(Error{ErrorCode::kTimeout,
                                                 "request headers not received within the " +
                                                     std::to_string(options.timeout.count()) +
                                                     " ms deadline (--timeout)",
                                                 {}});
        co_await send(std::move(rejection), 11, context);
      } else if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        Response rejection = ErrorResponse(
            Error{ErrorCode::kBadRequest, "request headers exceed the 64 KiB limit", {}});
        co_await send(std::move(rejection), 11, context);
      } else {
        Response rejection = ErrorResponse(
            Error{ErrorCode::kBadRequest,
                  "malformed HTTP request: " + ec.message() + "; expected an HTTP/1.1 request",
                  {}});
        co_await send(std::move(rejection), 11, context);
      }
      break;
    }
    const unsigned version = parser.get().version();
    bool keep_alive = parser.get().keep_alive();
    const HeadFraming framing = ReadHeader(parser.get(), *request);
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one valid Host; HTTP/1.0 at most one.
    if (framing.hosts > 1 || (framing.hosts == 0 && version >= 11) ||
        !AllIn(kHostChars, framing.host)) {
      Response rejection = ErrorResponse(Error{
          ErrorCode::kBadRequest, "expected exactly one Host header with a host[:port] value", {}});
      co_await send(std::move(rejection), version, *request);
      unread_body = !parser.is_done();
      break;
    }
    request->deadline = deadline;
    const bool head = request->method == "HEAD";

    // Routing and auth come before the body: a streamed route reads its own body, and a request
    // that will be refused is refused without reading what it uploads.
    const std::string_view target = parser.get().target();
    const bool bad_target = target.empty() || target.front() != '/';
    Routed routed;
    if (!bad_target) routed = Route(*request);
    const RouteEntry* entry = routed.entry;
    const bool streamed = entry != nullptr && entry->streamed_body;
    const uint64_t limit = streamed && entry->body_limit ? entry->body_limit : options.max_body;
    const char* limit_name = streamed ? "" : " (--max-body)";
    if (auto length = parser.content_length(); length && *length > limit) {
      Response rejection =
          ErrorResponse(Error{ErrorCode::kPayloadTooLarge,
                              "request body of " + std::to_string(*length) + " bytes exceeds the " +
                                  std::to_string(limit) + "-byte limit" + limit_name,
                              {}});
      co_await send(std::move(rejection), version, *request);
      unread_body = true;
      break;
    }
    // Only chunked is understood: with any other coding the body length is unknown (RFC 9112
    // §6.3), and reading on would take the body as the next request.
    if (framing.codings > 1 ||
        (framing.codings == 1 && !beast::iequals(TrimBlanks(framing.coding), "chunked"))) {
      Response rejection =
          ErrorResponse(Error{ErrorCode::kBadRequest,
                              "unsupported Transfer-Encoding '" + std::string(framing.coding) +
                                  "'; expected one Transfer-Encoding: chunked",
                              {}});
      co_await send(std::move(rejection), version, *request);
      break;
    }
    const bool has_body = !parser.is_done();
    // An HTTP/1.0 client gets no 1xx (RFC 9110 §15.2): it sends the body anyway.
    const bool send_continue = has_body && version >= 11 &&
                               beast::iequals(parser.get()[bhttp::field::expect], "100-continue");
    std::optional<StreamedBody<Socket>> body_stream;
    if (has_body && (bad_target || entry == nullptr)) {
      keep_alive = false;  // the refused body is never read, so the connection cannot go on
      unread_body = true;
    } else if (streamed) {
      auto& stream_parser = exchange.stream_parser.emplace(std::move(parser));
      stream_parser.body_limit(limit);
      ReadHeader(stream_parser.get(), *request);  // the header moved with the parser
      body_stream.emplace(*conn, buffer, stream_parser, limit, options.stream_idle_timeout,
                          send_continue);
      request->body_stream = &*body_stream;
    } else if (has_body) {
      if (send_continue && !co_await SendContinue(*conn)) break;
      parser.body_limit(limit);
      auto [bec, bn] = co_await bhttp::async_read(conn->socket, buffer, parser, kTuple);
      if (bec) {
        if (conn->timed_out) {
          Response rejection = ErrorResponse(Error{ErrorCode::kTimeout,
                                                   "request body not received within the " +
                                                       std::to_string(options.timeout.count()) +
                                                       " ms deadline (--timeout)",
                                                   {}});
          co_await send(std::move(rejection), version, *request);
        } else if (bec == bhttp::error::body_limit) {
          Response rejection = ErrorResponse(Error{
              ErrorCode::kPayloadTooLarge,
              "request body exceeds the " + std::to_string(limit) + "-byte limit" + limit_name,
              {}});
          co_await send(std::move(rejection), version, *request);
        } else if (bec == bhttp::error::buffer_overflow) {
          Response rejection = ErrorResponse(Error{ErrorCode::kBadRequest, kFramingTooLarge, {}});
          co_await send(std::move(rejection), version, *request);
        } else if (bec != bhttp::error::end_of_stream && bec != asio::error::connection_reset) {
          Response rejection = ErrorResponse(
              Error{ErrorCode::kBadRequest, "malformed HTTP request body: " + bec.message(), {}});
          co_await send(std::move(rejection), version, *request);
        }
        break;
      }
      request->body = std::move(parser.get().body());
    }
    conn->Disarm();

    metrics.Started();
    RouteStats* stats = unmatched;
    Response response = Response::Empty(200);
    if (bad_target) {
      response = ErrorResponse(Error{ErrorCode::kBadRequest,
                                     "request target must be an absolute path such as /kv/get/key",
                                     {}});
      keep_alive = false;
    } else if (entry == nullptr) {
      response = std::move(routed.response);
      if (routed.refused) stats = routed.refused;  // a 401 counts under the route it was for
    } else {
      stats = entry->stats;
      // A streamed upload may take as long as it keeps moving (its reads have the idle timeout).
      if (!streamed) {
        current = Current{request, head, version, stats, request_start};
        conn->in_handler = true;
        conn->Arm(deadline);
      }
      request->client_gone = false;
      std::shared_ptr<bool> watching;
      if (entry->watch_client) {
        watching = std::make_shared<bool>(true);
        asio::co_spawn(conn->socket.get_executor(),
                       NoticeClientGone(conn->socket, *request, watching), asio::detached);
      }
      auto op = entry->handler(*request);
      std::optional<Result<Response>> result;  // empty when the handler threw
      try {
        Result<Response> outcome = co_await std::move(op);
        result.emplace(std::move(outcome));
      } catch (const std::exception& e) {
        spdlog::error("{} {}: handler threw: {} trace={}", request->method, request->path, e.what(),
                      request->trace_id);
      } catch (...) {
        spdlog::error("{} {}: handler threw a non-standard exception trace={}", request->method,
                      request->path, request->trace_id);
      }
      conn->in_handler = false;
      conn->Disarm();
      if (watching) {
        *watching = false;
        boost::system::error_code ignored;
        conn->socket.cancel(ignored);  // the watch's wait, the only operation on the socket now
      }
      if (conn->answered_late) break;  // AnswerLate has the connection now
      if (!result) {
        response = ErrorResponse(
            Error{ErrorCode::kInternal, "internal error while handling the request", {}});
      } else {
        response = *result ? std::move(**result) : ErrorResponse(result->error());
      }
      // A body the handler did not read to the end cannot be skipped safely: close.
      if (body_stream && !body_stream->done()) {
        keep_alive = false;
        unread_body = true;
      }
    }
    const uint64_t bytes_in = body_stream ? body_stream->received() : request->body.size();
    keep_alive = keep_alive && !stopping;
    const int status = response.status;
    bool written;
    uint64_t bytes_out;
    if (response.stream && !head) {
      bytes_out = response.stream_length;
      written = co_await WriteStreamed(*conn, *request, response, version, keep_alive, head_out);
    } else {
      Finish(*request, response, head, version, keep_alive, head_out);
      bytes_out = response.body.size();
      conn->Arm(Clock::now() + options.timeout);
      written = co_await WriteHeadAndBody(conn->socket, head_out, response.body);
    }
    conn->Disarm();
    std::chrono::duration<double> elapsed = Clock::now() - request_start;
    metrics.Finished(stats, status, elapsed.count(), bytes_in, bytes_out);
    spdlog::debug("{} {} {} {:.3f}ms trace={}", request->method, request->path, status,
                  elapsed.count() * 1e3, request->trace_id);
    if (!written || !keep_alive) break;
  }
  conn->on_late = nullptr;
  if (!conn->answered_late) co_await Close(*conn, unread_body && !stopping);
  {
    std::lock_guard lock(conns_mu);
    conns.erase(registration);
  }
  conns_cv.notify_all();
}

template <typename Socket>
asio::awaitable<void> Server::Impl::Close(Connection<Socket>& conn, bool linger) {
  conn.Stop();
  boost::system::error_code ignored;
  if constexpr (std::is_same_v<typename Socket::protocol_type, asio::ip::tcp>) {
    conn.socket.shutdown(asio::socket_base::shutdown_send, ignored);
    if (linger) {
      // Lingering close: closing with unread bytes makes the kernel answer them with a reset,
      // which can destroy the response before the client reads it. Discard what is still
      // coming, for a short while.
      auto sink = std::make_unique<char[]>(kSinkBytes);  // not in every connection's frame
      size_t drained = 0;
      conn.Arm(Clock::now() + kLingerTime);
      while (drained < kLingerBytes) {
        auto [ec, n] =
            co_await conn.socket.async_read_some(asio::buffer(sink.get(), kSinkBytes), kTuple);
        if (ec) break;
        drained += n;
      }
      conn.Stop();
    }
  }
  conn.socket.close(ignored);
}

template <typename Socket>
asio::awaitable<void> Server::Impl::AnswerLate(std::shared_ptr<Connection<Socket>> conn,
                                               ResponseHead head, std::string body,
                                               RouteStats* stats, Clock::time_point request_start) {
  conn->Arm(Clock::now() + options.timeout);
  co_await WriteHeadAndBody(conn->socket, head, body);
  std::chrono::duration<double> elapsed = Clock::now() - request_start;
  metrics.Finished(stats, 408, elapsed.count(), 0, body.size());
  co_await Close(*conn, false);
}

namespace {

// Whether a scoped token may call a route at all (SPEC §2.4): its service, and a write only when
// the token may write. The names the request touches are the handler's to check (Request::Permit).
// The server's own routes that need a token (/metrics) need "metrics" in the scope.
Result<void> Permit(const TokenScope& scope, const RouteEntry& entry, std::string_view method) {
  std::string_view service = entry.service.empty() ? "metrics" : std::string_view(entry.service);
  if (!entry.service.empty() || entry.access == Access::kToken) {
    if (std::find(scope.services.begin(), scope.services.end(), service) == scope.services.end()) {
      std::string allowed;
      for (const std::string& name : scope.services)
        allowed += (allowed.empty() ? "" : ", ") + name;
      return Fail(ErrorCode::kForbidden, "token '" + scope.name + "' may only call " + allowed +
                                             "; not " + std::string(service));
    }
  }
  if (scope.read_only && !entry.read_only) {
    return Fail(ErrorCode::kForbidden, "token '" + scope.name + "' is read-only; " +
                                           std::string(method) + " " + entry.pattern +
                                           " changes data");
  }
  return {};
}

}  // namespace

Server::Impl::Routed Server::Impl::Route(Request& request) const {
  // CORS preflight is answered before auth: browsers never send credentials on it.
  if (!options.cors_origins.empty() && request.method == "OPTIONS" &&
      !request.header("access-control-request-method").empty()) {
    Response preflight = Response::Empty(204);
    preflight.headers.emplace_back("Access-Control-Allow-Methods",
                                   "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    // The headers the browser asks for (storage's x-meta-*, Content-MD5, …): routes refuse what
    // they do not take, so CORS need not second-guess them.
    std::string_view asked = TrimBlanks(request.header("access-control-request-headers"));
    preflight.headers.emplace_back("Access-Control-Allow-Headers",
                                   !asked.empty() && AllIn(kHeaderListChars, asked)
                                       ? std::string(asked)
                                       : "Authorization, Content-Type, If-Match, If-None-Match, "
                                         "Range, x-trace-id, traceparent");
    preflight.headers.emplace_back("Access-Control-Max-Age", "600");
    return {nullptr, std::move(preflight)};
  }
  std::string allow;
  auto match = router.Match(request.method, request.path, &allow);
  auto token = auth.load(std::memory_order_acquire)->Check(request.header("authorization"));
  if (!match) {
    // Unknown routes need the token too, so a probe cannot map the API without it.
    if (!token) return {nullptr, ErrorResponse(token.error())};
    Response response = ErrorResponse(match.error());
    if (match.error().code == ErrorCode::kMethodNotAllowed)
      response.headers.emplace_back("Allow", allow);
    return {nullptr, std::move(response)};
  }
  const RouteEntry& entry = *match->route;
  if (!token && entry.access == Access::kToken)
    return {nullptr, ErrorResponse(token.error()), entry.stats};
  request.authenticated = token.has_value();
  if (token && *token != nullptr && entry.access != Access::kPublic) {
    if (auto allowed = Permit(**token, entry, request.method); !allowed)
      return {nullptr, ErrorResponse(allowed.error()), entry.stats};
    request.scope = *token;
  }
  request.params = std::move(match->params);
  return {&entry, {}};
}

template <typename Conn>
asio::awaitable<bool> Server::Impl::WriteStreamed(Conn& conn, const Request& request,
                                                  Response& response, unsigned version,
                                                  bool keep_alive, ResponseHead& head) {
  head.Start(response.status, version);
  SetHeaders(request, response, head);
  head.End(response.stream_length, keep_alive);
  if (auto region = response.stream->file_region()) {
    if (region->length != response.stream_length) co_return false;
    conn.Arm(Clock::now() + options.timeout);
    if (!co_await WriteHeadAndBody(conn.socket, head, {})) co_return false;
    co_return co_await SendFile(conn, *region);
  }
  // The head goes out with the first chunk: a small body is one write.
  uint64_t sent = 0;
  bool head_sent = false;
  while (!head_sent || sent < response.stream_length) {
    auto chunk = co_await response.stream->Next();
    if (!chunk || sent + chunk->size() > response.stream_length ||
        (chunk->empty() && sent != response.stream_length)) {
      // The status may be sent already: all that is left is to cut the body short, which the
      // client sees as a body shorter than its Content-Length.
      spdlog::error("{} {}: response body failed after {} of {} bytes: {} trace={}", request.method,
                    request.path, sent, response.stream_length,
                    chunk ? "the body has a different length" : chunk.error().message,
                    request.trace_id);
      if (!chunk && !head_sent) {
        // Nothing is written yet: answer with the error.
        Response failure = ErrorResponse(chunk.error());
        Finish(request, failure, false, version, false, head);
        conn.Arm(Clock::now() + options.timeout);
        co_await WriteHeadAndBody(conn.socket, head, failure.body);
      }
      co_return false;
    }
    sent += chunk->size();
    conn.Arm(Clock::now() + options.stream_idle_timeout);
    bool ok;
    if (head_sent) {
      auto [ec, n] = co_await asio::async_write(conn.socket,
                                                asio::buffer(chunk->data(), chunk->size()), kTuple);
      ok = !ec;
    } else {
      ok = co_await WriteHeadAndBody(conn.socket, head, *chunk);
      head_sent = true;
    }
    if (!ok) co_return false;
  }
  co_return true;
}

// Sends a file region with sendfile(2): the kernel copies page-cache pages to the socket. The
// socket is non-blocking, so a full send buffer is awaited on the event loop.
template <typename Conn>
asio::awaitable<bool> Server::Impl::SendFile(Conn& conn, BodyStream::FileRegion region) {
  boost::system::error_code ec;
  conn.socket.native_non_blocking(true, ec);
  if (ec) co_return false;
  off_t offset = static_cast<off_t>(region.offset);
  uint64_t left = region.length;
  while (left > 0) {
    ssize_t n = ::sendfile(conn.socket.native_handle(), region.fd, &offset,
                           static_cast<size_t>(std::min<uint64_t>(left, 1u << 30)));
    if (n > 0) {
      left -= static_cast<uint64_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      conn.Arm(Clock::now() + options.stream_idle_timeout);
      auto [wec] = co_await conn.socket.async_wait(asio::socket_base::wait_write, kTuple);
      if (wec) co_return false;
    } else {
      co_return false;  // the file shrank (n == 0) or the connection failed
    }
  }
  co_return true;
}

bool Server::Impl::SetHeaders(const Request& request, const Response& response,
                              ResponseHead& out) const {
  if (!response.content_type.empty()) out.Add("Content-Type", response.content_type);
  if (!request.trace_id.empty()) out.Add("x-trace-id", request.trace_id);
  bool has_range = false;
  for (const auto& [name, value] : response.headers) {
    if (beast::iequals(name, "content-range")) has_range = true;
    if (!out.Add(name, value)) {
      spdlog::error("{} {}: response header '{}' left out: its value has a line break trace={}",
                    request.method, request.path, name, request.trace_id);
    }
  }
  if (!options.cors_origins.empty()) {
    std::string_view origin = request.header("origin");
    if (!origin.empty()) {
      bool any = options.cors_origins.size() == 1 && options.cors_origins[0] == "*";
      bool listed = any;
      for (const auto& o : options.cors_origins) listed = listed || o == origin;
      if (listed) {
        out.Add("Access-Control-Allow-Origin", any ? std::string_view("*") : origin);
        std::string expose = "ETag, x-trace-id, Content-Range, x-object-size, x-last-modified";
        for (const auto& [name, value] : response.headers) {
          if (name.size() > 7 && beast::iequals(std::string_view(name).substr(0, 7), "x-meta-"))
            expose += ", " + name;
        }
        out.Add("Access-Control-Expose-Headers", expose);
        if (!any) out.Add("Vary", "Origin");
      }
    }
  }
  return has_range;
}

// Common headers, compression and CORS for every buffered response.
void Server::Impl::Finish(const Request& request, Response& response, bool head, unsigned version,
                          bool keep_alive, ResponseHead& out) const {
  out.Start(response.status, version);
  const bool has_range = SetHeaders(request, response, out);
  if (options.compression && !has_range && response.body.size() >= kMinCompressBytes &&
      IsCompressible(response.content_type) && AcceptsGzip(request.header("accept-encoding"))) {
    if (auto gz = Gzip(response.body)) {
      response.body = std::move(*gz);
      out.Add("Content-Encoding", "gzip");
      out.Add("Vary", "Accept-Encoding");
    }
  }
  if (head) {
    out.End(response.stream_length ? response.stream_length : response.body.size(), keep_alive);
    response.body.clear();
  } else {
    out.End(response.body.size(), keep_alive);
  }
}

}  // namespace mikcar::http

namespace mikcar {

namespace asio = boost::asio;
using http::Clock;

Result<void> CheckReady(Sidecar& sidecar, std::chrono::milliseconds timeout) {
  asio::io_context ctx(1);
  std::optional<Result<void>> outcome;
  auto check = [&]() -> asio::awaitable<void> {
    auto ready = co_await http::WithDeadline(sidecar.Ready(), Clock::now() + timeout);
    outcome = ready ? std::move(*ready)
                    : Fail(ErrorCode::kUnavailable,
                           "no answer within " + std::to_string(timeout.count()) + " ms");
  };
  asio::co_spawn(ctx, check(), asio::detached);
  ctx.run();
  return outcome ? std::move(*outcome) : Fail(ErrorCode::kInternal, "readiness check did not run");
}

}  // namespace mikcar

namespace mikcar::http {

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

Result<std::unique_ptr<Server>> Server::Create(ServerOptions options,
                                               std::vector<std::unique_ptr<Sidecar>> services) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->services = std::move(services);
  if (auto r = impl->UseTokens(impl->options.auth_token, std::move(impl->options.tokens)); !r)
    return Fail(r.error());
  impl->options.tokens.clear();
  impl->unmatched = impl->metrics.Register("", "unmatched", "");
  if (auto r = impl->AddRoutes(); !r) return Fail(r.error());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Result<void> Server::Start() {
  Impl& s = *impl_;
  const auto& o = s.options;
  // A write to a connection whose peer has gone raises SIGPIPE, and its default action ends the
  // process: sendfile(2) and some backends' write(2)s (hiredis) cannot pass MSG_NOSIGNAL. So a
  // client that resets a download could stop every service. Ignored, those writes fail with
  // EPIPE and end one connection. A handler the embedding application installed stays.
  if (struct sigaction old{}; ::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
    std::signal(SIGPIPE, SIG_IGN);
  if (!o.tcp && o.unix_socket.empty()) {
    return Fail(ErrorCode::kBadRequest, "no listener: --no-tcp needs --unix-socket PATH");
  }
  if (o.tcp && !s.auth.load()->enabled() && !o.no_auth && !IsLoopback(o.host)) {
    return Fail(ErrorCode::kBadRequest,
                "HOST=" + o.host +
                    " is not a loopback address and no token is set; expected "
                    "SIDECAR_TOKEN/--auth-token, or --no-auth to run open");
  }
  s.io_threads = o.io_threads ? o.io_threads : DefaultIoThreads();
  s.io = std::make_unique<asio::io_context>(static_cast<int>(s.io_threads));
  s.guard.emplace(asio::make_work_guard(*s.io));
  boost::system::error_code ec;
  if (o.tcp) {
    auto addr = asio::ip::make_address(o.host == "localhost" ? "127.0.0.1" : o.host, ec);
    if (ec)
      return Fail(ErrorCode::kBadRequest,
                  "HOST: expected an IP address such as 127.0.0.1 or ::; got '" + o.host + "'");
    asio::ip::tcp::endpoint endpoint(addr, o.port);
    auto& acc = s.tcp_acceptor.emplace(s.Serial());
    acc.open(endpoint.protocol(), ec);
    if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acc.bind(endpoint, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Fail(ErrorCode::kUnavailable, "PORT: cannot listen on " + o.host + ":" +
                                               std::to_string(o.port) + ": " + ec.message());
    }
    s.bound_port = acc.local_endpoint().port();
  }
  if (!o.unix_socket.empty()) {
    const std::string where = "MIKCAR_UNIX_SOCKET: cannot listen on " + o.unix_socket + ": ";
    if (o.unix_socket.size() >= sizeof(sockaddr_un::sun_path)) {
      return Fail(ErrorCode::kBadRequest, where + "the path is longer than " +
                                              std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                              " bytes");
    }
    asio::local::stream_protocol::endpoint endpoint(o.unix_socket);
    // Only a stale socket file is replaced: never a regular file, never a live listener.
    if (struct stat st; ::lstat(o.unix_socket.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return Fail(ErrorCode::kBadRequest, where + "the path exists and is not a socket");
      asio::local::stream_protocol::socket probe(*s.io);
      probe.connect(endpoint, ec);
      if (!ec) return Fail(ErrorCode::kUnavailable, where + "another process is listening on it");
      ::unlink(o.unix_socket.c_str());
    }
    auto& acc = s.unix_acceptor.emplace(s.Serial());
    acc.open(endpoint.protocol(), ec);
    if (!ec) acc.bind(endpoint, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      s.unix_acceptor.reset();  // Stop() must not unlink a path this process does not own
      return Fail(ErrorCode::kUnavailable, where + ec.message());
    }
    ::chmod(o.unix_socket.c_str(), 0660);
  }
  if (s.tcp_acceptor) {
    asio::co_spawn(s.tcp_acceptor->get_executor(), s.AcceptLoop(*s.tcp_acceptor), asio::detached);
  }
  if (s.unix_acceptor) {
    asio::co_spawn(s.unix_acceptor->get_executor(), s.AcceptLoop(*s.unix_acceptor), asio::detached);
  }
  for (unsigned i = 0; i < s.io_threads; ++i)
    s.threads.emplace_back([io = s.io.get()] { io->run(); });
  return {};
}

uint16_t Server::port() const { return impl_->bound_port; }

void Server::Stop() {
  Impl& s = *impl_;
  std::lock_guard stop_lock(s.stop_mu);
  if (s.stopped) return;
  s.stopped = true;
  s.stopping = true;
  for (auto& service : s.services) service->Drain();
  if (s.io) {
    // Each acceptor is closed on its own strand, never while its accept loop runs.
    if (s.tcp_acceptor) {
      asio::post(s.tcp_acceptor->get_executor(), [&s] {
        boost::system::error_code ignored;
        s.tcp_acceptor->close(ignored);
      });
    }
    if (s.unix_acceptor) {
      asio::post(s.unix_acceptor->get_executor(), [&s] {
        boost::system::error_code ignored;
        s.unix_acceptor->close(ignored);
      });
    }
    {
      std::unique_lock lock(s.conns_mu);
      for (auto& weak : s.conns) {
        if (auto conn = weak.lock()) conn->CloseIfIdle();
      }
      s.conns_cv.wait_for(lock, s.options.shutdown_grace, [&s] { return s.conns.empty(); });
      if (!s.conns.empty())
        spdlog::warn("shutdown: {} connection(s) still busy after the grace period",
                     s.conns.size());
    }
  }
  for (auto& service : s.services) service->Shutdown();
  s.guard.reset();
  if (s.io) s.io->stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // The posted close may not have run before stop(): no thread runs now, so close here too, or
  // the kernel would keep accepting connections into the backlog of a dead server.
  boost::system::error_code ignored;
  if (s.tcp_acceptor) s.tcp_acceptor->close(ignored);
  if (s.unix_acceptor) s.unix_acceptor->close(ignored);
  if (!s.options.unix_socket.empty() && s.unix_acceptor) ::unlink(s.options.unix_socket.c_str());
}

Result<void> Server::Impl::UseTokens(std::string_view token, std::vector<ScopedToken> scoped) {
  auto table = TokenAuth::Create(token, std::move(scoped));
  if (!table) return Fail(table.error());
  for (const TokenScope* scope : table->scopes()) {
    for (const std::string& name : scope->services) {
      bool mounted = name == "metrics";
      for (const auto& service : services) mounted = mounted || service->name() == name;
      if (!mounted) {
        std::string known = "metrics";
        for (const auto& service : services) known += ", " + service->name();
        return Fail(ErrorCode::kBadRequest, "token '" + scope->name + "': services: '" + name +
                                                "' is not mounted; expected some of " + known);
      }
    }
  }
  std::lock_guard lock(tokens_mu);
  const TokenAuth* current = auth.load();
  if (current && current->enabled() != table->enabled()) {
    return Fail(ErrorCode::kBadRequest, std::string("the new tokens would turn authentication ") +
                                            (table->enabled() ? "on" : "off") +
                                            "; that needs a restart");
  }
  token_tables.push_back(std::make_unique<const TokenAuth>(std::move(*table)));
  auth.store(token_tables.back().get(), std::memory_order_release);
  return {};
}

Result<void> Server::SetTokens(std::string auth_token, std::vector<ScopedToken> tokens) {
  return impl_->UseTokens(auth_token, std::move(tokens));
}

void Server::WaitForSignal(std::function<void()> on_hangup) {
  asio::io_context signals_ctx(1);
  asio::signal_set signals(signals_ctx, SIGINT, SIGTERM, SIGHUP);
  // The mikcar binary keeps these blocked until now (see main.cc); deliver any pending one.
  sigset_t handled;
  sigemptyset(&handled);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, signal);
  pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                      int signal) {
    if (!ec && signal == SIGHUP) {
      // Its default action would kill the process.
      if (on_hangup) {
        on_hangup();
      } else {
        spdlog::info("received SIGHUP: nothing to reload, still serving");
      }
      signals.async_wait(on_signal);
      return;
    }
    spdlog::info("received {}, shutting down (in-flight requests get up to the grace period)",
                 signal == SIGTERM ? "SIGTERM" : "SIGINT");
  };
  signals.async_wait(on_signal);
  signals_ctx.run();
  Stop();
}

}  // namespace mikcar::http
