// `Sidecar`: the interface every service implements (kv, storage, … and custom ones).
//
// A sidecar has a name (its mount prefix: "kv" → /kv/...), a route table and a readiness
// check. The server calls `Routes()` once at start-up; handlers may run concurrently on any I/O
// thread, so a sidecar must be safe to call from several threads at once.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/http.h"
#include "mikcar/metrics.h"

namespace mikcar {

class Sidecar {
 public:
  virtual ~Sidecar() = default;

  // Mount prefix without slashes, e.g. "kv".
  virtual std::string name() const = 0;
  // Short name of the backend in use, e.g. "lmdb", for /health/ready and logs.
  virtual std::string backend_name() const { return "custom"; }
  // The routes, with patterns relative to the mount prefix.
  virtual std::vector<Route> Routes() = 0;
  // An OpenAPI 3.1 fragment describing Routes(), for /openapi.json: JSON text
  // {"paths": {PATTERN: {METHOD: OPERATION}}, "schemas": {NAME: SCHEMA}}, PATTERN exactly as in
  // Routes(), METHOD in lower case. The server adds operationId, tags, security, the path
  // parameters and the error responses. Empty: the routes are listed without descriptions. The
  // text must live as long as the sidecar (it is read at the first request for /openapi.json).
  virtual std::string_view OpenApi() const { return {}; }
  // Adds this service's own samples to /metrics (the server already counts its requests).
  // Awaited at each scrape, on an I/O thread: it may ask its backend, but must not block.
  virtual boost::asio::awaitable<void> Collect(MetricsSink& /*sink*/) { co_return; }
  // Readiness: success when the backend answers. Called by /health/ready with a short timeout.
  virtual boost::asio::awaitable<Result<void>> Ready() { co_return Result<void>{}; }
  // Called when graceful shutdown begins, before in-flight requests finish: long-polls should
  // answer now with what they have. Must not block.
  virtual void Drain() {}
  // Called once during graceful shutdown after the last request finished: flush and close.
  virtual void Shutdown() {}
};

// A route handler calling a member function: {"GET", "/x", BindHandler(this, &MySidecar::X)}.
template <typename T>
Handler BindHandler(T* self, boost::asio::awaitable<Result<Response>> (T::*method)(Request&)) {
  return [self, method](Request& request) { return (self->*method)(request); };
}

// Runs `sidecar.Ready()` to completion on a private event loop, waiting at most `timeout`
// (UNAVAILABLE when it takes longer). For start-up checks, before serving.
Result<void> CheckReady(Sidecar& sidecar, std::chrono::milliseconds timeout);

}  // namespace mikcar
