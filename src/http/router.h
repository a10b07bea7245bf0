// Method + path routing with `{name}` (one segment) and `{*rest}` (the remainder) parameters.
//
// Paths are matched segment by segment on the raw (still percent-encoded) path, so `%2F` stays
// inside one segment and a literal segment ("batch") only matches the literal text: the key
// "batch" is still reachable as "%62atch". Literal segments win over `{name}`, which wins over
// `{*rest}`. Parameters are percent-decoded exactly once. Routes are added before serving; Match()
// is then safe to call from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::http {

struct RouteStats;

struct RouteEntry {
  std::string service;  // "kv", or "" for the server's own routes
  std::string pattern;  // full mounted pattern, e.g. "/kv/get/{key}", used as the metrics label
  Handler handler;
  Access access = Access::kToken;
  bool streamed_body = false;  // see mikcar::Route
  uint64_t body_limit = 0;
  bool read_only = false;
  bool watch_client = false;    // see mikcar::Route
  RouteStats* stats = nullptr;  // metrics of this route, set by the server
};

struct RouteMatch {
  const RouteEntry* route = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
};

class Router {
 public:
  Router();
  ~Router();

  // Fails (CONFLICT) on a duplicate method+pattern or a malformed pattern.
  Result<void> Add(std::string_view method, std::string_view pattern, RouteEntry entry);

  // Success: the route and decoded parameters. Errors: NOT_FOUND; METHOD_NOT_ALLOWED with the
  // allowed methods in `allow`; BAD_REQUEST for a malformed percent-escape in a parameter.
  Result<RouteMatch> Match(std::string_view method, std::string_view path,
                           std::string* allow) const;

 private:
  struct Node;
  std::unique_ptr<Node> root_;
};

}  // namespace mikcar::http
