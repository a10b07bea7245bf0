// Sizes ("10MiB", "512KiB", "1024") and durations ("30s", "500ms", "2") as written in flags,
// environment variables and query parameters (SPEC §11).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "mikcar/error.h"

namespace mikcar {

Result<uint64_t> ParseSize(std::string_view text);
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace mikcar
