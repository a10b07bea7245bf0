#include "storage/object_rules.h"

#include <gtest/gtest.h>

#include "common/clock.h"
#include "storage/listing.h"

namespace mikcar::storage {
namespace {

TEST(ValidatePathTest, CompatMessages) {
  auto message = [](std::string_view path) {
    auto r = ValidatePath(path);
    return r ? std::string("ok") : r.error().message;
  };
  EXPECT_EQ(message(""), "Path cannot be empty");
  EXPECT_EQ(message("/etc/passwd"), "Absolute paths not allowed");
  EXPECT_EQ(message("\\windows"), "Absolute paths not allowed");
  EXPECT_EQ(message(std::string("a\0b", 3)), "Null bytes not allowed in path");
  EXPECT_EQ(message(".."), "Path traversal not allowed");
  EXPECT_EQ(message("a/../b"), "Path traversal not allowed");
  EXPECT_EQ(message("a/.."), "Path traversal not allowed");
  EXPECT_EQ(message("a\\..\\b"), "Path traversal not allowed");
  EXPECT_EQ(message("a/..b/c"), "ok");
  EXPECT_EQ(message("a/./b"), "ok");
  EXPECT_EQ(message("a//b/"), "ok");
  EXPECT_EQ(message(std::string(1024, 'x')), "ok");
  EXPECT_NE(message(std::string(1025, 'x')), "ok");
  EXPECT_NE(message("bad\xff"), "ok");
}

TEST(ParseRangeTest, Forms) {
  auto r = ParseRange("bytes=0-9");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->first, 0u);
  EXPECT_EQ(*r->last, 9u);
  r = ParseRange("bytes=5-");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r->first, 5u);
  EXPECT_FALSE(r->last);
  r = ParseRange("bytes=-3");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->first);
  EXPECT_EQ(r->suffix, 3u);
  // Ignored: malformed, other units, several ranges, reversed.
  for (const char* ignored : {"", "bytes=", "bytes=a-b", "items=0-1", "bytes=0-1,3-4", "bytes=5-2",
                              "bytes=-", "bytes=1"}) {
    EXPECT_FALSE(ParseRange(ignored)) << ignored;
  }
}

TEST(ResolveRangeTest, AgainstSize) {
  auto resolve = [](const char* header, uint64_t size) {
    return ResolveRange(*ParseRange(header), size);
  };
  EXPECT_EQ(resolve("bytes=0-9", 100)->length, 10u);
  EXPECT_EQ(resolve("bytes=90-200", 100)->length, 10u);  // clamped to the end
  EXPECT_EQ(resolve("bytes=-10", 100)->offset, 90u);
  EXPECT_EQ(resolve("bytes=-1000", 100)->length, 100u);
  EXPECT_FALSE(resolve("bytes=100-", 100));  // starts past the end
  EXPECT_FALSE(resolve("bytes=-0", 100));
  EXPECT_FALSE(resolve("bytes=0-", 0));  // nothing of an empty object is satisfiable
  EXPECT_FALSE(resolve("bytes=-5", 0));
}

TEST(EtagListTest, Matching) {
  EXPECT_TRUE(EtagListMatches("*", "\"a\""));
  EXPECT_TRUE(EtagListMatches("\"a\"", "\"a\""));
  EXPECT_TRUE(EtagListMatches("\"x\", \"a\"", "\"a\""));
  EXPECT_TRUE(EtagListMatches("W/\"a\"", "\"a\""));
  EXPECT_FALSE(EtagListMatches("\"b\"", "\"a\""));
  EXPECT_FALSE(EtagListMatches("a", "\"a\""));
}

TEST(DatesTest, RoundTrip) {
  auto t = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37
  EXPECT_EQ(HttpDate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), t);
  EXPECT_FALSE(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"));
  EXPECT_FALSE(ParseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT"));
  EXPECT_EQ(Rfc3339(t), "1994-11-06T08:49:37Z");
  EXPECT_EQ(Rfc3339(t + std::chrono::milliseconds(120)), "1994-11-06T08:49:37.120Z");
}

TEST(PutConditionsTest, IfMatchAndIfNoneMatch) {
  ObjectInfo current;
  current.etag = "\"v1\"";
  PutOptions create_only;
  create_only.if_none_match = "*";
  EXPECT_TRUE(CheckPutConditions(create_only, nullptr));
  EXPECT_FALSE(CheckPutConditions(create_only, &current));
  PutOptions cas;
  cas.if_match = "\"v1\"";
  EXPECT_TRUE(CheckPutConditions(cas, &current));
  EXPECT_FALSE(CheckPutConditions(cas, nullptr));
  cas.if_match = "\"v0\"";
  EXPECT_EQ(CheckPutConditions(cas, &current).error().code, ErrorCode::kPreconditionFailed);
}

std::vector<std::string> Feed(ListOptions options, const std::vector<std::string>& keys,
                              ListPage* out = nullptr) {
  ListingPage page(options);
  for (const auto& key : keys) {
    if (key < page.first_key() || page.SkipsAll(key)) continue;
    if (page.PastEnd(key)) break;
    ObjectInfo info;
    info.path = key;
    if (!page.Add(info)) break;
  }
  ListPage result = page.Finish();
  std::vector<std::string> seen;
  for (const auto& o : result.objects) seen.push_back(o.path);
  for (const auto& p : result.common_prefixes) seen.push_back("prefix:" + p);
  if (out) *out = result;
  return seen;
}

TEST(ListingPageTest, PrefixCursorAndLimit) {
  std::vector<std::string> keys = {"a", "a/1", "a/2", "a/x/1", "b", "users", "user/1", "user/2"};
  std::sort(keys.begin(), keys.end());
  ListOptions options;
  options.prefix = "user/";
  EXPECT_EQ(Feed(options, keys), (std::vector<std::string>{"user/1", "user/2"}));
  options = {};
  options.limit = 2;
  ListPage page;
  EXPECT_EQ(Feed(options, keys, &page), (std::vector<std::string>{"a", "a/1"}));
  ASSERT_TRUE(page.next);
  options.start_after = *page.next;
  EXPECT_EQ(Feed(options, keys, &page), (std::vector<std::string>{"a/2", "a/x/1"}));
  options.limit = 100;
  options.start_after = "user/2";
  EXPECT_EQ(Feed(options, keys, &page), (std::vector<std::string>{"users"}));
  EXPECT_FALSE(page.next);
}

TEST(ListingPageTest, DelimiterGroupsAndResumesAfterAGroup) {
  std::vector<std::string> keys = {"a", "a/1", "a/2", "a/x/1", "b", "c/1"};
  ListOptions options;
  options.delimiter = "/";
  EXPECT_EQ(Feed(options, keys), (std::vector<std::string>{"a", "b", "prefix:a/", "prefix:c/"}));
  options.limit = 2;
  ListPage page;
  EXPECT_EQ(Feed(options, keys, &page), (std::vector<std::string>{"a", "prefix:a/"}));
  ASSERT_EQ(page.next, "a/");
  options.start_after = "a/";
  EXPECT_EQ(Feed(options, keys, &page), (std::vector<std::string>{"b", "prefix:c/"}));
  options = {};
  options.delimiter = "/";
  options.prefix = "a/";
  EXPECT_EQ(Feed(options, keys), (std::vector<std::string>{"a/1", "a/2", "prefix:a/x/"}));
}

}  // namespace
}  // namespace mikcar::storage
