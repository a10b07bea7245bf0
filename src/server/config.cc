#include "server/config.h"

#include <toml++/toml.h>

#include <algorithm>

#include "http/auth.h"

namespace mikcar::server {
namespace {

// Settings that belong to one service's table, not to the top level.
const std::map<std::string, std::vector<std::string>>& ServiceOptions() {
  static const std::map<std::string, std::vector<std::string>> options{
      {"storage", {"max_object_size", "presign_secret"}}};
  return options;
}

// toml++ quotes what it could not parse. A quoted run longer than a piece of syntax may be a
// secret (a token without its quotes), and errors are logged: it becomes '…'.
std::string RedactQuoted(std::string_view in) {
  std::string out;
  size_t i = 0;
  for (;;) {
    size_t open = in.find('\'', i);
    size_t close = open == std::string_view::npos ? open : in.find('\'', open + 1);
    if (close == std::string_view::npos) return out.append(in.substr(i));
    std::string_view inner = in.substr(open + 1, close - open - 1);
    out.append(in.substr(i, open + 1 - i)).append(inner.size() > 3 ? "…" : inner).append("'");
    i = close + 1;
  }
}

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  std::string Where(const toml::node& node) const {
    return path_ + ":" + std::to_string(node.source().begin.line);
  }
  tl::unexpected<Error> Bad(const toml::node& node, const std::string& what) const {
    return Fail(ErrorCode::kBadRequest, Where(node) + ": " + what);
  }

  // A scalar, or an array of strings joined with ',' (as --cors-origins takes them).
  Result<std::string> FlagText(const std::string& key, const toml::node& node) const {
    if (auto s = node.value_exact<std::string>()) return *s;
    if (auto i = node.value_exact<int64_t>()) return std::to_string(*i);
    if (auto b = node.value_exact<bool>()) return std::string(*b ? "true" : "false");
    if (node.is_array()) {
      auto items = Strings(key, node);
      if (!items) return Fail(items.error());
      std::string joined;
      for (const std::string& item : *items) joined += (joined.empty() ? "" : ",") + item;
      return joined;
    }
    return Bad(node, key + ": expected a string, a number, true/false or a list of strings");
  }

  Result<std::vector<std::string>> Strings(const std::string& key, const toml::node& node) const {
    const toml::array* list = node.as_array();
    if (!list) return Bad(node, key + ": expected a list of strings, e.g. [\"a\", \"b\"]");
    std::vector<std::string> out;
    for (const toml::node& item : *list) {
      auto s = item.value_exact<std::string>();
      if (!s) return Bad(item, key + ": expected a list of strings, e.g. [\"a\", \"b\"]");
      out.push_back(*s);
    }
    return out;
  }

  Result<std::string> String(const std::string& key, const toml::node& node) const {
    auto s = node.value_exact<std::string>();
    if (!s) return Bad(node, key + ": expected a string");
    return *s;
  }

  Result<ScopedToken> Token(size_t index, const toml::node& node) const {
    const std::string at = "tokens[" + std::to_string(index) + "]";
    const toml::table* table = node.as_table();
    if (!table) return Bad(node, at + ": expected a table [[tokens]]");
    ScopedToken token;
    token.scope.name = at;
    bool has_services = false;
    for (const auto& [raw_key, value] : *table) {
      const std::string key(raw_key.str());
      const std::string field = at + "." + key;
      if (key == "name") {
        auto s = String(field, value);
        if (!s || s->empty()) return Bad(value, field + ": expected a non-empty string");
        token.scope.name = *s;
      } else if (key == "token" || key == "token_sha256") {
        auto s = String(field, value);
        if (!s) return Fail(s.error());
        (key == "token" ? token.token : token.token_sha256) = *s;
      } else if (key == "services" || key == "prefixes") {
        auto list = Strings(field, value);
        if (!list) return Fail(list.error());
        (key == "services" ? token.scope.services : token.scope.prefixes) = *list;
        has_services = has_services || key == "services";
      } else if (key == "read_only") {
        auto b = value.value_exact<bool>();
        if (!b) return Bad(value, field + ": expected true or false");
        token.scope.read_only = *b;
      } else {
        return Bad(value, field +
                              ": unknown key; expected name, token or token_sha256, "
                              "services, prefixes, read_only");
      }
    }
    if (!has_services) return Bad(node, at + ": expected services = [\"kv\", …]");
    return token;
  }

