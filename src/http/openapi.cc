#include "http/openapi.h"

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>

namespace mikcar::http {
namespace {

namespace json = boost::json;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "/object/{*path}" → "/object/{path}", appending the parameter names to `names` in order. As
// in the router, a parameter is a whole segment "{name}" or "{*name}"; other braces are text.
std::string DocumentPath(std::string_view pattern, std::vector<std::string>& names) {
  std::string out;
  size_t start = 0;
  while (start < pattern.size()) {
    size_t slash = pattern.find('/', start + 1);
    std::string_view segment = pattern.substr(start, slash - start);  // with its leading '/'
    std::string_view inner = segment.substr(std::min<size_t>(1, segment.size()));
    if (inner.size() >= 3 && inner.front() == '{' && inner.back() == '}') {
      std::string_view name = inner.substr(1, inner.size() - 2);
      if (name.front() == '*') name.remove_prefix(1);
      names.emplace_back(name);
      out.append("/{").append(name).append("}");
    } else {
      out.append(segment);
    }
    if (slash == std::string_view::npos) break;
    start = slash;
  }
  return out;
}

// "get" + "/kv/get/{key}" → "get_kv_get_key".
std::string OperationId(std::string_view method, std::string_view path) {
  std::string id(method);
  for (char c : path) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      id += c;
    } else if (id.back() != '_') {
      id += '_';
    }
  }
  while (id.back() == '_') id.pop_back();
  return id;
}

json::object EnvelopeContent() {
  return {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}};
}

json::object ErrorResponse(std::string_view description) {
  return {{"description", description}, {"content", EnvelopeContent()}};
}

json::value Security(Access access) {
  switch (access) {
    case Access::kPublic:
      return json::array{};
    case Access::kOptional:  // anonymous (presigned, or less detail) or with the token
      return json::array{json::object{}, json::object{{"bearer", json::array{}}}};
    case Access::kToken:
      break;
  }
  return nullptr;  // the document's default: the token
}

tl::unexpected<Error> Invalid(const OpenApiGroup& group, std::string_view what) {
  return Fail(ErrorCode::kInternal,
              "openapi: the fragment of '" + group.tag + "' is invalid: " + std::string(what));
}

// The path parameters of the pattern first, each merged with its description in the fragment,
// then the fragment's other parameters.
Result<json::array> Parameters(const OpenApiGroup& group, const json::object& op,
                               const std::vector<std::string>& names) {
  json::array documented;
  if (const json::value* p = op.if_contains("parameters")) {
    if (!p->is_array()) return Invalid(group, "parameters is not an array");
    documented = p->as_array();
  }
  json::array out;
  for (const std::string& name : names) {
    json::object param{
        {"name", name}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}};
    for (const json::value& d : documented) {
      const json::object* o = d.if_object();
      if (!o || o->if_contains("in") == nullptr || *o->if_contains("in") != "path" ||
          o->if_contains("name") == nullptr || *o->if_contains("name") != name.c_str()) {
        continue;
      }
      for (const auto& [key, value] : *o) param[key] = value;
      param["required"] = true;
    }
    out.push_back(std::move(param));
  }
  for (const json::value& d : documented) {
    const json::object* o = d.if_object();
    if (!o) return Invalid(group, "a parameter is not an object");
    const json::value* in = o->if_contains("in");
    if (in && *in == "path") {
      const json::value* name = o->if_contains("name");
      bool known = false;
      for (const std::string& n : names) known = known || (name && *name == n.c_str());
      if (!known) {
        return Invalid(group, "path parameter " + (name ? json::serialize(*name) : "?") +
                                  " is not in its route's pattern");
      }
      continue;
    }
    out.push_back(*o);
  }
  return out;
}

