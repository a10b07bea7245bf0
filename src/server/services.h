// The services this binary can run, how each resolves its backend URL, and its backends for
// --list-backends. The only file with #ifdef MIKCAR_WITH_<SERVICE> outside the services.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/sidecar.h"

namespace mikcar::server {

struct BackendInfo {
  std::string name;
  std::vector<std::string> schemes;
  std::string doc;
  bool compiled_in = false;
  std::string cmake_option;
};

// Settings from the command line that some services take.
struct ServiceSettings {
  std::string data_dir;          // absolute
  uint64_t max_object_size = 0;  // storage: PUT body limit
  std::string presign_secret;    // storage: empty = the one kept in <data_dir>/presign.key
};

struct ServiceSpec {
  std::string name;          // "kv": flag --kv, mount /kv
  std::string url_env;       // "KV_URL"
  std::string cmake_option;  // "MIKCAR_WITH_KV"
  bool compiled_in = false;
  // The embedded default URL under the data directory, e.g. file://<data>/kv.
  std::function<std::string(const std::string& data_dir)> default_url;
  std::function<Result<std::unique_ptr<Sidecar>>(const std::string& url,
                                                 const ServiceSettings& settings)>
      create;
  std::function<std::vector<BackendInfo>()> backends;
};

// Every service of SPEC §1.1 in flag order; those compiled out have compiled_in == false.
const std::vector<ServiceSpec>& Services();

}  // namespace mikcar::server
