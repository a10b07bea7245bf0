// Sizes ("10MiB", "512KiB", "1024") and durations ("30s", "500ms", "2") as written in flags,
// environment variables and query parameters (SPEC §11).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "mikcar/error.h"

namespace mikcar {

class Request;  // mikcar/http.h; only DurationParam needs it

Result<uint64_t> ParseSize(std::string_view text);
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// The duration query parameter `name` ("30", "1.5", "500ms", "2m") within [0, max]; `fallback`
// when absent.
Result<std::chrono::milliseconds> DurationParam(const Request& request, std::string_view name,
                                                std::chrono::milliseconds fallback,
                                                std::chrono::milliseconds max);

}  // namespace mikcar
