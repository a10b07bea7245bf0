#include "http/error_response.h"

#include <string>

#include "common/json.h"

namespace mikcar::http {

int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest:
      return 400;
    case ErrorCode::kUnauthorized:
      return 401;
    case ErrorCode::kForbidden:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kMethodNotAllowed:
      return 405;
    case ErrorCode::kTimeout:
      return 408;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kPreconditionFailed:
      return 412;
    case ErrorCode::kPayloadTooLarge:
      return 413;
    case ErrorCode::kUnsupportedMediaType:
      return 415;
    case ErrorCode::kRangeNotSatisfiable:
      return 416;
    case ErrorCode::kUnprocessable:
      return 422;
    case ErrorCode::kRateLimited:
      return 429;
    case ErrorCode::kInternal:
      return 500;
    case ErrorCode::kBackend:
      return 502;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kBackendTimeout:
      return 504;
    case ErrorCode::kNotAnInteger:
      return 409;
    case ErrorCode::kOverflow:
      return 409;
    case ErrorCode::kBadDigest:
      return 400;
    case ErrorCode::kSqlError:
      return 400;
    case ErrorCode::kSqlConflict:
      return 409;
    case ErrorCode::kSqlUnavailable:
      return 503;
    case ErrorCode::kSqlTimeout:
      return 504;
    case ErrorCode::kScriptError:
      return 400;
    case ErrorCode::kScriptTimeout:
      return 408;
    case ErrorCode::kScriptMemory:
      return 413;
  }
  return 500;
}

}  // namespace mikcar::http

namespace mikcar {

Response ErrorResponse(const Error& error) {
  int status = http::HttpStatus(error.code);
  std::string body = "{\"error\":";
  body.append(JsonQuote(error.message)).append(",\"code\":\"").append(ErrorCodeName(error.code));
  body.append("\",\"status\":").append(std::to_string(status));
  for (const auto& [name, json] : error.fields) {
    body.append(",").append(JsonQuote(name)).append(":").append(json);
  }
  body.append("}");
  Response response = Response::Json(std::move(body), status);
  if (status == 401) response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

}  // namespace mikcar
