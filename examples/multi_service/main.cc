// Embeds /storage and /kv in one server: objects under a directory, keys in memory.
#include <cstdio>
#include <filesystem>

#include "mikcar/builder.h"
#include "mikcar/kv/kv.h"
#include "mikcar/storage/storage.h"

int main() {
  auto root = std::filesystem::temp_directory_path() / "mikcar-example-objects";
  mikcar::StorageOptions options;
  options.max_object_size = 1ull << 30;  // 1 GiB
  auto storage = mikcar::StorageService::FromUrl("file://" + root.string(), options);
  auto kv = mikcar::KvService::FromUrl("memory://");
  if (!storage || !kv) {
    std::fprintf(stderr, "%s\n", (!storage ? storage.error() : kv.error()).message.c_str());
    return 1;
  }
  auto server = mikcar::SidecarBuilder{}
                    .port(0)
                    .auth_token("t")
                    .add(std::move(*storage))
                    .add(std::move(*kv))
                    .start();
  if (!server) {
    std::fprintf(stderr, "%s\n", server.error().message.c_str());
    return 1;
  }
  std::printf("mikcar with /storage and /kv on port %u\n", server->port());
  return server->port() != 0 ? 0 : 1;
}
