// Process-wide logging set-up (spdlog). Never log a credential: log URLs through RedactUri().
#pragma once

#include <string_view>

#include "mikcar/error.h"

namespace mikcar {

// level: trace|debug|info|warn|error|off; format: text|json. Logs go to stderr.
Result<void> ConfigureLogging(std::string_view level, std::string_view format);

}  // namespace mikcar
