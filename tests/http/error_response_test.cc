#include "http/error_response.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <iterator>
#include <set>
#include <string>

namespace mikcar::http {
namespace {

using ::testing::Contains;
using ::testing::Not;
using ::testing::Pair;

struct CodeCase {
  ErrorCode code;
  int status;
  const char* name;
};

// SPEC §2.2 and §3.3.
constexpr CodeCase kCodes[] = {
    {ErrorCode::kBadRequest, 400, "BAD_REQUEST"},
    {ErrorCode::kUnauthorized, 401, "UNAUTHORIZED"},
    {ErrorCode::kForbidden, 403, "FORBIDDEN"},
    {ErrorCode::kNotFound, 404, "NOT_FOUND"},
    {ErrorCode::kMethodNotAllowed, 405, "METHOD_NOT_ALLOWED"},
    {ErrorCode::kTimeout, 408, "TIMEOUT"},
    {ErrorCode::kConflict, 409, "CONFLICT"},
    {ErrorCode::kPreconditionFailed, 412, "PRECONDITION_FAILED"},
    {ErrorCode::kPayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"},
    {ErrorCode::kUnsupportedMediaType, 415, "UNSUPPORTED_MEDIA_TYPE"},
    {ErrorCode::kRangeNotSatisfiable, 416, "RANGE_NOT_SATISFIABLE"},
    {ErrorCode::kUnprocessable, 422, "UNPROCESSABLE"},
    {ErrorCode::kRateLimited, 429, "RATE_LIMITED"},
    {ErrorCode::kInternal, 500, "INTERNAL_ERROR"},
    {ErrorCode::kBackend, 502, "BACKEND_ERROR"},
    {ErrorCode::kUnavailable, 503, "UNAVAILABLE"},
    {ErrorCode::kBackendTimeout, 504, "BACKEND_TIMEOUT"},
    {ErrorCode::kNotAnInteger, 409, "NOT_AN_INTEGER"},
    {ErrorCode::kOverflow, 409, "OVERFLOW"},
    {ErrorCode::kBadDigest, 400, "BAD_DIGEST"},
    {ErrorCode::kSqlError, 400, "SQL_ERROR"},
    {ErrorCode::kSqlConflict, 409, "SQL_ERROR"},
    {ErrorCode::kSqlUnavailable, 503, "SQL_ERROR"},
    {ErrorCode::kSqlTimeout, 504, "SQL_ERROR"},
    {ErrorCode::kScriptError, 400, "SCRIPT_ERROR"},
    {ErrorCode::kScriptTimeout, 408, "SCRIPT_TIMEOUT"},
    {ErrorCode::kScriptMemory, 413, "SCRIPT_MEMORY"},
};

// Parses the body as JSON, failing the test if it is not an object.
boost::json::object ParseEnvelope(const Response& response) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(response.body, ec);
  EXPECT_FALSE(ec) << "invalid JSON (" << ec.message() << "): " << response.body;
  if (ec || !value.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << response.body;
    return {};
  }
  return value.as_object();
}

TEST(HttpStatusTest, EveryCodeHasItsStatus) {
  for (const CodeCase& c : kCodes) {
    EXPECT_EQ(HttpStatus(c.code), c.status) << c.name;
    EXPECT_EQ(ErrorCodeName(c.code), c.name);
  }
}

TEST(HttpStatusTest, TableCoversTheWholeEnum) {
  // The enum is closed and dense from kBadRequest to kSqlTimeout; a code added after kSqlTimeout
  // must be added to kCodes (and to this bound).
  std::set<int> covered;
  for (const CodeCase& c : kCodes) covered.insert(static_cast<int>(c.code));
  for (int i = 0; i <= static_cast<int>(ErrorCode::kSqlTimeout); ++i) {
    EXPECT_TRUE(covered.contains(i))
        << "ErrorCode " << i << " (" << ErrorCodeName(static_cast<ErrorCode>(i))
        << ") has no expected status";
  }
  // Distinct codes have distinct wire names, except the SQL codes: one name, status by class.
  std::set<std::string_view> names;
  for (const CodeCase& c : kCodes) names.insert(ErrorCodeName(c.code));
  EXPECT_EQ(names.size(), std::size(kCodes) - 3);
}

TEST(ErrorResponseTest, EnvelopeShapeForEveryCode) {
  for (const CodeCase& c : kCodes) {
    Response response = ErrorResponse(Error{c.code, "something went wrong", {}});
    EXPECT_EQ(response.status, c.status) << c.name;
    EXPECT_EQ(response.content_type, "application/json") << c.name;
    boost::json::object body = ParseEnvelope(response);
    EXPECT_EQ(body.size(), 3u) << response.body;
    ASSERT_TRUE(body.contains("error") && body.at("error").is_string()) << response.body;
    ASSERT_TRUE(body.contains("code") && body.at("code").is_string()) << response.body;
    ASSERT_TRUE(body.contains("status") && body.at("status").is_int64()) << response.body;
    EXPECT_EQ(body.at("error").as_string(), "something went wrong");
    EXPECT_EQ(body.at("code").as_string(), c.name);
    EXPECT_EQ(body.at("status").as_int64(), c.status);
  }
}

TEST(ErrorResponseTest, ExtraFieldsAreMerged) {
  Error error{ErrorCode::kBadRequest, "duplicate key value", {}};
  error.fields.emplace_back("sqlstate", "\"23505\"");
  error.fields.emplace_back("statement_index", "2");
  error.fields.emplace_back("detail", R"({"constraint":"users_pkey","columns":["id"]})");
  Response response = ErrorResponse(error);
  boost::json::object body = ParseEnvelope(response);
  EXPECT_EQ(body.size(), 6u) << response.body;
  EXPECT_EQ(body.at("code").as_string(), "BAD_REQUEST");
  EXPECT_EQ(body.at("status").as_int64(), 400);
  EXPECT_EQ(body.at("sqlstate").as_string(), "23505");
  EXPECT_EQ(body.at("statement_index").as_int64(), 2);
  EXPECT_EQ(body.at("detail").at("constraint").as_string(), "users_pkey");
}

TEST(ErrorResponseTest, FieldNamesAreEscaped) {
  Error error{ErrorCode::kInternal, "x", {}};
  error.fields.emplace_back("we\"ird", "true");
  boost::json::object body = ParseEnvelope(ErrorResponse(error));
  ASSERT_TRUE(body.contains("we\"ird"));
  EXPECT_TRUE(body.at("we\"ird").as_bool());
}

TEST(ErrorResponseTest, UnauthorizedCarriesWwwAuthenticateBearer) {
  Response response = ErrorResponse(Error{ErrorCode::kUnauthorized, "invalid bearer token", {}});
  EXPECT_EQ(response.status, 401);
  EXPECT_THAT(response.headers, Contains(Pair("WWW-Authenticate", "Bearer")));
}

TEST(ErrorResponseTest, OnlyUnauthorizedCarriesWwwAuthenticate) {
  for (const CodeCase& c : kCodes) {
    if (c.code == ErrorCode::kUnauthorized) continue;
    Response response = ErrorResponse(Error{c.code, "m", {}});
    EXPECT_THAT(response.headers, Not(Contains(Pair("WWW-Authenticate", ::testing::_)))) << c.name;
  }
}

TEST(ErrorResponseTest, MessagesRoundTripExactlyWhenValidUtf8) {
  for (std::string message : {
           std::string(R"(expected JSON body {"keys": [string]}; got: missing field keys)"),
           std::string("back\\slash and /slash"),
           std::string("line one\nline two\r\n\ttabbed"),
           std::string("control \x01\x02\x1f and DEL \x7f"),
           std::string("nul \0 inside", 12),
           std::string("unicode: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
           std::string("</script><!-- \u2028 \u2029"),
           std::string(""),
       }) {
    Response response = ErrorResponse(Error{ErrorCode::kBadRequest, message, {}});
    boost::json::object body = ParseEnvelope(response);
    ASSERT_TRUE(body.contains("error")) << response.body;
    EXPECT_EQ(std::string(body.at("error").as_string()), message) << response.body;
    EXPECT_EQ(body.at("code").as_string(), "BAD_REQUEST");
  }
}

TEST(ErrorResponseTest, InvalidUtf8MessageStillProducesValidJson) {
  for (std::string message : {
           std::string("key '\xff\xfe' not found"),
           std::string("truncated \xe2\x82"),
           std::string("overlong \xc0\xaf"),
           std::string("surrogate \xed\xa0\x80"),
           std::string("lone continuation \x80 and \"quote\" and \x01"),
       }) {
    Response response = ErrorResponse(Error{ErrorCode::kNotFound, message, {}});
    boost::json::object body = ParseEnvelope(response);
    ASSERT_TRUE(body.contains("error")) << response.body;
    EXPECT_EQ(body.at("code").as_string(), "NOT_FOUND");
    EXPECT_EQ(body.at("status").as_int64(), 404);
    // The readable ASCII prefix of the message survives.
    std::string error(body.at("error").as_string());
    std::string prefix = message.substr(0, message.find_first_of("'\xe2\xc0\xed\x80"));
    EXPECT_EQ(error.substr(0, prefix.size()), prefix) << response.body;
  }
}

}  // namespace
}  // namespace mikcar::http
