#include "http/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace mikcar::http {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

// The tests identify the matched route by its pattern; handlers are never called.
class RouterTest : public ::testing::Test {
 protected:
  void Add(std::string_view method, std::string_view pattern) {
    auto added = router_.Add(method, pattern, RouteEntry{"kv", std::string(pattern), {}});
    ASSERT_TRUE(added.has_value()) << method << " " << pattern << ": " << added.error().message;
  }

  // The matched pattern, or the failure's code name and (for 405) the Allow list.
  std::string MatchedPattern(std::string_view method, std::string_view path) {
    auto match = router_.Match(method, path, &allow_);
    if (!match) return "error " + std::string(ErrorCodeName(match.error().code));
    return match->route->pattern;
  }

  Router router_;
  std::string allow_;
};

TEST_F(RouterTest, MatchesLiteralRoutes) {
  Add("GET", "/health");
  Add("GET", "/health/ready");
  EXPECT_EQ(MatchedPattern("GET", "/health"), "/health");
  EXPECT_EQ(MatchedPattern("GET", "/health/ready"), "/health/ready");
}

TEST_F(RouterTest, CapturesOneSegmentParameter) {
  Add("GET", "/kv/get/{key}");
  auto match = router_.Match("GET", "/kv/get/cart:42", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/kv/get/{key}");
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "cart:42")));
}

TEST_F(RouterTest, CapturesSeveralParameters) {
  Add("GET", "/queue/{queue}/ack/{id}");
  auto match = router_.Match("GET", "/queue/jobs/ack/17", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("queue", "jobs"), Pair("id", "17")));
}

TEST_F(RouterTest, ParameterDoesNotSpanSegments) {
  Add("GET", "/kv/get/{key}");
  EXPECT_EQ(MatchedPattern("GET", "/kv/get/a/b"), "error NOT_FOUND");
}

TEST_F(RouterTest, LiteralSegmentWinsOverParameter) {
  Add("GET", "/kv/get/{key}");
  Add("POST", "/kv/get/batch");
  EXPECT_EQ(MatchedPattern("POST", "/kv/get/batch"), "/kv/get/batch");
  // The literal owns the path: GET of the key "batch" is not silently routed to {key}.
  EXPECT_EQ(MatchedPattern("GET", "/kv/get/batch"), "error METHOD_NOT_ALLOWED");
  EXPECT_EQ(allow_, "POST");
  // Other keys still reach the parameter, including ones that start with the literal.
  EXPECT_EQ(MatchedPattern("GET", "/kv/get/batches"), "/kv/get/{key}");
}

TEST_F(RouterTest, LiteralWinsRegardlessOfRegistrationOrder) {
  Add("POST", "/kv/set/batch");
  Add("POST", "/kv/set/{key}");
  EXPECT_EQ(MatchedPattern("POST", "/kv/set/batch"), "/kv/set/batch");
  EXPECT_EQ(MatchedPattern("POST", "/kv/set/other"), "/kv/set/{key}");
}

TEST_F(RouterTest, PercentEncodedLiteralReachesTheParameter) {
  Add("GET", "/kv/get/{key}");
  Add("POST", "/kv/get/batch");
  auto match = router_.Match("GET", "/kv/get/%62atch", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/kv/get/{key}");
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "batch")));
}

TEST_F(RouterTest, LiteralPrefixWithoutRouteFallsBackToParameter) {
  // "/kv/get/batch" exists only as a prefix of a longer route, so it does not own the path.
  Add("GET", "/kv/get/{key}");
  Add("GET", "/kv/get/batch/status");
  auto match = router_.Match("GET", "/kv/get/batch", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/kv/get/{key}");
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "batch")));
  EXPECT_EQ(MatchedPattern("GET", "/kv/get/batch/status"), "/kv/get/batch/status");
}

TEST_F(RouterTest, EncodedSlashStaysInsideOneSegment) {
  Add("GET", "/kv/get/{key}");
  auto match = router_.Match("GET", "/kv/get/a%2Fb%2fc", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "a/b/c")));
}

TEST_F(RouterTest, ParametersAreDecodedExactlyOnce) {
  Add("GET", "/kv/get/{key}");
  auto match = router_.Match("GET", "/kv/get/%252F", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "%2F")));

  // '+' in a path is a plus, not a space.
  match = router_.Match("GET", "/kv/get/a+b%20c", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "a+b c")));
}

