// Request rules of the storage service that do not depend on a backend: path validation
// (SPEC §4.3), byte ranges, ETag conditions and the two date formats. Pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/storage/backend.h"

namespace mikcar::storage {

constexpr size_t kMaxPathBytes = 1024;

// SPEC §4.3, with its compat messages: empty, absolute, NUL, ".." segment; plus ≤ 1024 bytes of
// UTF-8. All BAD_REQUEST.
Result<void> ValidatePath(std::string_view path);

// `bytes=a-b`, `a-`, `-n` (RFC 9110 §14). A header that is absent, malformed, not in bytes, or
// asks for several ranges gives nullopt: it is ignored (the whole object), as the RFC allows.
std::optional<RangeSpec> ParseRange(std::string_view header);

// True if the If-Match / If-None-Match list `header` ("*", or quoted ETags separated by commas,
// W/ prefixes compared weakly) names `etag`.
bool EtagListMatches(std::string_view header, std::string_view etag);

using TimePoint = std::chrono::system_clock::time_point;
// "Tue, 24 Nov 2026 06:58:32 GMT" (RFC 9110 IMF-fixdate).
std::string HttpDate(TimePoint t);
// IMF-fixdate only (what clients send); nullopt when malformed.
std::optional<TimePoint> ParseHttpDate(std::string_view s);

}  // namespace mikcar::storage

namespace mikcar::storage {

// The If-Match / If-None-Match conditions of a PUT against the current object (nullptr: none).
// PRECONDITION_FAILED when not met. Backends call it where the check and the write are atomic.
Result<void> CheckPutConditions(const PutOptions& options, const ObjectInfo* current);

// Applies the requested range to `object` (whose info is set): sets `range`, or `unsatisfiable`.
// The bytes to send; nullopt when the range lies outside the object.
std::optional<ByteRange> SelectRange(Object& object, const std::optional<RangeSpec>& range);

// BAD_DIGEST when a Content-MD5 was given and the body's MD5 (raw bytes) differs.
Result<void> CheckDigest(const PutOptions& options, std::string_view md5);

}  // namespace mikcar::storage
