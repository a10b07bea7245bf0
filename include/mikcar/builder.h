// `SidecarBuilder`: embed mikcar's HTTP server and services in another C++ program.
//
//   auto kv = mikcar::KvService::FromUrl("memory://");
//   auto server =
//   mikcar::SidecarBuilder{}.port(0).auth_token("secret").add(std::move(*kv)).start(); if (!server)
//   { /* server.error().message */ } int port = server->port();   // the handle's destructor stops
//   the server cleanly
//
// `serve()` blocks until SIGINT/SIGTERM (graceful: in-flight requests finish, up to 10 s);
// `start()` runs the server on internal threads and returns at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/sidecar.h"

namespace mikcar {

namespace http {
class Server;
}

// A token limited to a scope (SPEC §2.4). Give the token itself, or the lowercase hex SHA-256 of
// it so that the configuration need not hold the secret.
struct ScopedToken {
  std::string token;
  std::string token_sha256;
  TokenScope scope;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 3001;                       // 0 = pick a free port
  bool tcp = true;                            // listen on TCP (off with --no-tcp)
  std::string unix_socket;                    // also listen here when not empty (mode 0660)
  std::string auth_token;                     // the full-access token; empty = none
  std::vector<ScopedToken> tokens;            // scoped tokens, besides auth_token
  bool no_auth = false;                       // allow a non-loopback bind without a token
  uint64_t max_body = 10ull << 20;            // JSON/KV body limit in bytes
  std::chrono::milliseconds timeout{30'000};  // per-request deadline
  std::chrono::milliseconds stream_idle_timeout{30'000};  // streamed bodies: max time w/o progress
  std::chrono::milliseconds shutdown_grace{10'000};
  unsigned io_threads = 0;                // 0 = half the CPUs this process may use, at least 1
  bool compression = true;                // gzip responses ≥ 1 KiB when the client accepts it
  std::vector<std::string> cors_origins;  // empty = CORS off; {"*"} = any origin
  bool metrics_public = false;            // /metrics without the token
  bool mount_at_root = false;             // single-service mode: routes at "/" instead of "/<name>"
};

// A running server. Destroying it stops the server (graceful, bounded by shutdown_grace).
class SidecarHandle {
 public:
  explicit SidecarHandle(std::unique_ptr<http::Server> server);
  SidecarHandle(SidecarHandle&&) noexcept;
  SidecarHandle& operator=(SidecarHandle&&) noexcept;
  ~SidecarHandle();

  // The bound TCP port (useful with port 0); 0 when only a Unix socket is used.
  uint16_t port() const;
  // Blocks until SIGINT or SIGTERM, then stops gracefully. SIGHUP calls `on_hangup` (e.g. to
  // reload tokens with set_tokens) and goes on serving.
  void wait(std::function<void()> on_hangup = {});
  // Replaces every token at once; requests already authorised keep their scope. BAD_REQUEST,
  // and the tokens in use stay, when a token is malformed or names a service not mounted, or
  // when the change would turn authentication on or off (that needs a restart).
  Result<void> set_tokens(std::string auth_token, std::vector<ScopedToken> tokens);
  // Graceful stop: stop accepting, let in-flight requests finish, close backends. Idempotent.
  void stop();

 private:
  std::unique_ptr<http::Server> server_;
};

class SidecarBuilder {
 public:
  SidecarBuilder() = default;
  explicit SidecarBuilder(ServerOptions options) : options_(std::move(options)) {}

  SidecarBuilder& port(uint16_t port) {
    options_.port = port;
    return *this;
  }
  SidecarBuilder& host(std::string host) {
    options_.host = std::move(host);
    return *this;
  }
  SidecarBuilder& unix_socket(std::string path) {
    options_.unix_socket = std::move(path);
    return *this;
  }
  SidecarBuilder& auth_token(std::string token) {
    options_.auth_token = std::move(token);
    return *this;
  }
  SidecarBuilder& tokens(std::vector<ScopedToken> scoped) {
    options_.tokens = std::move(scoped);
    return *this;
  }
  SidecarBuilder& no_auth(bool on = true) {
    options_.no_auth = on;
    return *this;
  }
  SidecarBuilder& max_body(uint64_t bytes) {
    options_.max_body = bytes;
    return *this;
  }
  SidecarBuilder& timeout(std::chrono::milliseconds t) {
    options_.timeout = t;
    return *this;
  }
  SidecarBuilder& io_threads(unsigned n) {
    options_.io_threads = n;
    return *this;
  }
  SidecarBuilder& mount_at_root(bool on = true) {
    options_.mount_at_root = on;
    return *this;
  }
  SidecarBuilder& add(std::unique_ptr<Sidecar> service) {
    services_.push_back(std::move(service));
    return *this;
  }
  const ServerOptions& options() const { return options_; }

  // Binds and serves until SIGINT/SIGTERM, then shuts down gracefully.
  Result<void> serve();
  // Binds and serves on internal threads; the handle stops the server.
  Result<SidecarHandle> start();

 private:
  ServerOptions options_;
  std::vector<std::unique_ptr<Sidecar>> services_;
};

}  // namespace mikcar
