#include "server/services.h"

#include "mikcar/registry.h"

#ifdef MIKCAR_WITH_KV
#include "mikcar/kv/kv.h"
#endif
#ifdef MIKCAR_WITH_SQL
#include "mikcar/sql/sql.h"
#endif
#ifdef MIKCAR_WITH_QUEUE
#include "mikcar/queue/queue.h"
#endif
#ifdef MIKCAR_WITH_STORAGE
#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/hex.h"
#include "mikcar/storage/storage.h"
#endif

namespace mikcar::server {
namespace {

ServiceSpec Pending(std::string name, std::string env, std::string option) {
  ServiceSpec spec;
  spec.name = std::move(name);
  spec.url_env = std::move(env);
  spec.cmake_option = std::move(option);
  return spec;
}

template <typename Backend>
std::vector<BackendInfo> Describe(const BackendRegistry<Backend>& registry) {
  std::vector<BackendInfo> out;
  for (const auto& e : registry.entries()) {
    out.push_back({e.name, e.schemes, e.doc, static_cast<bool>(e.create), e.cmake_option});
  }
  return out;
}

ServiceSpec Kv() {
  ServiceSpec spec = Pending("kv", "KV_URL", "MIKCAR_WITH_KV");
#ifdef MIKCAR_WITH_KV
  spec.compiled_in = true;
  spec.default_url = [](const std::string& data_dir) { return "file://" + data_dir + "/kv"; };
  spec.create = [](const std::string& url, const ServiceSettings&) {
    return KvService::FromUrl(url);
  };
  spec.backends = [] { return Describe(KvService::Registry()); };
#endif
  return spec;
}

#ifdef MIKCAR_WITH_STORAGE
// The presign key kept in the data directory: read, or created once (mode 0600) so presigned
// URLs outlive a restart.
Result<std::string> PresignKey(const std::string& data_dir) {
  std::string path = data_dir + "/presign.key";
  auto failed = [&](const char* what) {
    return Fail(ErrorCode::kUnavailable,
                std::string("cannot ") + what + " " + path + ": " + std::strerror(errno));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    unsigned char raw[32];
    RAND_bytes(raw, sizeof raw);
    std::string key = HexEncode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      bool ok = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) &&
                ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) return failed("write");
      return key;
    }
    if (errno != EEXIST) return failed("create");
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // another process created it first
  }
  if (fd < 0) return failed("read");
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n <= 0) return failed("read");
  return std::string(buf, static_cast<size_t>(n));
}
#endif

ServiceSpec Storage() {
  ServiceSpec spec = Pending("storage", "STORAGE_URL", "MIKCAR_WITH_STORAGE");
#ifdef MIKCAR_WITH_STORAGE
  spec.compiled_in = true;
  spec.default_url = [](const std::string& data_dir) { return "file://" + data_dir + "/objects"; };
  spec.create = [](const std::string& url,
                   const ServiceSettings& settings) -> Result<std::unique_ptr<Sidecar>> {
    StorageOptions options;
    options.max_object_size = settings.max_object_size;
    options.presign_secret = settings.presign_secret;
    if (options.presign_secret.empty()) {
      auto key = PresignKey(settings.data_dir);
      if (!key) return Fail(key.error());
      options.presign_secret = std::move(*key);
    }
    return StorageService::FromUrl(url, std::move(options));
  };
  spec.backends = [] { return Describe(StorageService::Registry()); };
#endif
  return spec;
}

ServiceSpec Sql() {
  ServiceSpec spec = Pending("sql", "DATABASE_URL", "MIKCAR_WITH_SQL");
#ifdef MIKCAR_WITH_SQL
  spec.compiled_in = true;
  spec.default_url = [](const std::string& data_dir) {
    return "sqlite://" + data_dir + "/db.sqlite3";
  };
  spec.create = [](const std::string& url, const ServiceSettings&) {
    return SqlService::FromUrl(url);
  };
  spec.backends = [] { return Describe(SqlService::Registry()); };
#endif
  return spec;
}

ServiceSpec Queue() {
  ServiceSpec spec = Pending("queue", "QUEUE_URL", "MIKCAR_WITH_QUEUE");
#ifdef MIKCAR_WITH_QUEUE
  spec.compiled_in = true;
  spec.default_url = [](const std::string& data_dir) { return "file://" + data_dir + "/queue"; };
  spec.create = [](const std::string& url, const ServiceSettings&) {
    return QueueService::FromUrl(url);
  };
  spec.backends = [] { return Describe(QueueService::Registry()); };
#endif
  return spec;
}

}  // namespace

const std::vector<ServiceSpec>& Services() {
  static const std::vector<ServiceSpec> services = [] {
    std::vector<ServiceSpec> list;
    list.push_back(Storage());
    list.push_back(Kv());
    list.push_back(Sql());
    list.push_back(Queue());
    list.push_back(Pending("secrets", "SECRETS_URL", "MIKCAR_WITH_SECRETS"));
    list.push_back(Pending("email", "EMAIL_URL", "MIKCAR_WITH_EMAIL"));
    return list;
  }();
  return services;
}

}  // namespace mikcar::server
