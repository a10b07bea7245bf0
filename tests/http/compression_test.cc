#include "http/compression.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <optional>
#include <random>
#include <string>

namespace mikcar::http {
namespace {

// Inflates a gzip stream with zlib; nullopt if it is not a complete, valid gzip member.
std::optional<std::string> Gunzip(std::string_view gz) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return std::nullopt;  // 16: gzip wrapper only
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
  }
  bool complete = rc == Z_STREAM_END && zs.avail_in == 0;
  inflateEnd(&zs);
  if (!complete) return std::nullopt;
  return out;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// --- AcceptsGzip ---

TEST(AcceptsGzipTest, PlainGzip) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("gzip, deflate, br"));
  EXPECT_TRUE(AcceptsGzip("br, gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate ,  gzip  "));
  EXPECT_TRUE(AcceptsGzip("x-gzip"));
}

TEST(AcceptsGzipTest, CodingNameIsCaseInsensitive) {
  EXPECT_TRUE(AcceptsGzip("GZIP"));
  EXPECT_TRUE(AcceptsGzip("GZip;Q=0.5"));
}

TEST(AcceptsGzipTest, PositiveQualityAccepts) {
  EXPECT_TRUE(AcceptsGzip("gzip;q=1"));
  EXPECT_TRUE(AcceptsGzip("gzip;q=0.001"));
  EXPECT_TRUE(AcceptsGzip("gzip; q=0.5, identity"));
}

TEST(AcceptsGzipTest, ZeroQualityRefuses) {
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip; q=0.0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0.000, deflate"));
  EXPECT_FALSE(AcceptsGzip("*;q=0"));
}

TEST(AcceptsGzipTest, WildcardAccepts) {
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_TRUE(AcceptsGzip("br;q=1.0, *;q=0.1"));
}

TEST(AcceptsGzipTest, ExplicitGzipOverridesWildcard) {
  // RFC 9110 §12.5.3: "*" matches only codings not listed elsewhere in the field.
  EXPECT_FALSE(AcceptsGzip("*, gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0, *"));
  EXPECT_TRUE(AcceptsGzip("*;q=0, gzip"));
  EXPECT_TRUE(AcceptsGzip("*;q=0, gzip;q=0.5"));
}

TEST(AcceptsGzipTest, OtherCodingsDoNotAccept) {
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("deflate, br"));
  EXPECT_FALSE(AcceptsGzip("gzipx"));
  EXPECT_FALSE(AcceptsGzip("x-gzip2, agzip"));
}

// --- IsCompressible ---

TEST(IsCompressibleTest, TextLikeTypes) {
  for (const char* type :
       {"text/plain", "text/html; charset=utf-8", "TEXT/CSV", "application/json",
        "application/json; charset=utf-8", "Application/JSON", "application/xml",
        "application/javascript", "image/svg+xml", "application/x-ndjson",
        "application/problem+json", "application/vnd.api+json", "application/atom+xml"}) {
    EXPECT_TRUE(IsCompressible(type)) << type;
  }
}

TEST(IsCompressibleTest, BinaryAndAlreadyCompressedTypes) {
  for (const char* type :
       {"", "application/octet-stream", "image/png", "image/jpeg", "video/mp4", "application/gzip",
        "application/zip", "application/jsonx", "application/json-seq-not", "text", "+json"}) {
    EXPECT_FALSE(IsCompressible(type)) << type;
  }
}

// --- Gzip ---

TEST(GzipTest, RoundTripsThroughZlib) {
  std::string json;
  for (int i = 0; i < 200; ++i) json += R"({"key":"cart:)" + std::to_string(i) + R"(","v":1},)";
  ASSERT_GE(json.size(), kMinCompressBytes);
  auto gz = Gzip(json);
  ASSERT_TRUE(gz.has_value());
  EXPECT_LT(gz->size(), json.size());
  // A gzip member starts with the magic bytes 1f 8b and method 8 (deflate).
  ASSERT_GE(gz->size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>((*gz)[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>((*gz)[1]), 0x8b);
  EXPECT_EQ((*gz)[2], 8);
  auto back = Gunzip(*gz);
  ASSERT_TRUE(back.has_value()) << "not a valid gzip stream";
  EXPECT_EQ(*back, json);
}

TEST(GzipTest, RoundTripsBinaryAndLargeData) {
  // Compressible binary (with NULs and high bytes) of several MiB.
  std::string data;
  std::string block = RandomBytes(4096, 1);
  while (data.size() < 4 * 1024 * 1024) data += block;
  auto gz = Gzip(data);
  ASSERT_TRUE(gz.has_value());
  auto back = Gunzip(*gz);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->size(), data.size());
  EXPECT_TRUE(*back == data);
}

TEST(GzipTest, DeclinesWhenItDoesNotShrink) {
  EXPECT_FALSE(Gzip(RandomBytes(4096, 2)).has_value());
  EXPECT_FALSE(Gzip("").has_value());
  EXPECT_FALSE(Gzip("a").has_value());
}

}  // namespace
}  // namespace mikcar::http
