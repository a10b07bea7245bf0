#include "http/response_head.h"

#include <gtest/gtest.h>

namespace mikcar::http {
namespace {

TEST(ResponseHeadTest, WritesTheStatusLineHeadersAndLength) {
  ResponseHead head;
  head.Start(200, 11);
  EXPECT_TRUE(head.Add("Content-Type", " application/json\t"));
  head.End(20, true);
  EXPECT_EQ(head.view(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n");
}

TEST(ResponseHeadTest, ConnectionHeaderFollowsTheVersion) {
  ResponseHead head;
  head.Start(404, 11);
  head.End(0, false);
  EXPECT_EQ(head.view(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  head.Start(200, 10);
  head.End(2, true);
  EXPECT_EQ(head.view(), "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
  head.Start(200, 10);
  head.End(2, false);
  EXPECT_EQ(head.view(), "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n");
}

TEST(ResponseHeadTest, BodilessStatusesHaveNoContentLength) {
  ResponseHead head;
  for (int status : {100, 204, 304}) {
    head.Start(status, 11);
    head.End(0, true);
    EXPECT_EQ(head.view().find("Content-Length"), std::string_view::npos) << status;
  }
}

TEST(ResponseHeadTest, RefusesHeadersThatWouldSplitTheResponse) {
  ResponseHead head;
  head.Start(200, 11);
  EXPECT_FALSE(head.Add("x-meta-a", "ok\r\nSet-Cookie: stolen=1"));
  EXPECT_FALSE(head.Add("x-meta-b", "ok\nx: y"));
  EXPECT_FALSE(head.Add("Bad\r\nName", "v"));
  EXPECT_FALSE(head.Add("Bad: Name", "v"));
  EXPECT_TRUE(head.Add("x-meta-c", "fine"));
  head.End(0, true);
  EXPECT_EQ(head.view(), "HTTP/1.1 200 OK\r\nx-meta-c: fine\r\nContent-Length: 0\r\n\r\n");
}

}  // namespace
}  // namespace mikcar::http
