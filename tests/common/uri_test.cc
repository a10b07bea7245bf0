#include "mikcar/uri.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace mikcar {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

// --- PercentDecode ---

TEST(PercentDecodeTest, DecodesEscapesOfEitherCase) {
  auto out = PercentDecode("a%2Fb%2fc%41%7e");
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_EQ(*out, "a/b/cA~");
}

TEST(PercentDecodeTest, DecodesExactlyOnce) {
  auto out = PercentDecode("%252F");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "%2F");
}

TEST(PercentDecodeTest, PlusIsSpaceOnlyWhenAsked) {
  EXPECT_EQ(PercentDecode("a+b").value(), "a+b");
  EXPECT_EQ(PercentDecode("a+b", /*plus_is_space=*/true).value(), "a b");
  // An encoded '+' is always a plus.
  EXPECT_EQ(PercentDecode("a%2Bb", /*plus_is_space=*/true).value(), "a+b");
}

TEST(PercentDecodeTest, IsBinarySafe) {
  auto out = PercentDecode("%00%FF");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, std::string("\x00\xff", 2));
}

TEST(PercentDecodeTest, EscapeAtTheVeryEndIsDecoded) {
  EXPECT_EQ(PercentDecode("%41").value(), "A");
  EXPECT_EQ(PercentDecode("ab%41").value(), "abA");
}

TEST(PercentDecodeTest, MalformedEscapesAreBadRequest) {
  for (const char* in : {"%", "%4", "abc%", "abc%2", "%zz", "%4g", "%g4", "a%%41"}) {
    auto out = PercentDecode(in);
    ASSERT_FALSE(out.has_value()) << in << " decoded to " << *out;
    EXPECT_EQ(out.error().code, ErrorCode::kBadRequest) << in;
    EXPECT_THAT(out.error().message, HasSubstr("percent")) << in;
  }
}

// --- ParseUri ---

TEST(ParseUriTest, RedisWithPasswordDbAndPrefix) {
  auto uri = ParseUri("redis://:pw@host:6379/2?prefix=app:");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->scheme, "redis");
  EXPECT_EQ(uri->user, "");
  EXPECT_EQ(uri->password, "pw");
  EXPECT_EQ(uri->host, "host");
  EXPECT_EQ(uri->port, 6379);
  EXPECT_EQ(uri->path, "/2");
  EXPECT_EQ(uri->query_param("prefix"), "app:");
}

TEST(ParseUriTest, FileUrlHasEmptyHostAndAbsolutePath) {
  auto uri = ParseUri("file:///var/lib/kv");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->scheme, "file");
  EXPECT_EQ(uri->host, "");
  EXPECT_FALSE(uri->port.has_value());
  EXPECT_EQ(uri->path, "/var/lib/kv");
}

TEST(ParseUriTest, MemoryUrlIsEmpty) {
  auto uri = ParseUri("memory://");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->scheme, "memory");
  EXPECT_EQ(uri->host, "");
  EXPECT_EQ(uri->path, "");
  EXPECT_FALSE(uri->port.has_value());
  EXPECT_TRUE(uri->query.empty());
}

TEST(ParseUriTest, OpaqueUrlKeepsEverythingAfterTheFirstColon) {
  auto uri = ParseUri("sqlite::memory:");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->scheme, "sqlite");
  EXPECT_EQ(uri->path, ":memory:");
  EXPECT_EQ(uri->host, "");
}

TEST(ParseUriTest, SchemeIsLowerCased) {
  auto uri = ParseUri("PostgreSQL://db/app");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->scheme, "postgresql");
}

TEST(ParseUriTest, UserInfoIsPercentDecoded) {
  auto uri = ParseUri("postgres://app%20user:p%40ss%3Aw%2Frd@db.example.com:5432/app");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->user, "app user");
  EXPECT_EQ(uri->password, "p@ss:w/rd");
  EXPECT_EQ(uri->host, "db.example.com");
  EXPECT_EQ(uri->port, 5432);
  EXPECT_EQ(uri->path, "/app");
}

TEST(ParseUriTest, UnencodedAtInPasswordSplitsAtTheLastAt) {
  auto uri = ParseUri("postgres://u:p@ss@host/db");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->user, "u");
  EXPECT_EQ(uri->password, "p@ss");
  EXPECT_EQ(uri->host, "host");
}

TEST(ParseUriTest, UserWithoutPassword) {
  auto uri = ParseUri("amqp://guest@localhost/vhost");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->user, "guest");
  EXPECT_EQ(uri->password, "");
  EXPECT_EQ(uri->host, "localhost");
  EXPECT_EQ(uri->path, "/vhost");
}

TEST(ParseUriTest, Ipv6LiteralWithAndWithoutPort) {
  auto with_port = ParseUri("redis://[::1]:6380/0");
  ASSERT_TRUE(with_port.has_value()) << with_port.error().message;
  EXPECT_EQ(with_port->host, "::1");
  EXPECT_EQ(with_port->port, 6380);
  EXPECT_EQ(with_port->path, "/0");

  auto without_port = ParseUri("redis://[fe80::1]");
  ASSERT_TRUE(without_port.has_value()) << without_port.error().message;
  EXPECT_EQ(without_port->host, "fe80::1");
  EXPECT_FALSE(without_port->port.has_value());
}

