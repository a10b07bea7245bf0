// The request and response a service handler sees, and the route table entry.
//
// These types are the whole contract between the HTTP core (src/http/) and a service: a handler
// receives a parsed `Request` and returns a `Response` or an `Error`; it never sees Beast, sockets
// or status mapping. `Request` views (header names/values) point into the connection's buffers
// and are valid for the duration of the handler call.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mikcar/error.h"

namespace mikcar {

// A body that moves in bounded chunks instead of one string: the request body of a route with
// `Route::streamed_body`, or a response body (`Response::stream`). Used from one coroutine at a
// time.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // The next chunk; an empty view at the end of the body. The view is valid until the next call.
  // Errors: a streamed request body fails with TIMEOUT when the client sends nothing for the idle
  // timeout, PAYLOAD_TOO_LARGE past the route's limit, BAD_REQUEST on a malformed body.
  virtual boost::asio::awaitable<Result<std::string_view>> Next() = 0;

  // A response body that is bytes of an open file already in the page cache: the server sends
  // it with sendfile(2) from the kernel, without copies, and never calls Next(). The stream keeps
  // `fd` open while it exists.
  struct FileRegion {
    int fd = -1;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  virtual std::optional<FileRegion> file_region() const { return std::nullopt; }
};

// What a scoped token may do (SPEC §2.4): which services it may call, which names it may touch,
// and whether it may change anything.
struct TokenScope {
  std::string name;                   // names the token in errors and logs (never the token)
  std::vector<std::string> services;  // mount names, e.g. "kv"; "metrics" for GET /metrics
  std::vector<std::string> prefixes;  // every key, object path, queue or topic starts with one
                                      // of these; empty: any name
  bool read_only = false;             // only routes marked read_only; SQL runs read-only
};

class Request {
 public:
  std::string method;  // "GET", "POST", …
  std::string path;    // the raw path, not percent-decoded
  std::string query;   // the raw query string without '?'
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  std::vector<std::pair<std::string, std::string>> params;  // path parameters, decoded once
  std::string body;                   // the whole body (routes without `streamed_body`)
  BodyStream* body_stream = nullptr;  // the body in chunks (routes with `streamed_body`)
  std::string trace_id;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool authenticated = false;  // a valid token was presented (or auth is off)
  // The scope of the token that authorised the request; null when that token has full access,
  // auth is off, or a presigned URL authorised the request.
  const TokenScope* scope = nullptr;
  // Routes marked watch_client only: the client closed or reset the connection while the handler
  // waited. A long-poll checks it before it takes anything the client could no longer receive.
  bool client_gone = false;

  // Header value by case-insensitive name; empty if absent.
  std::string_view header(std::string_view name) const;
  // Path parameter by name (decoded); empty if absent.
  std::string_view param(std::string_view name) const;
  // Query parameter by name, percent-decoded ('+' is a space); nullopt if absent or malformed.
  std::optional<std::string> query_param(std::string_view name) const;
  // FORBIDDEN unless the token may touch `name` (a key, an object path, a queue or a topic) and
  // so every name starting with it (a listing prefix, a glob's literal prefix). Services call it
  // for every name a request names, in the path or in the body.
  Result<void> Permit(std::string_view name) const;
  // The token may only read: routes not marked read_only are refused before the handler runs,
  // and SQL runs in read-only transactions.
  bool read_only() const { return scope != nullptr && scope->read_only; }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  // A streamed body of exactly `stream_length` bytes, sent instead of `body` when set. It is
  // never compressed. A HEAD response announces `stream_length` when it is not 0 (with or
  // without a stream) and sends no body.
  std::shared_ptr<BodyStream> stream;
  uint64_t stream_length = 0;

  static Response Json(std::string json, int status = 200) {
    return Response{status, "application/json", std::move(json), {}, nullptr, 0};
  }
  static Response Bytes(std::string bytes, std::string content_type, int status = 200) {
    return Response{status, std::move(content_type), std::move(bytes), {}, nullptr, 0};
  }
  static Response Empty(int status) { return Response{status, "", "", {}, nullptr, 0}; }
  static Response Stream(std::shared_ptr<BodyStream> stream, uint64_t length,
                         std::string content_type, int status = 200) {
    return Response{status, std::move(content_type), "", {}, std::move(stream), length};
  }
};

// The JSON error envelope of SPEC §2.2 for `error`, with the status the one error mapping picks:
// for a handler that adds headers to an error (e.g. Content-Range on a 416).
Response ErrorResponse(const Error& error);

using Handler = std::function<boost::asio::awaitable<Result<Response>>(Request&)>;

// Who may call a route.
enum class Access {
  kToken,     // needs the bearer token (the default)
  kOptional,  // answers everyone; Request::authenticated says whether the token was valid
  kPublic,    // never needs a token
};

struct Route {
  std::string method;   // "GET", "POST", "PUT", "DELETE", "HEAD"
  std::string pattern;  // "/get/{key}", "/object/{*path}"; literal segments win over parameters
  Handler handler;
  Access access = Access::kToken;
  // The handler reads the body from `Request::body_stream` while it arrives, up to `body_limit`
  // bytes (0 = the server's --max-body). Such a handler has no overall deadline: the body read
  // has an idle timeout instead, so a large upload may take as long as it keeps moving.
  bool streamed_body = false;
  uint64_t body_limit = 0;
  // The route changes nothing (or, like SQL, enforces Request::read_only() itself): a read-only
  // token may call it.
  bool read_only = false;
  // While the handler runs, the server watches the connection and sets Request::client_gone when
  // the client leaves: for long-polls that take something (a queue message) when they end.
  bool watch_client = false;
};

// `route` marked read_only: {ReadOnly({"GET", "/get/{key}", handler}), …}.
inline Route ReadOnly(Route route) {
  route.read_only = true;
  return route;
}

// `route` marked watch_client.
inline Route WatchClient(Route route) {
  route.watch_client = true;
  return route;
}

}  // namespace mikcar
