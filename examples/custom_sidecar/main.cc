// A custom sidecar embedded in a C++ program: one service with two routes, served with the
// same HTTP core (auth, errors, metrics, tracing) as mikcar's own services.
//
//   ./custom_sidecar 3002 &
//   curl -H 'Authorization: Bearer demo' localhost:3002/hello/greet/world
//   curl localhost:3002/openapi.json     # both routes, /greet described by OpenApi() below
//   curl -H 'Authorization: Bearer demo' localhost:3002/metrics   # hello_counts_total too
//   curl -H 'Authorization: Bearer guest' localhost:3002/hello/greet/guest-1   # a scoped token:
//   curl -H 'Authorization: Bearer guest' localhost:3002/hello/greet/root      # 403, not guest-*
//   curl -H 'Authorization: Bearer guest' -X POST localhost:3002/hello/count   # 403, read-only
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mikcar/builder.h"
#include "mikcar/sidecar.h"

namespace {

class HelloSidecar final : public mikcar::Sidecar {
 public:
  std::string name() const override { return "hello"; }

  std::vector<mikcar::Route> Routes() override {
    // A read-only token may call only routes marked ReadOnly; a scoped token only with names
    // its prefixes allow (Request::Permit).
    return {
        mikcar::ReadOnly({"GET", "/greet/{name}", mikcar::BindHandler(this, &HelloSidecar::Greet)}),
        {"POST", "/count", mikcar::BindHandler(this, &HelloSidecar::Count)},
    };
  }

  // Adds to /metrics at each scrape.
  boost::asio::awaitable<void> Collect(mikcar::MetricsSink& sink) override {
    sink.Counter("hello_counts_total", "POST /hello/count calls.", {},
                 static_cast<double>(count_.load()));
    co_return;
  }

  // For /openapi.json; the server adds the path parameter, tags, security and error responses.
  std::string_view OpenApi() const override {
    return R"json({"paths": {"/greet/{name}": {"get": {
      "summary": "Greet someone",
      "parameters": [{"name": "name", "in": "path", "description": "At most 64 bytes"}],
      "responses": {"200": {"description": "The greeting",
                            "content": {"text/plain": {"schema": {"type": "string"}}}}}}}}})json";
  }

 private:
  boost::asio::awaitable<mikcar::Result<mikcar::Response>> Greet(mikcar::Request& request) {
    std::string name(request.param("name"));
    if (name.size() > 64) {
      co_return mikcar::Fail(mikcar::ErrorCode::kBadRequest, "name: expected at most 64 bytes");
    }
    if (auto ok = request.Permit(name); !ok) co_return mikcar::Fail(ok.error());
    co_return mikcar::Response::Bytes("hello, " + name + "\n", "text/plain; charset=utf-8");
  }

  boost::asio::awaitable<mikcar::Result<mikcar::Response>> Count(mikcar::Request&) {
    co_return mikcar::Response::Json("{\"count\":" + std::to_string(++count_) + "}");
  }

  std::atomic<long> count_{0};
};

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  auto server = mikcar::SidecarBuilder{}
                    .port(static_cast<uint16_t>(port))
                    .auth_token("demo")
                    .tokens({{"guest", "", {"guest", {"hello"}, {"guest-"}, /*read_only=*/true}}})
                    .add(std::make_unique<HelloSidecar>())
                    .start();
  if (!server) {
    std::fprintf(stderr, "cannot start: %s\n", server.error().message.c_str());
    return 2;
  }
  std::printf("listening on 127.0.0.1:%u\n", server->port());
  std::fflush(stdout);
  server->wait();  // until SIGINT/SIGTERM
  return 0;
}
