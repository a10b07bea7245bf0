#include "sql/postgres/pg_values.h"

#include <gtest/gtest.h>

#include "sql/cells.h"

namespace mikcar::sql {
namespace {

TEST(PgValuesTest, Scalars) {
  EXPECT_EQ(PgCell(16, "t"), "true");
  EXPECT_EQ(PgCell(16, "f"), "false");
  EXPECT_EQ(PgCell(23, "-42"), "-42");
  EXPECT_EQ(PgCell(20, "9007199254740992"), "9007199254740992");
  EXPECT_EQ(PgCell(20, "9007199254740993"), "\"9007199254740993\"");
  EXPECT_EQ(PgCell(20, "-9223372036854775808"), "\"-9223372036854775808\"");
  EXPECT_EQ(PgCell(701, "1.5"), "1.5");
  EXPECT_EQ(PgCell(701, "NaN"), "null");
  EXPECT_EQ(PgCell(700, "-Infinity"), "null");
  EXPECT_EQ(PgCell(1700, "12.3400"), "\"12.3400\"");
  EXPECT_EQ(PgCell(3802, R"({"a": [1, 2]})"), R"({"a": [1, 2]})");
  EXPECT_EQ(PgCell(17, "\\x0102ff"), R"({"base64":"AQL/"})");
  EXPECT_EQ(PgCell(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
  EXPECT_EQ(PgCell(12345, "happy"), "\"happy\"");  // an enum: its label
}

TEST(PgValuesTest, DatesAndTimes) {
  EXPECT_EQ(PgCell(1082, "2024-01-02"), "\"2024-01-02\"");
  EXPECT_EQ(PgCell(1114, "2024-01-02 03:04:05.12"), "\"2024-01-02T03:04:05.12\"");
  EXPECT_EQ(PgCell(1184, "2024-01-02 01:04:05.12+00"), "\"2024-01-02T01:04:05.12+00:00\"");
  EXPECT_EQ(PgCell(1184, "2024-01-02 01:04:05+05:30"), "\"2024-01-02T01:04:05+05:30\"");
  EXPECT_EQ(PgCell(1184, "infinity"), "\"infinity\"");
  EXPECT_EQ(PgCell(1186, "1 day 02:00:00"), "\"1 day 02:00:00\"");
}

TEST(PgValuesTest, Arrays) {
  EXPECT_EQ(PgCell(1007, "{1,2,3}"), "[1,2,3]");
  EXPECT_EQ(PgCell(1007, "{}"), "[]");
  EXPECT_EQ(PgCell(1007, "{{1,2},{3,NULL}}"), "[[1,2],[3,null]]");
  EXPECT_EQ(PgCell(1009, R"({"a b",c,NULL,"NULL","q\"x"})"), R"(["a b","c",null,"NULL","q\"x"])");
  EXPECT_EQ(PgCell(1000, "{t,f}"), "[true,false]");
  EXPECT_EQ(PgCell(1007, "[0:1]={5,6}"), "[5,6]");
  EXPECT_EQ(PgCell(3807, R"({"{\"a\": 1}"})"), R"([{"a": 1}])");
  EXPECT_EQ(PgCell(1007, "{1,2"), "\"{1,2\"");  // malformed: the text form, never null
}

TEST(CellsTest, Numbers) {
  EXPECT_EQ(IntegerCell(42), "42");
  EXPECT_EQ(IntegerCell(int64_t{1} << 53), "9007199254740992");
  EXPECT_EQ(IntegerCell((int64_t{1} << 53) + 1), "\"9007199254740993\"");
  EXPECT_EQ(RealCell(0.1), "0.1");
  EXPECT_EQ(RealCell(1.0 / 0.0), "null");
  EXPECT_EQ(BytesCell(std::string("\0\1", 2)), R"({"base64":"AAE="})");
}

}  // namespace
}  // namespace mikcar::sql
