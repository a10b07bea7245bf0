// A pipelining RESP client on Asio, using hiredis only for encoding commands and parsing replies
// (Debian's hiredis 0.14 has no Asio adapter and no TLS; TLS here is asio::ssl/OpenSSL, with
// the system trust store, which SSL_CERT_FILE overrides). One TCP connection, driven by the
// client's own thread: every caller's command is appended to the write buffer at once (automatic
// pipelining) and replies complete callers in order. A lost connection fails the commands in
// flight with UNAVAILABLE and the next command reconnects, so a Redis restart costs only the
// requests that were in flight. Thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/uri.h"

namespace mikcar::redis {

struct Reply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus, kError };
  Type type = Type::kNil;
  std::string str;  // string, status or error text
  int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
};

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string user;
  std::string password;
  int db = 0;
  bool tls = false;           // rediss://: TLS with certificate and host name verification
  bool tls_insecure = false;  // ?insecure=true: skip verification (development only)
};

// Connection options from a redis:// or rediss:// URL: [user:password@]host[:port][/db] and
// ?insecure=true. Other query parameters are the caller's.
Result<Options> OptionsFromUri(const Uri& uri);

class Client {
 public:
  static std::shared_ptr<Client> Create(Options options);
  virtual ~Client() = default;

  // Sends one command. Transport failures → UNAVAILABLE; a Redis error reply is returned as a
  // Reply of type kError (the caller decides what it means).
  virtual boost::asio::awaitable<Result<Reply>> Command(std::vector<std::string> args) = 0;
  // EVALSHA with a fall-back to EVAL when the server does not know the script yet.
  virtual boost::asio::awaitable<Result<Reply>> Eval(const std::string& script,
                                                     std::vector<std::string> keys,
                                                     std::vector<std::string> args) = 0;
  // Closes the connection and stops the client thread.
  virtual void Close() = 0;
};

}  // namespace mikcar::redis
