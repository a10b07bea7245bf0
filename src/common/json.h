// JSON helpers shared by the HTTP core and the services (Boost.JSON).
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar {

// `s` as a JSON string literal, quotes included. Invalid UTF-8 is escaped as \u00XX per byte
// so the output is always valid JSON.
std::string JsonQuote(std::string_view s);

// Parses a JSON request body. Content-Type must be absent, application/json or
// application/*+json (else 415). Malformed JSON → 400 naming `expected`, e.g.
// "expected JSON body {\"keys\": [string]}; got: syntax error at offset 3".
Result<boost::json::value> ParseJsonBody(const Request& request, std::string_view expected,
                                         boost::json::storage_ptr storage = {});

// An UNPROCESSABLE error for well-formed JSON of the wrong shape.
Error WrongShape(std::string_view expected, std::string_view got);

// True if `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

}  // namespace mikcar
