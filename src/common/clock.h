// Wall-clock time as mikcar stores and prints it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mikcar {

// Unix time in milliseconds (wall clock: stored deadlines survive restarts).
int64_t UnixNowMs();
// "2026-11-24T06:58:32.123Z" (RFC 3339, UTC, milliseconds when not zero).
std::string Rfc3339(std::chrono::system_clock::time_point t);

}  // namespace mikcar
