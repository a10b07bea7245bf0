#include <strings.h>

#include "mikcar/http.h"
#include "mikcar/uri.h"

namespace mikcar {

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq), true);
    if (!key || *key != name) continue;
    if (eq == std::string_view::npos) return std::string();
    auto value = PercentDecode(pair.substr(eq + 1), true);
    if (!value) return std::nullopt;
    return std::move(*value);
  }
  return std::nullopt;
}

Result<void> Request::Permit(std::string_view name) const {
  if (scope == nullptr || scope->prefixes.empty()) return {};
  std::string allowed;
  for (const std::string& prefix : scope->prefixes) {
    if (name.starts_with(prefix)) return {};
    allowed += (allowed.empty() ? "'" : ", '") + prefix + "'";
  }
  return Fail(ErrorCode::kForbidden,
              "token '" + scope->name + "' may only use names starting with " + allowed + "; got " +
                  (name.empty() ? std::string("every name") : "'" + std::string(name) + "'"));
}

}  // namespace mikcar
