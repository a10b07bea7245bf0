#include "server/services.h"

#include "mikcar/registry.h"

#ifdef MIKCAR_WITH_KV
#include "mikcar/kv/kv.h"
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
  spec.create = [](const std::string& url) { return KvService::FromUrl(url); };
  spec.backends = [] { return Describe(KvService::Registry()); };
#endif
  return spec;
}

}  // namespace

const std::vector<ServiceSpec>& Services() {
  static const std::vector<ServiceSpec> services = [] {
    std::vector<ServiceSpec> list;
    list.push_back(Pending("storage", "STORAGE_URL", "MIKCAR_WITH_STORAGE"));
    list.push_back(Kv());
    list.push_back(Pending("sql", "DATABASE_URL", "MIKCAR_WITH_SQL"));
    list.push_back(Pending("queue", "QUEUE_URL", "MIKCAR_WITH_QUEUE"));
    list.push_back(Pending("secrets", "SECRETS_URL", "MIKCAR_WITH_SECRETS"));
    list.push_back(Pending("email", "EMAIL_URL", "MIKCAR_WITH_EMAIL"));
    return list;
  }();
  return services;
}

}  // namespace mikcar::server
