#include "http/trace.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

namespace mikcar::http {
namespace {

constexpr const char* kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

bool IsUuidV4(const std::string& s) {
  static const std::regex kUuidV4(
      "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  return std::regex_match(s, kUuidV4);
}

TEST(NewUuidV4Test, HasVersionFourAndRfc4122Variant) {
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewUuidV4();
    ASSERT_EQ(id.size(), 36u) << id;
    ASSERT_TRUE(IsUuidV4(id)) << id;
  }
}

TEST(NewUuidV4Test, IsUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) seen.insert(NewUuidV4());
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(NewUuidV4Test, VariantNibbleCoversAllFourValues) {
  // The variant fixes only the top two bits: 8, 9, a and b must all occur.
  std::set<char> variants;
  for (int i = 0; i < 1000; ++i) variants.insert(NewUuidV4()[19]);
  EXPECT_EQ(variants, (std::set<char>{'8', '9', 'a', 'b'}));
}

TEST(ResolveTraceIdTest, ReusesPrintableIncomingId) {
  EXPECT_EQ(ResolveTraceId("req-123", ""), "req-123");
  EXPECT_EQ(ResolveTraceId("with space and ~!@#$%^&*()", ""), "with space and ~!@#$%^&*()");
  // x-trace-id wins over traceparent.
  EXPECT_EQ(ResolveTraceId("req-123", kTraceparent), "req-123");
}

TEST(ResolveTraceIdTest, ReusesIdOfExactly128Bytes) {
  std::string id(128, 'a');
  EXPECT_EQ(ResolveTraceId(id, ""), id);
}

TEST(ResolveTraceIdTest, RejectsIdOf129Bytes) {
  std::string id(129, 'a');
  std::string resolved = ResolveTraceId(id, "");
  EXPECT_NE(resolved, id);
  EXPECT_TRUE(IsUuidV4(resolved)) << resolved;
}

TEST(ResolveTraceIdTest, RejectsNonPrintableId) {
  for (std::string id :
       {std::string("bad\nid"), std::string("tab\tid"), std::string("del\x7f"),
        std::string("nul\0id", 6), std::string("caf\xc3\xa9"), std::string("\x1b[31mred")}) {
    std::string resolved = ResolveTraceId(id, "");
    EXPECT_NE(resolved, id);
    EXPECT_TRUE(IsUuidV4(resolved)) << resolved;
  }
}

TEST(ResolveTraceIdTest, GeneratesUuidWhenNothingIsGiven) {
  std::string a = ResolveTraceId("", "");
  std::string b = ResolveTraceId("", "");
  EXPECT_TRUE(IsUuidV4(a)) << a;
  EXPECT_TRUE(IsUuidV4(b)) << b;
  EXPECT_NE(a, b);
}

TEST(ResolveTraceIdTest, UsesTraceparentTraceIdWhenXTraceIdAbsent) {
  EXPECT_EQ(ResolveTraceId("", kTraceparent), kTraceId);
  // Sampled flag off, other valid flags.
  EXPECT_EQ(ResolveTraceId("", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            kTraceId);
}

TEST(ResolveTraceIdTest, FutureTraceparentVersionMayCarryMoreFields) {
  // W3C: a parser for version 00 must accept a higher version with extra "-"-separated fields.
  EXPECT_EQ(ResolveTraceId("", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            kTraceId);
}

TEST(ResolveTraceIdTest, InvalidTraceparentIsIgnored) {
  for (const char* tp : {
           // all-zero trace-id
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
           // all-zero parent-id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
           // version ff is forbidden
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           // bad hex / upper case in the trace-id, parent-id, version, flags
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9zzb7-01",
           "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
           // wrong lengths and separators
           "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
           "garbage",
       }) {
    std::string resolved = ResolveTraceId("", tp);
    EXPECT_NE(resolved, kTraceId) << tp;
    EXPECT_TRUE(IsUuidV4(resolved)) << tp << " gave " << resolved;
  }
}

}  // namespace
}  // namespace mikcar::http
