#include "mikcar/error.h"

namespace mikcar {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest:
      return "BAD_REQUEST";
    case ErrorCode::kUnauthorized:
      return "UNAUTHORIZED";
    case ErrorCode::kForbidden:
      return "FORBIDDEN";
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kMethodNotAllowed:
      return "METHOD_NOT_ALLOWED";
    case ErrorCode::kTimeout:
      return "TIMEOUT";
    case ErrorCode::kConflict:
      return "CONFLICT";
    case ErrorCode::kPreconditionFailed:
      return "PRECONDITION_FAILED";
    case ErrorCode::kPayloadTooLarge:
      return "PAYLOAD_TOO_LARGE";
    case ErrorCode::kUnsupportedMediaType:
      return "UNSUPPORTED_MEDIA_TYPE";
    case ErrorCode::kRangeNotSatisfiable:
      return "RANGE_NOT_SATISFIABLE";
    case ErrorCode::kUnprocessable:
      return "UNPROCESSABLE";
    case ErrorCode::kRateLimited:
      return "RATE_LIMITED";
    case ErrorCode::kInternal:
      return "INTERNAL_ERROR";
    case ErrorCode::kBackend:
      return "BACKEND_ERROR";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kBackendTimeout:
      return "BACKEND_TIMEOUT";
    case ErrorCode::kNotAnInteger:
      return "NOT_AN_INTEGER";
    case ErrorCode::kOverflow:
      return "OVERFLOW";
    case ErrorCode::kBadDigest:
      return "BAD_DIGEST";
    case ErrorCode::kSqlError:
    case ErrorCode::kSqlConflict:
    case ErrorCode::kSqlUnavailable:
    case ErrorCode::kSqlTimeout:
      return "SQL_ERROR";
    case ErrorCode::kScriptError:
      return "SCRIPT_ERROR";
    case ErrorCode::kScriptTimeout:
      return "SCRIPT_TIMEOUT";
    case ErrorCode::kScriptMemory:
      return "SCRIPT_MEMORY";
  }
  return "INTERNAL_ERROR";
}

}  // namespace mikcar
