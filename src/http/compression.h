// gzip response compression (SPEC §2.3).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mikcar::http {

inline constexpr size_t kMinCompressBytes = 1024;

// True if an Accept-Encoding value accepts gzip (q > 0).
bool AcceptsGzip(std::string_view accept_encoding);
// True for text/*, JSON, XML, JavaScript, SVG and similar content types.
bool IsCompressible(std::string_view content_type);
// gzip-encoded `data`, or nullopt if compression fails or does not make it smaller.
std::optional<std::string> Gzip(std::string_view data);

}  // namespace mikcar::http
