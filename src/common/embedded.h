// Text files compiled into the library by mikcar_embed_text() (cmake/embed.cmake).
#pragma once

#include <string_view>

namespace mikcar::embedded {

// OpenAPI fragments (format: src/http/openapi.h).
extern const std::string_view kServerOpenApi;   // src/http/openapi.json
extern const std::string_view kKvOpenApi;       // src/kv/openapi.json
extern const std::string_view kStorageOpenApi;  // src/storage/openapi.json
extern const std::string_view kSqlOpenApi;      // src/sql/openapi.json
extern const std::string_view kQueueOpenApi;    // src/queue/openapi.json

}  // namespace mikcar::embedded
