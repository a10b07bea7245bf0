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

ScopedToken Scoped(std::string name, std::string token, std::vector<std::string> services,
                   std::vector<std::string> prefixes = {}, bool read_only = false) {
  return {
      std::move(token), "", {std::move(name), std::move(services), std::move(prefixes), read_only}};
}

TEST(TokenAuthTest, EachTokenGetsItsScopeAndTheFullTokenNone) {
  auto auth = TokenAuth::Create(
      kToken, {Scoped("a", "token-a", {"kv"}, {"a/"}), Scoped("b", "token-b", {"sql"}, {}, true)});
  ASSERT_TRUE(auth.has_value()) << auth.error().message;
  EXPECT_TRUE(auth->enabled());
  auto full = auth->Check(std::string("Bearer ") + kToken);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(*full, nullptr);
  auto a = auth->Check("Bearer token-a");
  ASSERT_TRUE(a.has_value() && *a != nullptr);
  EXPECT_EQ((*a)->name, "a");
  EXPECT_EQ((*a)->prefixes, std::vector<std::string>{"a/"});
  auto b = auth->Check("Bearer token-b");
  ASSERT_TRUE(b.has_value() && *b != nullptr);
  EXPECT_EQ((*b)->name, "b");
  EXPECT_TRUE((*b)->read_only);
  EXPECT_FALSE(auth->Check("Bearer token-c").has_value());
}

TEST(TokenAuthTest, ScopedTokensAloneTurnAuthenticationOn) {
  auto auth = TokenAuth::Create("", {Scoped("a", "token-a", {"kv"})});
  ASSERT_TRUE(auth.has_value());
  EXPECT_TRUE(auth->enabled());
  EXPECT_FALSE(auth->Check("").has_value());
  EXPECT_FALSE(auth->Check("Bearer other").has_value());
  EXPECT_TRUE(auth->Check("Bearer token-a").has_value());
}

TEST(TokenAuthTest, TokenMayBeGivenAsItsSha256) {
  ScopedToken hashed{"",
                     "1C8BFE8F801D79745C4631D09FFF36C82AA37FC4CCE4FC946683D7B336B63032",
                     {"h", {"kv"}, {}, false}};  // sha256("letmein"), upper case
  auto auth = TokenAuth::Create("", {hashed});
  ASSERT_TRUE(auth.has_value()) << auth.error().message;
  auto scope = auth->Check("Bearer letmein");
  ASSERT_TRUE(scope.has_value());
  EXPECT_EQ((*scope)->name, "h");
}

TEST(TokenAuthTest, MalformedScopedTokensAreRefusedByName) {
  struct Case {
    ScopedToken token;
    const char* message;
  };
  std::vector<Case> cases{
      {{"", "", {"none", {"kv"}, {}, false}}, "exactly one of token and token_sha256"},
      {{"t", "ab", {"both", {"kv"}, {}, false}}, "exactly one of token and token_sha256"},
      {{"", "abc", {"short", {"kv"}, {}, false}}, "64 hex digits"},
      {{"", std::string(64, 'g'), {"nothex", {"kv"}, {}, false}}, "64 hex digits"},
      {Scoped("noservice", "t", {}), "at least one service"},
      {Scoped("emptyprefix", "t", {"kv"}, {""}), "non-empty prefixes"},
      {Scoped("sqlprefix", "t", {"kv", "sql"}, {"a/"}), "prefixes cannot confine SQL"},
      {Scoped("same", kToken, {"kv"}), "the same as the full-access token"},
  };
  for (const Case& c : cases) {
    auto auth = TokenAuth::Create(kToken, {c.token});
    ASSERT_FALSE(auth.has_value()) << c.token.scope.name;
    EXPECT_EQ(auth.error().code, ErrorCode::kBadRequest);
    EXPECT_THAT(auth.error().message, HasSubstr("token '" + c.token.scope.name + "'"));
    EXPECT_THAT(auth.error().message, HasSubstr(c.message));
    EXPECT_THAT(auth.error().message, ::testing::Not(HasSubstr(kToken)));
  }
  auto twice = TokenAuth::Create("", {Scoped("one", "t", {"kv"}), Scoped("two", "t", {"kv"})});
  ASSERT_FALSE(twice.has_value());
  EXPECT_THAT(twice.error().message,
              HasSubstr("token 'two': the token is the same as token 'one'"));
  auto unnamed = TokenAuth::Create("", {Scoped("", "t", {})});
  ASSERT_FALSE(unnamed.has_value());
  EXPECT_THAT(unnamed.error().message, HasSubstr("token 'tokens[0]'"));
}

TEST(RequestPermitTest, NamesMustStartWithAPrefixOfTheScope) {
  Request request;
  EXPECT_TRUE(request.Permit("anything").has_value());  // no scope: full access
  TokenScope any{"any", {"kv"}, {}, false};
  request.scope = &any;
  EXPECT_TRUE(request.Permit("anything").has_value());
  EXPECT_TRUE(request.Permit("").has_value());
  TokenScope scoped{"tenant", {"kv"}, {"a/", "b:"}, false};
  request.scope = &scoped;
  EXPECT_TRUE(request.Permit("a/x").has_value());
  EXPECT_TRUE(request.Permit("a/").has_value());
  EXPECT_TRUE(request.Permit("b:1").has_value());
  for (std::string_view name : {"a", "b/x", "x/a/", ""}) {
    auto denied = request.Permit(name);
    ASSERT_FALSE(denied.has_value()) << name;
    EXPECT_EQ(denied.error().code, ErrorCode::kForbidden);
    EXPECT_THAT(denied.error().message, HasSubstr("token 'tenant' may only use names starting "
                                                  "with 'a/', 'b:'"));
  }
  EXPECT_THAT(request.Permit("").error().message, HasSubstr("got every name"));
  EXPECT_FALSE(request.read_only());
  scoped.read_only = true;
  EXPECT_TRUE(request.read_only());
}

}  // namespace
}  // namespace mikcar::http
