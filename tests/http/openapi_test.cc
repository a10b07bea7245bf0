#include "http/openapi.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace mikcar::http {
namespace {

namespace json = boost::json;

constexpr std::string_view kFragment = R"json({
  "paths": {
    "/get/{key}": {
      "get": {
        "summary": "Read a value",
        "parameters": [
          {"name": "key", "in": "path", "description": "The key"},
          {"name": "fresh", "in": "query", "schema": {"type": "boolean"}}
        ],
        "responses": {
          "200": {"description": "The value", "content": {"text/plain": {"schema": {"$ref": "#/components/schemas/KvValue"}}}},
          "404": {"description": "No such key (code NOT_FOUND)"}
        }
      }
    },
    "/gone": {"post": {"summary": "Not registered"}}
  },
  "schemas": {"KvValue": {"type": "string"}}
})json";

json::object Build(std::vector<OpenApiGroup> groups) {
  auto doc = BuildOpenApi(groups, true, "1.2.3");
  EXPECT_TRUE(doc) << doc.error().message;
  return doc ? json::parse(*doc).as_object() : json::object{};
}

std::string Error(std::vector<OpenApiGroup> groups) {
  auto doc = BuildOpenApi(groups, true, "1");
  EXPECT_FALSE(doc);
  return doc ? "" : doc.error().message;
}

const json::value& At(const json::object& doc, std::initializer_list<std::string_view> path) {
  const json::value* v = nullptr;
  for (std::string_view key : path) {
    const json::object& o = v ? v->as_object() : doc;
    v = o.if_contains(key);
    if (!v) throw std::out_of_range(std::string(key));
  }
  return *v;
}

TEST(OpenApi, DocumentedRouteKeepsItsTextAndGetsWhatTheTableKnows) {
  auto doc = Build({{"kv", "/kv", kFragment, {{"GET", "/get/{key}", Access::kToken}}}});
  EXPECT_EQ(At(doc, {"openapi"}), "3.1.0");
  EXPECT_EQ(At(doc, {"info", "version"}), "1.2.3");
  const json::object& op = At(doc, {"paths", "/kv/get/{key}", "get"}).as_object();
  EXPECT_EQ(op.at("summary"), "Read a value");
  EXPECT_EQ(op.at("operationId"), "get_kv_get_key");
  EXPECT_EQ(json::serialize(op.at("tags")), R"(["kv"])");
  EXPECT_FALSE(op.contains("security"));  // the document's default: the token
  // The path parameter first, merged with its description; then the query parameter.
  EXPECT_EQ(
      json::serialize(op.at("parameters")),
      R"([{"name":"key","in":"path","required":true,"schema":{"type":"string"},)"
      R"("description":"The key"},{"name":"fresh","in":"query","schema":{"type":"boolean"}}])");
  const json::object& responses = op.at("responses").as_object();
  EXPECT_EQ(At(responses, {"404", "content", "application/json", "schema", "$ref"}),
            "#/components/schemas/Error");
  EXPECT_FALSE(
      responses.at("200").as_object().at("content").as_object().contains("application/json"));
  EXPECT_EQ(At(responses, {"401", "headers", "WWW-Authenticate", "description"}), "Bearer");
  EXPECT_TRUE(responses.contains("403"));  // a scoped token may be refused
  EXPECT_TRUE(responses.contains("default"));
  EXPECT_TRUE(At(doc, {"components", "schemas"}).as_object().contains("KvValue"));
  EXPECT_TRUE(At(doc, {"components", "schemas"}).as_object().contains("Error"));
}

TEST(OpenApi, UnregisteredOperationsAreLeftOutAndUndocumentedRoutesListed) {
  auto doc = Build({{"kv", "/kv", kFragment, {{"DELETE", "/del/{*rest}", Access::kPublic}}}});
  const json::object& paths = At(doc, {"paths"}).as_object();
  EXPECT_FALSE(paths.contains("/kv/gone"));
  EXPECT_FALSE(paths.contains("/kv/get/{key}"));
  const json::object& op = At(paths, {"/kv/del/{rest}", "delete"}).as_object();
  EXPECT_FALSE(op.contains("summary"));
  EXPECT_EQ(op.at("operationId"), "delete_kv_del_rest");
  EXPECT_EQ(json::serialize(op.at("security")), "[]");
  EXPECT_EQ(At(op, {"parameters"}).as_array().at(0).at("name"), "rest");
  EXPECT_FALSE(op.at("responses").as_object().contains("401"));  // public
  EXPECT_FALSE(op.at("responses").as_object().contains("403"));
}

