// The library API end to end: SidecarBuilder starts a real server on a free port, a custom
// Sidecar is mounted (under its name or at the root), and a plain socket talks HTTP to it.
#include "mikcar/builder.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

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

// Routes that misbehave: one sleeps past any short deadline, one throws.
class UnrulySidecar final : public Sidecar {
 public:
  explicit UnrulySidecar(std::atomic<int>& finished) : finished_(finished) {}
  std::string name() const override { return "unruly"; }
  std::vector<Route> Routes() override {
    return {{"GET", "/sleep",
             [this](Request& r) -> boost::asio::awaitable<Result<Response>> {
               boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor,
                                               std::chrono::milliseconds(600));
               co_await timer.async_wait(boost::asio::use_awaitable);
               // The request is still valid here although its 408 went out long ago.
               std::string trace(r.trace_id);
               ++finished_;
               co_return Response::Bytes("late " + trace, "text/plain");
             }},
            {"GET", "/throw", [](Request&) -> boost::asio::awaitable<Result<Response>> {
               throw std::runtime_error("boom");
               co_return Response::Empty(204);
             }}};
  }

 private:
  std::atomic<int>& finished_;
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

TEST(BuilderTest, AHandlerPastItsDeadlineIsAnswered408AndTheServerGoesOn) {
  std::atomic<int> finished{0};
  auto server = SidecarBuilder{}
                    .port(0)
                    .no_auth()
                    .timeout(std::chrono::milliseconds(150))
                    .add(std::make_unique<UnrulySidecar>(finished))
                    .start();
  ASSERT_TRUE(server) << server.error().message;
  const auto start = std::chrono::steady_clock::now();
  std::string late = Get(server->port(), "/unruly/sleep", "x-trace-id: slow-1\r\n");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(late, StartsWith("HTTP/1.1 408"));
  EXPECT_THAT(late, HasSubstr("x-trace-id: slow-1\r\n"));
  EXPECT_THAT(late, HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(late, HasSubstr(R"("code":"TIMEOUT","status":408})"));
  EXPECT_THAT(late, ::testing::Not(HasSubstr("late slow-1")));
  // Answered at the deadline, not when the handler ended; Get reads until the server closes.
  EXPECT_LT(waited, std::chrono::milliseconds(500));
  EXPECT_EQ(finished, 0);
  EXPECT_THAT(Get(server->port(), "/health"), StartsWith("HTTP/1.1 200"));
  for (int i = 0; i < 50 && finished == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(finished, 1);  // the handler ran to its end, and its result was dropped
  EXPECT_THAT(Get(server->port(), "/health"), StartsWith("HTTP/1.1 200"));
}

TEST(BuilderTest, AHandlerThatThrowsGets500) {
  std::atomic<int> finished{0};
  auto server =
      SidecarBuilder{}.port(0).no_auth().add(std::make_unique<UnrulySidecar>(finished)).start();
  ASSERT_TRUE(server) << server.error().message;
  std::string failed = Get(server->port(), "/unruly/throw");
  EXPECT_THAT(failed, StartsWith("HTTP/1.1 500"));
  EXPECT_THAT(failed, HasSubstr(R"("code":"INTERNAL_ERROR","status":500})"));
  EXPECT_THAT(Get(server->port(), "/health"), StartsWith("HTTP/1.1 200"));
}

}  // namespace
}  // namespace mikcar