TEST(ParseUriTest, QueryIsSplitAndDecodedWithPlusAsSpace) {
  auto uri = ParseUri("s3://bucket/prefix?region=us-east-1&name=a+b&slash=%2F&flag&&empty=");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  EXPECT_EQ(uri->host, "bucket");
  EXPECT_EQ(uri->path, "/prefix");
  EXPECT_THAT(uri->query, ElementsAre(Pair("region", "us-east-1"), Pair("name", "a b"),
                                      Pair("slash", "/"), Pair("flag", ""), Pair("empty", "")));
  EXPECT_EQ(uri->query_param("name"), "a b");
  EXPECT_EQ(uri->query_param("flag"), "");
  EXPECT_EQ(uri->query_param("missing"), std::nullopt);
}

TEST(ParseUriTest, PortBounds) {
  EXPECT_EQ(ParseUri("redis://h:1").value().port, 1);
  EXPECT_EQ(ParseUri("redis://h:65535").value().port, 65535);
  for (const char* url : {"redis://h:0", "redis://h:65536", "redis://h:99999999999",
                          "redis://h:63a9", "redis://h:-1", "redis://[::1]x"}) {
    auto uri = ParseUri(url);
    ASSERT_FALSE(uri.has_value()) << url;
    EXPECT_EQ(uri.error().code, ErrorCode::kBadRequest) << url;
  }
  EXPECT_THAT(ParseUri("redis://h:70000").error().message, HasSubstr("port"));
}

TEST(ParseUriTest, MalformedUrlsSayWhatWasExpected) {
  for (const char* url : {"", "localhost", ":6379", "re dis://host", "redis://[::1:6379",
                          "file:///a%zz", "redis://h/?a=%G0"}) {
    auto uri = ParseUri(url);
    ASSERT_FALSE(uri.has_value()) << "'" << url << "' parsed";
    EXPECT_EQ(uri.error().code, ErrorCode::kBadRequest) << url;
    EXPECT_THAT(uri.error().message, HasSubstr("malformed URL")) << url;
  }
  EXPECT_THAT(ParseUri("localhost").error().message, HasSubstr("scheme://"));
}

TEST(ParseUriTest, ErrorsNeverContainThePassword) {
  for (const char* url :
       {"postgres://user:hunter2secret@host:99999/db", "postgres://user:hunter2secret@host:port/db",
        "postgres://user:hunter2secret%zz@host/db", "postgres://user:hunter2secret@[::1/db"}) {
    auto uri = ParseUri(url);
    ASSERT_FALSE(uri.has_value()) << url;
    EXPECT_THAT(uri.error().message, Not(HasSubstr("hunter2secret"))) << url;
  }
}

// --- RedactUri ---

TEST(RedactUriTest, ReplacesThePassword) {
  EXPECT_EQ(RedactUri("postgres://app:s3cret@db:5432/app"), "postgres://app:REDACTED@db:5432/app");
  EXPECT_EQ(RedactUri("redis://:pw@host:6379/2?prefix=app:"),
            "redis://:REDACTED@host:6379/2?prefix=app:");
}

TEST(RedactUriTest, PasswordContainingAtIsFullyRedacted) {
  std::string out = RedactUri("postgres://u:p@ss@host/db");
  EXPECT_EQ(out, "postgres://u:REDACTED@host/db");
}

TEST(RedactUriTest, LeavesUrlsWithoutCredentialsAlone) {
  for (const char* url : {"memory://", "file:///var/lib/kv", "sqlite::memory:",
                          "redis://host:6379/0?prefix=app:", "amqp://guest@localhost/vhost",
                          "s3://bucket/prefix?region=us-east-1&endpoint=http://minio:9000"}) {
    EXPECT_EQ(RedactUri(url), url);
  }
}

TEST(RedactUriTest, RedactsCredentialQueryParameters) {
  EXPECT_EQ(RedactUri("s3://bucket?region=eu&access_key_id=AKIA1&secret_access_key=SK2"),
            "s3://bucket?region=eu&access_key_id=REDACTED&secret_access_key=REDACTED");
  EXPECT_EQ(RedactUri("vault://vault:8200/kv?token=hvs.abc&mount=secret"),
            "vault://vault:8200/kv?token=REDACTED&mount=secret");
  // Names are matched case-insensitively and after percent-decoding.
  EXPECT_EQ(RedactUri("azblob://acct/c?AccountKey=xyz&Pass%77ord=pw"),
            "azblob://acct/c?AccountKey=REDACTED&Pass%77ord=REDACTED");
  // Presigned-style signatures.
  EXPECT_EQ(RedactUri("https://h/o?X-Amz-Signature=deadbeef&sig=abc"),
            "https://h/o?X-Amz-Signature=REDACTED&sig=REDACTED");
}

TEST(RedactUriTest, NoSecretSurvivesInTypicalBackendUrls) {
  const char* kSecret = "Zq9sEcReT";
  for (std::string url : {
           std::string("postgres://app:") + kSecret + "@db/app?sslmode=require",
           std::string("rediss://default:") + kSecret + "@cache:6380/0",
           std::string("amqp://user:") + kSecret + "@mq:5672/%2F",
           std::string("s3://b?access_key_id=AK&secret_access_key=") + kSecret,
           std::string("smtp://mailer:") + kSecret + "@smtp:587?starttls=1",
           std::string("vault://vault:8200?token=") + kSecret,
           std::string("gcs://bucket?credentials=x&session_token=") + kSecret,
       }) {
    std::string out = RedactUri(url);
    EXPECT_THAT(out, Not(HasSubstr(kSecret))) << url;
    EXPECT_THAT(out, HasSubstr("REDACTED")) << url;
  }
}

}  // namespace
}  // namespace mikcar