TEST_F(RouterTest, RestCapturesTheRemainderWithSlashes) {
  Add("GET", "/storage/object/{*path}");
  auto match = router_.Match("GET", "/storage/object/photos/2024/cat%20one.jpg", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/storage/object/{*path}");
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "photos/2024/cat one.jpg")));

  match = router_.Match("GET", "/storage/object/a%2Fb/%252F", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "a/b/%2F")));

  // The trailing slash is part of the remainder.
  match = router_.Match("GET", "/storage/object/dir/", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "dir/")));
}

TEST_F(RouterTest, RestAfterParameter) {
  Add("PUT", "/storage/{bucket}/{*path}");
  auto match = router_.Match("PUT", "/storage/b1/x/y/z", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("bucket", "b1"), Pair("path", "x/y/z")));
}

TEST_F(RouterTest, ParameterWinsOverRest) {
  Add("GET", "/files/{*path}");
  Add("GET", "/files/{name}");
  EXPECT_EQ(MatchedPattern("GET", "/files/one"), "/files/{name}");
  EXPECT_EQ(MatchedPattern("GET", "/files/one/two"), "/files/{*path}");
}

TEST_F(RouterTest, RestIsTriedWhenDeeperLiteralsDoNotMatch) {
  Add("GET", "/files/{*path}");
  Add("GET", "/files/meta/{id}");
  EXPECT_EQ(MatchedPattern("GET", "/files/meta/7"), "/files/meta/{id}");
  auto match = router_.Match("GET", "/files/meta/7/extra", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/files/{*path}");
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "meta/7/extra")));
}

TEST_F(RouterTest, EmptyTrailingSegment) {
  Add("GET", "/health");
  Add("GET", "/kv/get/{key}");
  Add("GET", "/storage/object/{*path}");
  // Trailing slashes are not normalised.
  EXPECT_EQ(MatchedPattern("GET", "/health/"), "error NOT_FOUND");
  // An empty final segment is an empty parameter, left for the service to reject with a message
  // about the key or path (not a bare 404).
  auto match = router_.Match("GET", "/kv/get/", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "")));
  match = router_.Match("GET", "/storage/object/", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "")));
  // ...but the segment must exist.
  EXPECT_EQ(MatchedPattern("GET", "/kv/get"), "error NOT_FOUND");
}

TEST_F(RouterTest, UnknownPathIsNotFound) {
  Add("GET", "/kv/get/{key}");
  for (const char* path : {"/", "/kv", "/kv/", "/kv/put/x", "/KV/get/x", "/kv/get/x/y", "",
                           "kv/get/x", "/kv//get/x"}) {
    auto match = router_.Match("GET", path, &allow_);
    ASSERT_FALSE(match.has_value()) << "'" << path << "' matched";
    EXPECT_EQ(match.error().code, ErrorCode::kNotFound) << path;
  }
  EXPECT_THAT(router_.Match("GET", "/nope", &allow_).error().message, HasSubstr("/nope"));
}

TEST_F(RouterTest, WrongMethodIsMethodNotAllowedWithAllowList) {
  Add("GET", "/kv/get/{key}");
  Add("DELETE", "/kv/get/{key}");
  auto match = router_.Match("POST", "/kv/get/x", &allow_);
  ASSERT_FALSE(match.has_value());
  EXPECT_EQ(match.error().code, ErrorCode::kMethodNotAllowed);
  // GET implies HEAD.
  EXPECT_EQ(allow_, "DELETE, GET, HEAD");
  EXPECT_THAT(match.error().message, HasSubstr("POST"));
}

TEST_F(RouterTest, AllowListDoesNotRepeatExplicitHead) {
  Add("GET", "/thing");
  Add("HEAD", "/thing");
  ASSERT_FALSE(router_.Match("PUT", "/thing", &allow_).has_value());
  EXPECT_EQ(allow_, "GET, HEAD");
}

TEST_F(RouterTest, AllowListWithoutGetHasNoHead) {
  Add("POST", "/kv/set/{key}");
  auto match = router_.Match("HEAD", "/kv/set/x", &allow_);
  ASSERT_FALSE(match.has_value());
  EXPECT_EQ(match.error().code, ErrorCode::kMethodNotAllowed);
  EXPECT_EQ(allow_, "POST");
}

TEST_F(RouterTest, AllowListIsReplacedNotAppended) {
  Add("POST", "/a");
  Add("PUT", "/b");
  ASSERT_FALSE(router_.Match("GET", "/a", &allow_).has_value());
  ASSERT_FALSE(router_.Match("GET", "/b", &allow_).has_value());
  EXPECT_EQ(allow_, "PUT");
}

