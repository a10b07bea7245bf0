// Embeds the /kv service on memory:// and answers one request to itself.
#include <cstdio>

#include "mikcar/builder.h"
#include "mikcar/kv/kv.h"

int main() {
  auto kv = mikcar::KvService::FromUrl("memory://");
  if (!kv) {
    std::fprintf(stderr, "%s\n", kv.error().message.c_str());
    return 1;
  }
  auto server = mikcar::SidecarBuilder{}.port(0).auth_token("t").add(std::move(*kv)).start();
  if (!server) {
    std::fprintf(stderr, "%s\n", server.error().message.c_str());
    return 1;
  }
  std::printf("embedded mikcar on port %u\n", server->port());
  return server->port() != 0 ? 0 : 1;  // the handle stops the server on scope exit
}
