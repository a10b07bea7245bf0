#include "common/units.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

namespace mikcar {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

TEST(ParseSizeTest, BinaryUnitsAndPlainBytes) {
  EXPECT_EQ(ParseSize("10MiB").value(), 10u * 1024 * 1024);
  EXPECT_EQ(ParseSize("512KiB").value(), 512u * 1024);
  EXPECT_EQ(ParseSize("5GiB").value(), 5ull * 1024 * 1024 * 1024);
  EXPECT_EQ(ParseSize("1TiB").value(), 1ull << 40);
  EXPECT_EQ(ParseSize("1048576").value(), 1048576u);
  EXPECT_EQ(ParseSize("1024B").value(), 1024u);
  EXPECT_EQ(ParseSize("0").value(), 0u);
}

TEST(ParseSizeTest, FractionsOfAUnit) {
  EXPECT_EQ(ParseSize("1.5KiB").value(), 1536u);
  EXPECT_EQ(ParseSize("0.5MiB").value(), 512u * 1024);
}

TEST(ParseSizeTest, DecimalUnitsAreDecimal) {
  EXPECT_EQ(ParseSize("1KB").value(), 1000u);
  EXPECT_EQ(ParseSize("2MB").value(), 2'000'000u);
  EXPECT_EQ(ParseSize("3GB").value(), 3'000'000'000u);
}

TEST(ParseSizeTest, RejectsWhatIsNotASize) {
  for (const char* text : {"", "MiB", "10XB", "10mib", "-1", "+1", "10 MiB", " 10", "10 ", "1.2.3",
                           "1e3", ".", "ten", "0x10", "99999999999999999999TiB"}) {
    auto size = ParseSize(text);
    ASSERT_FALSE(size.has_value()) << "'" << text << "' parsed as " << *size;
    EXPECT_EQ(size.error().code, ErrorCode::kBadRequest) << text;
  }
}

TEST(ParseSizeTest, ErrorNamesTheInputAndTheExpectedForm) {
  auto size = ParseSize("10XB");
  ASSERT_FALSE(size.has_value());
  EXPECT_THAT(size.error().message, HasSubstr("'10XB'"));
  EXPECT_THAT(size.error().message, HasSubstr("10MiB"));
}

TEST(ParseDurationTest, SecondsMillisecondsAndPlainSeconds) {
  EXPECT_EQ(ParseDuration("30s").value(), milliseconds(30'000));
  EXPECT_EQ(ParseDuration("500ms").value(), milliseconds(500));
  EXPECT_EQ(ParseDuration("30").value(), milliseconds(30'000));
  EXPECT_EQ(ParseDuration("0").value(), milliseconds(0));
}

TEST(ParseDurationTest, FractionsAndLongerUnits) {
  EXPECT_EQ(ParseDuration("1.5s").value(), milliseconds(1500));
  EXPECT_EQ(ParseDuration("0.25").value(), milliseconds(250));
  EXPECT_EQ(ParseDuration("2m").value(), milliseconds(120'000));
  EXPECT_EQ(ParseDuration("1h").value(), milliseconds(3'600'000));
}

TEST(ParseDurationTest, RejectsWhatIsNotADuration) {
  for (const char* text : {"", "s", "ms", "30sec", "30S", "-5s", "5 s", " 5s", "1e3", "1.2.3s",
                           "5d", "forever", "99999999999999999999h"}) {
    auto duration = ParseDuration(text);
    ASSERT_FALSE(duration.has_value())
        << "'" << text << "' parsed as " << duration->count() << "ms";
    EXPECT_EQ(duration.error().code, ErrorCode::kBadRequest) << text;
  }
}

TEST(ParseDurationTest, ErrorNamesTheInputAndTheExpectedForm) {
  auto duration = ParseDuration("30sec");
  ASSERT_FALSE(duration.has_value());
  EXPECT_THAT(duration.error().message, HasSubstr("'30sec'"));
  EXPECT_THAT(duration.error().message, HasSubstr("500ms"));
}

}  // namespace
}  // namespace mikcar
