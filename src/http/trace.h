// Trace ids (SPEC §2.3): reuse a printable x-trace-id ≤ 128 bytes, else the trace-id of a valid
// W3C traceparent, else a fresh UUIDv4.
#pragma once

#include <string>
#include <string_view>

namespace mikcar::http {

std::string ResolveTraceId(std::string_view x_trace_id, std::string_view traceparent);
std::string NewUuidV4();

}  // namespace mikcar::http
