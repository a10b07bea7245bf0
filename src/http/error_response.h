// The one place where an ErrorCode becomes an HTTP status and the JSON envelope of SPEC §2.2:
// {"error": message, "code": CODE, "status": int, ...extra fields}.
#pragma once

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::http {

int HttpStatus(ErrorCode code);
// mikcar::ErrorResponse (mikcar/http.h) builds the envelope with this status.

}  // namespace mikcar::http
