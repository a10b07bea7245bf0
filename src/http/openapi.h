// The OpenAPI 3.1 document served at /openapi.json, built from the route table and the fragments
// that describe it (the server renders it on the first request).
//
// A fragment is JSON text: {"paths": {PATTERN: {METHOD: OPERATION}}, "schemas": {NAME: SCHEMA}},
// where PATTERN is a route pattern exactly as registered (relative to the mount prefix, `{*rest}`
// included) and OPERATION an OpenAPI operation object. The builder fills in what the route table
// already knows: operationId, tag, security, the path parameters, 401 and a default error response,
// and the error envelope for any 4xx/5xx response without content. Every registered route appears,
// documented or not; a documented operation that is not registered is left out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::embedded {
extern const std::string_view kServerOpenApi;  // src/http/openapi.json (cmake/embed.cmake)
}  // namespace mikcar::embedded

namespace mikcar::http {

struct OpenApiRoute {
  std::string method;   // "GET"
  std::string pattern;  // relative to the group's prefix: "/get/{key}"
  Access access = Access::kToken;
};

// The routes of one service (or the server's own), mounted under one prefix.
struct OpenApiGroup {
  std::string tag;            // "kv"; "operations" for the server's own routes
  std::string prefix;         // "/kv", or "" at the root
  std::string_view fragment;  // may be empty
  std::vector<OpenApiRoute> routes;
};

// The document, or INTERNAL when a fragment is not valid JSON of the shape above or two
// fragments define the same schema name. Without a `token` the server takes none: the
// document then asks for none and lists no 401.
Result<std::string> BuildOpenApi(const std::vector<OpenApiGroup>& groups, bool token,
                                 std::string_view version);

}  // namespace mikcar::http
