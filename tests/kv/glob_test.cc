#include "kv/glob.h"

#include <gtest/gtest.h>

#include <string>

#include "kv/kv_rules.h"

namespace mikcar::kv {
namespace {

TEST(GlobTest, RedisMetacharacters) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("user:*", "user:1"));
  EXPECT_FALSE(GlobMatch("user:*", "xuser:1"));  // anchored at the start
  EXPECT_FALSE(GlobMatch("user:?", "user:12"));  // and at the end
  EXPECT_TRUE(GlobMatch("h?llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[ae]llo", "hillo"));
  EXPECT_TRUE(GlobMatch("h[^e]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[a-c]llo", "hbllo"));
  EXPECT_TRUE(GlobMatch("h[c-a]llo", "hbllo"));  // reversed ranges, as Redis
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
  EXPECT_TRUE(GlobMatch("a\\?b", "a?b"));
  EXPECT_TRUE(GlobMatch("[\\]]", "]"));
}

// Classes follow Redis's stringmatchlen, compared with `redis-cli KEYS` on one-byte keys.
TEST(GlobTest, ClassesParseAsRedisDoes) {
  EXPECT_FALSE(GlobMatch("[]]", "]"));  // `[]` is an empty class, then a literal `]`
  EXPECT_FALSE(GlobMatch("[]", "]"));
  EXPECT_FALSE(GlobMatch("[]a]", "a"));
  EXPECT_TRUE(GlobMatch("[^]", "]"));  // an empty negated class takes any byte
  EXPECT_TRUE(GlobMatch("[^]", "a"));
  EXPECT_TRUE(GlobMatch("[a-]]", "]"));  // the range a..] (reversed), closed by the last `]`
  EXPECT_TRUE(GlobMatch("[a-]]", "_"));
  EXPECT_FALSE(GlobMatch("[a-]]", "b"));
  EXPECT_TRUE(GlobMatch("[\\a-z]", "-"));  // an escaped byte does not start a range
  EXPECT_FALSE(GlobMatch("[\\a-z]", "m"));
  EXPECT_TRUE(GlobMatch("[a-", "-"));  // unterminated: the class runs to the end
  EXPECT_FALSE(GlobMatch("[", "["));
}

TEST(GlobTest, HostilePatternsStayPolynomial) {
  std::string text(5000, 'a');
  std::string pattern;
  for (int i = 0; i < 50; ++i) pattern += "*a";
  pattern += "b";
  EXPECT_FALSE(GlobMatch(pattern, text));  // would never finish with naive backtracking
}

TEST(GlobTest, WorkCountsThePatternBytesCompared) {
  size_t work = 0;
  EXPECT_TRUE(GlobMatch("user:*", "user:1", &work));
  EXPECT_LE(work, 20u);  // a plain pattern costs about the key's length
  work = 0;
  // A star followed by 500 literals against 1,000 'a's retries the literals at every offset.
  EXPECT_FALSE(GlobMatch("g*" + std::string(500, 'a') + "b", "g" + std::string(1000, 'a'), &work));
  EXPECT_GT(work, 250'000u);
  EXPECT_LT(work, 1'000'000u);
  size_t before = work;
  EXPECT_TRUE(GlobMatch("[abc]", "b", &work));  // a class costs its length
  EXPECT_EQ(work - before, 6u);
}

TEST(GlobTest, LiteralPrefixStopsAtTheFirstWildcard) {
  EXPECT_EQ(GlobLiteralPrefix("user:*"), "user:");
  EXPECT_EQ(GlobLiteralPrefix("a\\*b*"), "a*b");
  EXPECT_EQ(GlobLiteralPrefix("?x"), "");
  EXPECT_EQ(GlobLiteralPrefix("ab[c]"), "ab");
  EXPECT_EQ(GlobLiteralPrefix("plain"), "plain");
}

TEST(KvRulesTest, RedisIntegerRules) {
  EXPECT_EQ(*AddToInteger(std::nullopt, 5), 5);
  EXPECT_EQ(*AddToInteger("-7", 2), -5);
  EXPECT_EQ(*AddToInteger("9223372036854775806", 1), INT64_MAX);
  for (const char* bad :
       {"", " 7", "7 ", "+7", "007", "-0", "7.0", "abc", "-", "99999999999999999999"}) {
    auto r = AddToInteger(std::string_view(bad), 1);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kNotAnInteger) << bad;
  }
  auto over = AddToInteger("9223372036854775807", 1);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kOverflow);
  auto under = AddToInteger("-9223372036854775808", -1);
  ASSERT_FALSE(under);
  EXPECT_EQ(under.error().code, ErrorCode::kOverflow);
}

TEST(KvRulesTest, CursorsRoundTripAnyBytes) {
  std::string key("a\0b\xff/%", 6);
  auto back = DecodeCursor(EncodeCursor(key));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, key);
  EXPECT_FALSE(DecodeCursor("abc"));
  EXPECT_FALSE(DecodeCursor("zz"));
}

}  // namespace
}  // namespace mikcar::kv
