// Standard base64 (RFC 4648 §4, with padding).
#pragma once

#include <string>
#include <string_view>

namespace mikcar {

std::string Base64Encode(std::string_view data);

}  // namespace mikcar
