// The configuration file (SPEC §1.2): every setting of the command line, each service's backend
// URL and options, and scoped tokens (SPEC §2.4). Flags override the environment, which
// overrides the file; main.cc applies that order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mikcar/builder.h"
#include "mikcar/error.h"

namespace mikcar::server {

struct ConfigFile {
  // A setting as the text its long flag would take: key "max_body" is --max-body.
  struct Setting {
    std::string key;
    std::string value;
    std::string where;  // "mikcar.toml:3", for errors
  };
  std::vector<Setting> settings;
  std::vector<std::string> services;  // services = ["kv", …]
  std::string services_where;         // "mikcar.toml:4", for errors
  // [kv] url = "…", by service, with where it is.
  std::map<std::string, std::pair<std::string, std::string>> urls;
  std::string auth_token;           // the full-access token, if the file gives one
  std::vector<ScopedToken> tokens;  // [[tokens]]
};

// Reads and checks `path`. `services` are the service names that may have a table. Errors are
// BAD_REQUEST "PATH:LINE: what is wrong; what was expected".
Result<ConfigFile> ReadConfigFile(const std::string& path,
                                  const std::vector<std::string>& services);

}  // namespace mikcar::server