Result<void> AddGroup(const OpenApiGroup& group, bool token, json::object& paths,
                      json::object& schemas) {
  json::object fragment_paths;
  if (!group.fragment.empty()) {
    boost::system::error_code ec;
    json::value fragment = json::parse(group.fragment, ec);
    if (ec) return Invalid(group, ec.message());
    if (!fragment.is_object()) return Invalid(group, "expected a JSON object");
    if (const json::value* p = fragment.as_object().if_contains("paths")) {
      if (!p->is_object()) return Invalid(group, "paths is not an object");
      fragment_paths = p->as_object();
    }
    if (const json::value* s = fragment.as_object().if_contains("schemas")) {
      if (!s->is_object()) return Invalid(group, "schemas is not an object");
      for (const auto& [name, schema] : s->as_object()) {
        if (schemas.contains(name)) {
          return Invalid(group, "schema " + std::string(name) + " is defined twice");
        }
        schemas[name] = schema;
      }
    }
  }
  for (const OpenApiRoute& route : group.routes) {
    std::vector<std::string> names;
    std::string path = group.prefix + DocumentPath(route.pattern, names);
    std::string method = Lower(route.method);
    json::object op;
    if (const json::value* p = fragment_paths.if_contains(route.pattern)) {
      const json::value* o = p->is_object() ? p->as_object().if_contains(method) : nullptr;
      if (o && !o->is_object()) return Invalid(group, method + " " + route.pattern);
      if (o) op = o->as_object();
    }
    auto parameters = Parameters(group, op, names);
    if (!parameters) return Fail(parameters.error());
    op["operationId"] = OperationId(method, path);
    op["tags"] = json::array{json::value(group.tag)};
    if (json::value security = Security(route.access); token && !security.is_null()) {
      op["security"] = std::move(security);
    }
    if (parameters->empty()) {
      op.erase("parameters");
    } else {
      op["parameters"] = std::move(*parameters);
    }
    json::object responses;
    if (const json::value* r = op.if_contains("responses"); r && r->is_object()) {
      responses = r->as_object();
    }
    for (auto& [status, response] : responses) {
      json::object* o = response.if_object();
      bool error = !status.empty() && (status[0] == '4' || status[0] == '5');
      if (error && o && !o->contains("content") && !o->contains("$ref")) {
        (*o)["content"] = EnvelopeContent();
      }
    }
    if (!token) responses.erase("401");  // nothing asks for a token
    if (token && route.access == Access::kToken && !responses.contains("401")) {
      json::object unauthorized =
          ErrorResponse("The bearer token is missing or wrong (code UNAUTHORIZED)");
      unauthorized["headers"] = {
          {"WWW-Authenticate", {{"schema", {{"type", "string"}}}, {"description", "Bearer"}}}};
      responses["401"] = std::move(unauthorized);
    }
    if (token && route.access != Access::kPublic && !responses.contains("403")) {
      responses["403"] = ErrorResponse(
          "A scoped token outside its services, names or read-only limit (code FORBIDDEN)");
    }
    if (!responses.contains("default")) {
      responses["default"] = ErrorResponse("Any other error, in the error envelope");
    }
    op["responses"] = std::move(responses);
    json::value& item = paths[path];
    if (!item.is_object()) item = json::object{};
    item.as_object()[method] = std::move(op);
  }
  return {};
}

}  // namespace

Result<std::string> BuildOpenApi(const std::vector<OpenApiGroup>& groups, bool token,
                                 std::string_view version) {
  json::object schemas{
      {"Error",
       {{"type", "object"},
        {"description",
         "The envelope of every error. Some codes add fields (sqlstate, statement_index, "
         "line...)."},
        {"required", json::array{"error", "code", "status"}},
        {"properties",
         {{"error", {{"type", "string"}, {"description", "What was wrong and what was expected"}}},
          {"code", {{"type", "string"}, {"examples", json::array{"BAD_REQUEST", "NOT_FOUND"}}}},
          {"status", {{"type", "integer"}, {"description", "The HTTP status, repeated"}}}}}}}};
  json::object paths;
  for (const OpenApiGroup& group : groups) {
    if (auto r = AddGroup(group, token, paths, schemas); !r) return Fail(r.error());
  }
  json::object components{{"schemas", std::move(schemas)}};
  json::array security;
  if (token) {
    components["securitySchemes"] = {{"bearer",
                                      {{"type", "http"},
                                       {"scheme", "bearer"},
                                       {"description",
                                        "The token of --auth-token, SIDECAR_TOKEN or AUTH_TOKEN, "
                                        "or a scoped token of --config"}}}};
    security.push_back(json::object{{"bearer", json::array{}}});
  }
  json::object doc{
      {"openapi", "3.1.0"},
      {"info",
       {{"title", "mikcar"},
        {"version", version},
        {"description",
         "The services this mikcar mounts, over plain HTTP. Every error is the JSON envelope "
         "`Error`."}}},
      {"security", std::move(security)},
      {"paths", std::move(paths)},
      {"components", std::move(components)}};
  return json::serialize(doc);
}

}  // namespace mikcar::http