TEST(OpenApi, OptionalAccessAllowsAnonymousCallsAndAddsNo401) {
  auto doc = Build({{"storage", "", "", {{"GET", "/object/{*path}", Access::kOptional}}}});
  const json::object& op = At(doc, {"paths", "/object/{path}", "get"}).as_object();
  EXPECT_EQ(json::serialize(op.at("security")), R"([{},{"bearer":[]}])");
  EXPECT_FALSE(op.at("responses").as_object().contains("401"));
}

TEST(OpenApi, OnlyWholeSegmentsAreParametersAsInTheRouter) {
  auto doc = Build({{"x",
                     "/x",
                     "",
                     {{"GET", "/file.{ext}", Access::kToken},
                      {"GET", "/a{b", Access::kToken},
                      {"GET", "/", Access::kToken},
                      {"GET", "/t/{id}/", Access::kToken}}}});
  const json::object& paths = At(doc, {"paths"}).as_object();
  EXPECT_FALSE(At(paths, {"/x/file.{ext}", "get"}).as_object().contains("parameters"));
  EXPECT_TRUE(paths.contains("/x/a{b"));
  EXPECT_TRUE(paths.contains("/x/"));
  EXPECT_EQ(At(paths, {"/x/t/{id}/", "get", "parameters"}).as_array().size(), 1u);
}

TEST(OpenApi, WithoutATokenNothingAsksForOne) {
  auto built = BuildOpenApi(
      {{"kv",
        "/kv",
        kFragment,
        {{"GET", "/get/{key}", Access::kToken}, {"GET", "/o/{*p}", Access::kOptional}}}},
      false, "1");
  ASSERT_TRUE(built);
  json::object doc = json::parse(*built).as_object();
  EXPECT_EQ(json::serialize(doc.at("security")), "[]");
  EXPECT_FALSE(doc.at("components").as_object().contains("securitySchemes"));
  const json::object& get = At(doc, {"paths", "/kv/get/{key}", "get"}).as_object();
  EXPECT_FALSE(get.contains("security"));
  EXPECT_FALSE(get.at("responses").as_object().contains("401"));
  EXPECT_FALSE(get.at("responses").as_object().contains("403"));
  EXPECT_FALSE(At(doc, {"paths", "/kv/o/{p}", "get"}).as_object().contains("security"));
}

TEST(OpenApi, MountedAtTheRootWithoutPrefix) {
  auto doc = Build({{"kv", "", kFragment, {{"GET", "/get/{key}", Access::kToken}}}});
  EXPECT_TRUE(At(doc, {"paths"}).as_object().contains("/get/{key}"));
}

TEST(OpenApi, BadFragmentsAreRefusedWithTheirName) {
  EXPECT_EQ(Error({{"kv", "", "{", {}}}).find("openapi: the fragment of 'kv' is invalid"), 0u);
  EXPECT_NE(Error({{"kv", "", "[]", {}}}).find("expected a JSON object"), std::string::npos);
  EXPECT_NE(Error({{"kv", "", R"({"paths": []})", {}}}).find("paths is not an object"),
            std::string::npos);
  EXPECT_NE(Error({{"a", "", R"({"schemas": {"X": {}}})", {}},
                   {"b", "", R"({"schemas": {"X": {}}})", {}}})
                .find("schema X is defined twice"),
            std::string::npos);
  constexpr std::string_view kWrongParameter =
      R"({"paths": {"/x": {"get": {"parameters": [{"name": "y", "in": "path"}]}}}})";
  EXPECT_NE(Error({{"a", "", kWrongParameter, {{"GET", "/x", Access::kToken}}}})
                .find(R"(path parameter "y" is not in its route's pattern)"),
            std::string::npos);
}

}  // namespace
}  // namespace mikcar::http
