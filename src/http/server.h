// The HTTP server: listeners (TCP and Unix socket), one io_context that every I/O thread runs,
// a coroutine per connection on a strand of its own, the request pipeline (limits, auth, routing,
// deadline, compression, CORS, tracing, metrics) and graceful shutdown. Knows services only through
// `Sidecar`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mikcar/builder.h"
#include "mikcar/error.h"
#include "mikcar/sidecar.h"

namespace mikcar::http {

class Server {
 public:
  // Validates options and builds the route table. Does not bind.
  static Result<std::unique_ptr<Server>> Create(ServerOptions options,
                                                std::vector<std::unique_ptr<Sidecar>> services);
  ~Server();

  // Binds the listeners and starts the I/O threads. Errors: UNAVAILABLE (bind failed),
  // BAD_REQUEST (unsafe configuration such as a public bind without a token).
  Result<void> Start();
  // The bound TCP port (0 if no TCP listener).
  uint16_t port() const;
  // Graceful stop: stop accepting, close idle connections, wait for in-flight requests up to the
  // grace period, shut services down, join threads. Idempotent; blocks until done.
  void Stop();
  // Blocks until SIGINT or SIGTERM, then Stop(). SIGHUP calls `on_hangup` and goes on.
  void WaitForSignal(std::function<void()> on_hangup);
  // Replaces every token at once (see SidecarHandle::set_tokens).
  Result<void> SetTokens(std::string auth_token, std::vector<ScopedToken> tokens);

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mikcar::http