 private:
  std::string path_;
};

}  // namespace

Result<ConfigFile> ReadConfigFile(const std::string& path,
                                  const std::vector<std::string>& services) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::string description = RedactQuoted(e.description());
    std::string line =
        e.source().begin.line ? ":" + std::to_string(e.source().begin.line) : std::string();
    return Fail(ErrorCode::kBadRequest,
                path + line + ": " + description + "; expected a readable TOML file");
  }
  Reader reader(path);
  ConfigFile config;
  for (const auto& [raw_key, node] : root) {
    const std::string key(raw_key.str());
    if (key.find('-') != std::string::npos)
      return reader.Bad(node, key + ": unknown key; settings use _ where their flags use -");
    bool is_service = std::find(services.begin(), services.end(), key) != services.end();
    if (key == "tokens") {
      const toml::array* list = node.as_array();
      if (!list) return reader.Bad(node, "tokens: expected [[tokens]] tables");
      for (size_t i = 0; i < list->size(); ++i) {
        auto token = reader.Token(i, *list->get(i));
        if (!token) return Fail(token.error());
        config.tokens.push_back(std::move(*token));
      }
    } else if (key == "services") {
      auto list = reader.Strings(key, node);
      if (!list) return Fail(list.error());
      for (const std::string& name : *list) {
        if (std::find(services.begin(), services.end(), name) == services.end()) {
          std::string known;
          for (const auto& s : services) known += (known.empty() ? "" : ", ") + s;
          return reader.Bad(node,
                            "services: unknown service '" + name + "'; expected some of " + known);
        }
      }
      config.services = std::move(*list);
      config.services_where = reader.Where(node);
    } else if (key == "auth_token") {
      auto token = reader.String(key, node);
      if (!token) return Fail(token.error());
      config.auth_token = std::move(*token);
    } else if (is_service) {
      const toml::table* table = node.as_table();
      if (!table)
        return reader.Bad(node, key + ": expected a table [" + key + "] with url = \"…\"");
      auto own = ServiceOptions().find(key);
      for (const auto& [raw_option, value] : *table) {
        const std::string option(raw_option.str());
        const std::string field = key + "." + option;
        if (option == "url") {
          auto url = reader.String(field, value);
          if (!url) return Fail(url.error());
          config.urls[key] = {std::move(*url), reader.Where(value)};
          continue;
        }
        if (own == ServiceOptions().end() ||
            std::find(own->second.begin(), own->second.end(), option) == own->second.end()) {
          std::string expected = "url";
          if (own != ServiceOptions().end()) {
            for (const auto& o : own->second) expected += ", " + o;
          }
          return reader.Bad(value, field + ": unknown key; expected " + expected);
        }
        auto text = reader.FlagText(field, value);
        if (!text) return Fail(text.error());
        config.settings.push_back({option, std::move(*text), reader.Where(value)});
      }
    } else {
      for (const auto& [service, options] : ServiceOptions()) {
        if (std::find(options.begin(), options.end(), key) != options.end())
          return reader.Bad(node, key + ": belongs in the [" + service + "] table");
      }
      if (node.is_table()) return reader.Bad(node, key + ": unknown table");
      auto text = reader.FlagText(key, node);
      if (!text) return Fail(text.error());
      config.settings.push_back({key, std::move(*text), reader.Where(node)});
    }
  }
  // What only the whole set shows (a token repeated), checked as the server will.
  if (auto checked = http::TokenAuth::Create(config.auth_token, config.tokens); !checked)
    return Fail(ErrorCode::kBadRequest, path + ": " + checked.error().message);
  return config;
}

}  // namespace mikcar::server
