// Embeds every service (so that linking pulls in every backend of the static library) and
// answers one request to itself.
#include <cstdio>

#include "mikcar/builder.h"
#include "mikcar/kv/kv.h"
#include "mikcar/queue/queue.h"
#include "mikcar/sql/sql.h"
#include "mikcar/storage/storage.h"

int main() {
  auto kv = mikcar::KvService::FromUrl("memory://");
  auto storage = mikcar::StorageService::FromUrl("memory://");
  auto sql = mikcar::SqlService::FromUrl("sqlite::memory:");
  auto queue = mikcar::QueueService::FromUrl("memory://");
  for (const auto* service : {&kv, &storage, &sql, &queue}) {
    if (!*service) {
      std::fprintf(stderr, "%s\n", service->error().message.c_str());
      return 1;
    }
  }
  auto server = mikcar::SidecarBuilder{}
                    .port(0)
                    .auth_token("t")
                    .add(std::move(*kv))
                    .add(std::move(*storage))
                    .add(std::move(*sql))
                    .add(std::move(*queue))
                    .start();
  if (!server) {
    std::fprintf(stderr, "%s\n", server.error().message.c_str());
    return 1;
  }
  std::printf("embedded mikcar on port %u\n", server->port());
  return server->port() != 0 ? 0 : 1;  // the handle stops the server on scope exit
}
