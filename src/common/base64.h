// Standard base64 (RFC 4648 §4, with padding).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mikcar {

std::string Base64Encode(std::string_view data);
// nullopt when `text` is not padded standard base64.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace mikcar
