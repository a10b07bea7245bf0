#include "server/services.h"

namespace mikcar::server {
namespace {

ServiceSpec Pending(std::string name, std::string env, std::string option) {
  ServiceSpec spec;
  spec.name = std::move(name);
  spec.url_env = std::move(env);
  spec.cmake_option = std::move(option);
  return spec;
}

}  // namespace

const std::vector<ServiceSpec>& Services() {
  static const std::vector<ServiceSpec> services = [] {
    std::vector<ServiceSpec> list;
    list.push_back(Pending("storage", "STORAGE_URL", "MIKCAR_WITH_STORAGE"));
    list.push_back(Pending("kv", "KV_URL", "MIKCAR_WITH_KV"));
    list.push_back(Pending("sql", "DATABASE_URL", "MIKCAR_WITH_SQL"));
    list.push_back(Pending("queue", "QUEUE_URL", "MIKCAR_WITH_QUEUE"));
    list.push_back(Pending("secrets", "SECRETS_URL", "MIKCAR_WITH_SECRETS"));
    list.push_back(Pending("email", "EMAIL_URL", "MIKCAR_WITH_EMAIL"));
    return list;
  }();
  return services;
}

}  // namespace mikcar::server
