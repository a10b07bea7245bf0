// Process-wide logging set-up (spdlog). Never log a credential: log URLs through RedactUri().
#pragma once

#include <string_view>

#include "mikcar/error.h"

namespace mikcar {

// level: trace|debug|info|warn|error|off; format: text|json. Logs go to stderr. An error names
// a bad value by where it came from: `level_from` ("MIKCAR_LOG", or a file's "mikcar.toml:3:
// log_level"), `format_from`.
Result<void> ConfigureLogging(std::string_view level, std::string_view format,
                              std::string_view level_from, std::string_view format_from);

}  // namespace mikcar
