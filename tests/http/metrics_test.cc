#include "http/metrics.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>

namespace mikcar::http {
namespace {

TEST(FamilySink, FamiliesFromSeveralReportersAreWrittenOnceInFirstReportOrder) {
  FamilySink sink;
  sink.Counter("calls_total", "Calls.", {{"service", "kv"}}, 3);
  sink.Gauge("depth", "Depth.", {}, 7);
  sink.Counter("calls_total", "Calls (ignored help).", {{"service", "sql"}}, 4);
  EXPECT_EQ(sink.Render(),
            "# HELP calls_total Calls.\n"
            "# TYPE calls_total counter\n"
            "calls_total{service=\"kv\"} 3\n"
            "calls_total{service=\"sql\"} 4\n"
            "# HELP depth Depth.\n"
            "# TYPE depth gauge\n"
            "depth 7\n");
}

TEST(FamilySink, ASampleOfAnotherTypeIsDropped) {
  FamilySink sink;
  sink.Counter("x", "X.", {}, 1);
  sink.Gauge("x", "X.", {}, 2);
  EXPECT_EQ(sink.Render(), "# HELP x X.\n# TYPE x counter\nx 1\n");
}

TEST(FamilySink, BadNamesAreDroppedAndHelpIsEscaped) {
  FamilySink sink;
  sink.Counter("bad name", "X.", {}, 1);
  sink.Counter("9lives", "X.", {}, 1);
  sink.Counter("ok", "ignored", {{"bad-label", "v"}}, 1);
  sink.Counter("ok", "ignored", {{"le", "1"}}, 2);
  sink.Counter("ok", "Line one\nand a \\ backslash.", {{"good_label", "v"}}, 3);
  EXPECT_EQ(sink.Render(),
            "# HELP ok Line one\\nand a \\\\ backslash.\n"
            "# TYPE ok counter\n"
            "ok{good_label=\"v\"} 3\n");
}

TEST(FamilySink, LabelValuesAreEscapedAndNumbersExact) {
  FamilySink sink;
  sink.Gauge("g", "G.", {{"path", "a\"b\\c\nd"}}, 0.25);
  sink.Gauge("g", "G.", {{"path", "big"}}, 1796623140.5);
  sink.Gauge("g", "G.", {{"path", "huge"}}, 1e19);  // beyond int64: no undefined cast
  sink.Gauge("g", "G.", {{"path", "nan"}}, std::nan(""));
  sink.Gauge("g", "G.", {{"path", "inf"}}, std::numeric_limits<double>::infinity());
  EXPECT_EQ(sink.Render(),
            "# HELP g G.\n# TYPE g gauge\n"
            "g{path=\"a\\\"b\\\\c\\nd\"} 0.25\n"
            "g{path=\"big\"} 1796623140.5\n"
            "g{path=\"huge\"} 1e+19\n"
            "g{path=\"nan\"} NaN\n"
            "g{path=\"inf\"} +Inf\n");
}

TEST(FamilySink, HistogramHasCumulativeBucketsInfSumAndCount) {
  FamilySink sink;
  std::array<double, 2> bounds{0.001, 0.5};
  std::array<uint64_t, 2> cumulative{1, 3};
  sink.Histogram("d_seconds", "D.", {{"op", "get"}}, bounds, cumulative, 4, 1.5);
  EXPECT_EQ(sink.Render(),
            "# HELP d_seconds D.\n# TYPE d_seconds histogram\n"
            "d_seconds_bucket{op=\"get\",le=\"0.001\"} 1\n"
            "d_seconds_bucket{op=\"get\",le=\"0.5\"} 3\n"
            "d_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{op=\"get\"} 1.5\n"
            "d_seconds_count{op=\"get\"} 4\n");
}

TEST(Metrics, ServicesAddTheirFamiliesAfterTheCore) {
  Metrics metrics;
  RouteStats* route = metrics.Register("kv", "/kv/get/{key}", "GET");
  metrics.Started();
  metrics.Finished(route, 200, 0.0002, 0, 10);
  FamilySink sink;
  metrics.Collect(sink);
  sink.Counter("mikcar_backend_calls_total", "Calls.", {{"service", "kv"}}, 1);
  std::string text = sink.Render();
  EXPECT_NE(text.find("mikcar_http_requests_total{service=\"kv\",route=\"/kv/get/{key}\","
                      "method=\"GET\",status=\"200\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("mikcar_http_request_duration_seconds_bucket{service=\"kv\","
                      "route=\"/kv/get/{key}\",method=\"GET\",le=\"0.00025\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("mikcar_http_request_duration_seconds_bucket{service=\"kv\","
                      "route=\"/kv/get/{key}\",method=\"GET\",le=\"0.0001\"} 0\n"),
            std::string::npos);
  EXPECT_LT(text.find("process_start_time_seconds"), text.find("mikcar_backend_calls_total"));
}

}  // namespace
}  // namespace mikcar::http
