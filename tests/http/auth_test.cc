#include "http/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace mikcar::http {
namespace {

using ::testing::HasSubstr;

constexpr const char* kToken = "s3cr3t-t0ken";

TEST(TokenAuthTest, EmptyTokenDisablesAuthentication) {
  TokenAuth auth("");
  EXPECT_FALSE(auth.enabled());
  EXPECT_TRUE(auth.Check("").has_value());
  EXPECT_TRUE(auth.Check("Bearer anything").has_value());
  EXPECT_TRUE(auth.Check("Basic dXNlcjpwYXNz").has_value());
}

TEST(TokenAuthTest, RightTokenPasses) {
  TokenAuth auth(kToken);
  EXPECT_TRUE(auth.enabled());
  auto result = auth.Check(std::string("Bearer ") + kToken);
  EXPECT_TRUE(result.has_value()) << result.error().message;
}

TEST(TokenAuthTest, SchemeIsCaseInsensitive) {
  TokenAuth auth(kToken);
  for (const char* scheme : {"bearer ", "BEARER ", "BeArEr "}) {
    auto result = auth.Check(std::string(scheme) + kToken);
    EXPECT_TRUE(result.has_value()) << scheme << ": " << result.error().message;
  }
}

TEST(TokenAuthTest, ExtraSpacesAroundTheTokenAreIgnored) {
  TokenAuth auth(kToken);
  EXPECT_TRUE(auth.Check(std::string("Bearer   ") + kToken + "  ").has_value());
}

TEST(TokenAuthTest, MissingHeaderIsUnauthorized) {
  TokenAuth auth(kToken);
  auto result = auth.Check("");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnauthorized);
  EXPECT_THAT(result.error().message, HasSubstr("missing Authorization header"));
  EXPECT_THAT(result.error().message, HasSubstr("Bearer <token>"));
}

TEST(TokenAuthTest, WrongSchemeIsUnauthorized) {
  TokenAuth auth(kToken);
  for (std::string header :
       {std::string("Basic dXNlcjpwYXNz"), std::string("Basic ") + kToken, std::string(kToken),
        std::string("Bearer") + kToken, std::string("Token ") + kToken}) {
    auto result = auth.Check(header);
    ASSERT_FALSE(result.has_value()) << header;
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthorized) << header;
    EXPECT_THAT(result.error().message, HasSubstr("scheme")) << header;
  }
}

TEST(TokenAuthTest, EmptyTokenIsUnauthorizedAndSaysSo) {
  TokenAuth auth(kToken);
  // HTTP parsers strip trailing whitespace from header values, so "Bearer " usually arrives as
  // "Bearer": both must be reported as an empty token, not as a wrong scheme.
  for (const char* header : {"Bearer ", "Bearer    ", "Bearer", "bearer"}) {
    auto result = auth.Check(header);
    ASSERT_FALSE(result.has_value()) << "'" << header << "'";
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthorized) << "'" << header << "'";
    EXPECT_THAT(result.error().message, HasSubstr("empty bearer token")) << "'" << header << "'";
  }
}

TEST(TokenAuthTest, WrongTokenIsUnauthorized) {
  TokenAuth auth(kToken);
  const std::string token = kToken;
  for (std::string presented :
       {std::string("wrong"), token + "x", token.substr(0, token.size() - 1),
        std::string("S3CR3T-T0KEN"), token + " " + token}) {
    auto result = auth.Check("Bearer " + presented);
    ASSERT_FALSE(result.has_value()) << presented;
    EXPECT_EQ(result.error().code, ErrorCode::kUnauthorized) << presented;
    EXPECT_EQ(result.error().message, "invalid bearer token") << presented;
  }
}

TEST(TokenAuthTest, ErrorsNeverEchoTheToken) {
  TokenAuth auth(kToken);
  for (std::string header : {std::string("Basic ") + kToken, std::string("Bearer x") + kToken}) {
    auto result = auth.Check(header);
    ASSERT_FALSE(result.has_value());
    EXPECT_THAT(result.error().message, ::testing::Not(HasSubstr(kToken)));
  }
}

}  // namespace
}  // namespace mikcar::http
