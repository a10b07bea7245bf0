// The request and response a service handler sees, and the route table entry.
//
// These types are the whole contract between the HTTP core (src/http/) and a service: a handler
// receives a parsed `Request` and returns a `Response` or an `Error`; it never sees Beast, sockets
// or status mapping. `Request` views (header names/values) point into the connection's buffers
// and are valid for the duration of the handler call.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mikcar/error.h"

namespace mikcar {

class Request {
 public:
  std::string method;  // "GET", "POST", …
  std::string path;    // the raw path, not percent-decoded
  std::string query;   // the raw query string without '?'
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  std::vector<std::pair<std::string, std::string>> params;  // path parameters, decoded once
  std::string body;
  std::string trace_id;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool authenticated = false;  // a valid token was presented (or auth is off)

  // Header value by case-insensitive name; empty if absent.
  std::string_view header(std::string_view name) const;
  // Path parameter by name (decoded); empty if absent.
  std::string_view param(std::string_view name) const;
  // Query parameter by name, percent-decoded ('+' is a space); nullopt if absent or malformed.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  static Response Json(std::string json, int status = 200) {
    return Response{status, "application/json", std::move(json), {}};
  }
  static Response Bytes(std::string bytes, std::string content_type, int status = 200) {
    return Response{status, std::move(content_type), std::move(bytes), {}};
  }
  static Response Empty(int status) { return Response{status, "", "", {}}; }
};

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
};

}  // namespace mikcar
