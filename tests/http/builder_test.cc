// The library API end to end: SidecarBuilder starts a real server on a free port, a custom
// Sidecar is mounted (under its name or at the root), and a plain socket talks HTTP to it.
#include "mikcar/builder.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace mikcar {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class EchoSidecar final : public Sidecar {
 public:
  std::string name() const override { return "echo"; }
  std::vector<Route> Routes() override {
    return {{"GET", "/say/{word}", [](Request& r) -> boost::asio::awaitable<Result<Response>> {
               if (r.param("word") == "fail") co_return Fail(ErrorCode::kConflict, "asked to fail");
               co_return Response::Bytes(std::string(r.param("word")), "text/plain");
             }}};
  }
};

// One request over a fresh connection; returns the raw response.
std::string Get(uint16_t port, const std::string& path, const std::string& extra = "") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "connect failed";
  }
  std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + "\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(BuilderTest, ServesACustomSidecarUnderItsName) {
  auto server =
      SidecarBuilder{}.port(0).auth_token("tok").add(std::make_unique<EchoSidecar>()).start();
  ASSERT_TRUE(server) << server.error().message;
  ASSERT_NE(server->port(), 0);
  std::string ok = Get(server->port(), "/echo/say/hi", "Authorization: Bearer tok\r\n");
  EXPECT_THAT(ok, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nhi"));
  std::string denied = Get(server->port(), "/echo/say/hi");
  EXPECT_THAT(denied, StartsWith("HTTP/1.1 401"));
  EXPECT_THAT(denied, HasSubstr("WWW-Authenticate: Bearer"));
  std::string failed = Get(server->port(), "/echo/say/fail", "Authorization: Bearer tok\r\n");
  EXPECT_THAT(failed, StartsWith("HTTP/1.1 409"));
  EXPECT_THAT(failed, HasSubstr(R"({"error":"asked to fail","code":"CONFLICT","status":409})"));
  EXPECT_THAT(Get(server->port(), "/health"), HasSubstr(R"({"status":"healthy"})"));
}

TEST(BuilderTest, SingleServiceModeMountsAtTheRoot) {
  auto server = SidecarBuilder{}
                    .port(0)
                    .no_auth()
                    .mount_at_root()
                    .add(std::make_unique<EchoSidecar>())
                    .start();
  ASSERT_TRUE(server) << server.error().message;
  EXPECT_THAT(Get(server->port(), "/say/root"), HasSubstr("\r\n\r\nroot"));
  EXPECT_THAT(Get(server->port(), "/echo/say/root"), StartsWith("HTTP/1.1 404"));
}

TEST(BuilderTest, StopIsIdempotentAndFreesThePort) {
  auto server = SidecarBuilder{}.port(0).add(std::make_unique<EchoSidecar>()).start();
  ASSERT_TRUE(server);
  uint16_t port = server->port();
  server->stop();
  server->stop();
  EXPECT_EQ(Get(port, "/health"), "connect failed");
}

TEST(BuilderTest, RefusesAPublicBindWithoutAToken) {
  auto server =
      SidecarBuilder{}.host("0.0.0.0").port(0).add(std::make_unique<EchoSidecar>()).start();
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code, ErrorCode::kBadRequest);
  EXPECT_THAT(server.error().message, HasSubstr("HOST=0.0.0.0"));
  auto open = SidecarBuilder{}
                  .host("0.0.0.0")
                  .port(0)
                  .no_auth()
                  .add(std::make_unique<EchoSidecar>())
                  .start();
  EXPECT_TRUE(open) << open.error().message;
}

}  // namespace
}  // namespace mikcar
