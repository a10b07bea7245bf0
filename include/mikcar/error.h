// mikcar's one error type.
//
// Every layer (backends, services, the HTTP core) reports failure as a `mikcar::Error`: a code
// from the closed `ErrorCode` enum and a human message that says what was wrong and what was
// expected. Only the HTTP layer turns a code into a status (src/http/error_response.cc); nothing
// else picks status codes. Exceptions never cross the public API or a backend interface.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

namespace mikcar {

enum class ErrorCode {
  kBadRequest,            // 400 BAD_REQUEST
  kUnauthorized,          // 401 UNAUTHORIZED
  kForbidden,             // 403 FORBIDDEN
  kNotFound,              // 404 NOT_FOUND
  kMethodNotAllowed,      // 405 METHOD_NOT_ALLOWED
  kTimeout,               // 408 TIMEOUT
  kConflict,              // 409 CONFLICT
  kPreconditionFailed,    // 412 PRECONDITION_FAILED
  kPayloadTooLarge,       // 413 PAYLOAD_TOO_LARGE
  kUnsupportedMediaType,  // 415 UNSUPPORTED_MEDIA_TYPE
  kRangeNotSatisfiable,   // 416 RANGE_NOT_SATISFIABLE
  kUnprocessable,         // 422 UNPROCESSABLE
  kRateLimited,           // 429 RATE_LIMITED
  kInternal,              // 500 INTERNAL_ERROR
  kBackend,               // 502 BACKEND_ERROR
  kUnavailable,           // 503 UNAVAILABLE
  kBackendTimeout,        // 504 BACKEND_TIMEOUT
  // Service codes.
  kNotAnInteger,  // 409 NOT_AN_INTEGER (kv increment)
  kOverflow,      // 409 OVERFLOW (kv increment)
  kBadDigest,     // 400 BAD_DIGEST (storage Content-MD5 mismatch)
  // SQL errors reported by the database (wire code SQL_ERROR, status by class).
  kSqlError,        // 400 SQL_ERROR: syntax, types, parameters
  kSqlConflict,     // 409 SQL_ERROR: constraint violation, serialization failure
  kSqlUnavailable,  // 503 SQL_ERROR: database unreachable or shutting down
  kSqlTimeout,      // 504 SQL_ERROR: statement timeout
  // /sql/script.
  kScriptError,    // 400 SCRIPT_ERROR: the script threw, or does not compile
  kScriptTimeout,  // 408 SCRIPT_TIMEOUT: the script ran past its wall-time limit
  kScriptMemory,   // 413 SCRIPT_MEMORY: the script's heap grew past its limit
};

// The wire name of a code, e.g. "NOT_FOUND".
std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // Extra members merged into the JSON envelope, each value already serialised as JSON
  // (e.g. {"sqlstate", "\"23505\""}). Empty for most errors.
  std::vector<std::pair<std::string, std::string>> fields;
};

template <typename T>
using Result = tl::expected<T, Error>;

// `return Fail(ErrorCode::kNotFound, "key not found");` in any function returning Result<T>.
inline tl::unexpected<Error> Fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message), {}});
}
inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

}  // namespace mikcar