TEST_F(RouterTest, MethodNotAllowedWithoutAllowOut) {
  Add("POST", "/a");
  auto match = router_.Match("GET", "/a", nullptr);
  ASSERT_FALSE(match.has_value());
  EXPECT_EQ(match.error().code, ErrorCode::kMethodNotAllowed);
}

TEST_F(RouterTest, HeadFallsBackToGet) {
  Add("GET", "/kv/get/{key}");
  auto match = router_.Match("HEAD", "/kv/get/k", &allow_);
  ASSERT_TRUE(match.has_value()) << match.error().message;
  EXPECT_EQ(match->route->pattern, "/kv/get/{key}");
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "k")));
}

TEST_F(RouterTest, ExplicitHeadRouteWinsOverGet) {
  ASSERT_TRUE(router_.Add("GET", "/obj/{*path}", RouteEntry{"storage", "get", {}}).has_value());
  ASSERT_TRUE(router_.Add("HEAD", "/obj/{*path}", RouteEntry{"storage", "head", {}}).has_value());
  auto match = router_.Match("HEAD", "/obj/a", &allow_);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route->pattern, "head");
  match = router_.Match("GET", "/obj/a", &allow_);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route->pattern, "get");
}

TEST_F(RouterTest, MalformedEscapeInParameterIsBadRequest) {
  Add("GET", "/kv/get/{key}");
  Add("GET", "/storage/object/{*path}");
  for (const char* path : {"/kv/get/%zz", "/kv/get/abc%2", "/kv/get/%", "/kv/get/%G1",
                           "/storage/object/a/%2", "/storage/object/%x0/b"}) {
    auto match = router_.Match("GET", path, &allow_);
    ASSERT_FALSE(match.has_value()) << path << " matched";
    EXPECT_EQ(match.error().code, ErrorCode::kBadRequest) << path;
  }
  auto match = router_.Match("GET", "/kv/get/%zz", &allow_);
  EXPECT_THAT(match.error().message, HasSubstr("'key'"));
}

TEST_F(RouterTest, MatchedRouteCarriesItsEntry) {
  ASSERT_TRUE(
      router_.Add("GET", "/health", RouteEntry{"", "/health", {}, Access::kPublic}).has_value());
  auto match = router_.Match("GET", "/health", &allow_);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route->service, "");
  EXPECT_EQ(match->route->access, Access::kPublic);
  EXPECT_THAT(match->params, IsEmpty());
}

TEST_F(RouterTest, DuplicateRouteIsRejected) {
  Add("GET", "/kv/get/{key}");
  auto again = router_.Add("GET", "/kv/get/{key}", RouteEntry{"kv", "second", {}});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_THAT(again.error().message, HasSubstr("/kv/get/{key}"));
  // The first registration is kept.
  EXPECT_EQ(MatchedPattern("GET", "/kv/get/x"), "/kv/get/{key}");
  // Same pattern, other method: fine.
  Add("DELETE", "/kv/get/{key}");
}

TEST_F(RouterTest, ConflictingParameterNamesAreRejected) {
  Add("GET", "/kv/get/{key}");
  auto other = router_.Add("DELETE", "/kv/get/{name}", RouteEntry{"kv", "del", {}});
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code, ErrorCode::kConflict);
  // The GET handler still receives its parameter under its own name.
  auto match = router_.Match("GET", "/kv/get/x", &allow_);
  ASSERT_TRUE(match.has_value());
  EXPECT_THAT(match->params, ElementsAre(Pair("key", "x")));
}

TEST_F(RouterTest, ConflictingRestNamesAreRejected) {
  Add("GET", "/files/{*path}");
  auto other = router_.Add("PUT", "/files/{*other}", RouteEntry{"storage", "put", {}});
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code, ErrorCode::kConflict);
  auto match = router_.Match("GET", "/files/a/b", &allow_);
  ASSERT_TRUE(match.has_value());
  EXPECT_THAT(match->params, ElementsAre(Pair("path", "a/b")));
}

TEST_F(RouterTest, MalformedPatternsAreRejected) {
  for (const char* pattern : {"", "kv/get", "/files/{*path}/meta"}) {
    auto added = router_.Add("GET", pattern, RouteEntry{"kv", pattern, {}});
    ASSERT_FALSE(added.has_value()) << "'" << pattern << "' accepted";
    EXPECT_EQ(added.error().code, ErrorCode::kConflict) << pattern;
  }
}

}  // namespace
}  // namespace mikcar::http
