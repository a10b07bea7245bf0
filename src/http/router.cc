#include "http/router.h"

#include <algorithm>
#include <boost/container/small_vector.hpp>

#include "mikcar/uri.h"

namespace mikcar::http {

struct Router::Node {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> literals;
  std::unique_ptr<Node> param;  // {name}
  std::string param_name;
  std::unique_ptr<Node> rest;  // {*name}, always a leaf
  std::string rest_name;
  std::map<std::string, RouteEntry, std::less<>> methods;
};

namespace {

// Inline for the paths mikcar serves, so matching a request allocates nothing.
using Segments = boost::container::small_vector<std::string_view, 8>;

Segments Split(std::string_view path) {
  // "/a/b" → {"a","b"}; "/" → {""}; "/a/" → {"a",""}
  Segments out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool IsParam(std::string_view seg) {
  return seg.size() >= 3 && seg.front() == '{' && seg.back() == '}';
}

}  // namespace

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;

Result<void> Router::Add(std::string_view method, std::string_view pattern, RouteEntry entry) {
  if (pattern.empty() || pattern.front() != '/') {
    return Fail(ErrorCode::kConflict, "route pattern must start with '/': " + std::string(pattern));
  }
  Node* node = root_.get();
  auto segments = Split(pattern);
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view seg = segments[i];
    if (IsParam(seg) && seg[1] == '*') {
      if (i + 1 != segments.size()) {
        return Fail(ErrorCode::kConflict,
                    "{*rest} must be the last segment: " + std::string(pattern));
      }
      std::string name(seg.substr(2, seg.size() - 3));
      if (node->rest && node->rest_name != name) {
        return Fail(ErrorCode::kConflict, "conflicting parameter names at " + std::string(pattern));
      }
      if (!node->rest) node->rest = std::make_unique<Node>();
      node->rest_name = std::move(name);
      node = node->rest.get();
    } else if (IsParam(seg)) {
      std::string name(seg.substr(1, seg.size() - 2));
      if (node->param && node->param_name != name) {
        return Fail(ErrorCode::kConflict, "conflicting parameter names at " + std::string(pattern));
      }
      if (!node->param) node->param = std::make_unique<Node>();
      node->param_name = std::move(name);
      node = node->param.get();
    } else {
      auto it = node->literals.find(seg);
      if (it == node->literals.end()) {
        it = node->literals.emplace(std::string(seg), std::make_unique<Node>()).first;
      }
      node = it->second.get();
    }
  }
  if (!node->methods.emplace(std::string(method), std::move(entry)).second) {
    return Fail(ErrorCode::kConflict,
                "duplicate route " + std::string(method) + " " + std::string(pattern));
  }
  return {};
}

namespace {

struct Captured {
  const std::string* name;
  std::string_view raw;
};

}  // namespace

Result<RouteMatch> Router::Match(std::string_view method, std::string_view path,
                                 std::string* allow) const {
  if (path.empty() || path.front() != '/') {
    return Fail(ErrorCode::kNotFound, "no route for " + std::string(path));
  }
  auto segments = Split(path);
  boost::container::small_vector<Captured, 4> captured;
  const Node* found = nullptr;
  // Depth-first search, literal before {param} before {*rest}. The first node that has any
  // method wins; its methods decide between a match and 405.
  auto search = [&](auto&& self, const Node* node, size_t i) -> bool {
    if (i == segments.size()) {
      if (node->methods.empty()) return false;
      found = node;
      return true;
    }
    std::string_view seg = segments[i];
    if (auto it = node->literals.find(seg); it != node->literals.end()) {
      if (self(self, it->second.get(), i + 1)) return true;
    }
    if (node->param) {
      captured.push_back({&node->param_name, seg});
      if (self(self, node->param.get(), i + 1)) return true;
      captured.pop_back();
    }
    if (node->rest && !node->rest->methods.empty()) {
      // The raw remainder from this segment on.
      const char* begin = seg.data();
      const char* end = path.data() + path.size();
      captured.push_back(
          {&node->rest_name, std::string_view(begin, static_cast<size_t>(end - begin))});
      found = node->rest.get();
      return true;
    }
    return false;
  };
  if (!search(search, root_.get(), 0)) {
    return Fail(ErrorCode::kNotFound, "no route for " + std::string(path));
  }
  auto it = found->methods.find(method);
  if (it == found->methods.end() && method == "HEAD") it = found->methods.find("GET");
  if (it == found->methods.end()) {
    if (allow != nullptr) {
      allow->clear();
      for (const auto& [m, _] : found->methods) {
        if (!allow->empty()) *allow += ", ";
        *allow += m;
        if (m == "GET" && !found->methods.contains("HEAD")) *allow += ", HEAD";
      }
    }
    return Fail(ErrorCode::kMethodNotAllowed, "method " + std::string(method) +
                                                  " not allowed here; expected one of: " +
                                                  (allow != nullptr ? *allow : std::string()));
  }
  RouteMatch match;
  match.route = &it->second;
  match.params.reserve(captured.size());
  for (const auto& c : captured) {
    auto decoded = PercentDecode(c.raw);
    if (!decoded) {
      return Fail(ErrorCode::kBadRequest,
                  "path parameter '" + *c.name + "': " + decoded.error().message);
    }
    match.params.emplace_back(*c.name, std::move(*decoded));
  }
  return match;
}

}  // namespace mikcar::http
