// The /kv service: parses and validates each request once, calls one KvBackend, shapes the
// response (SPEC §3). Knows nothing about HTTP parsing or concrete backends.
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <mutex>
#include <unordered_map>

#include "common/backend_calls.h"
#include "common/base64.h"
#include "common/json.h"
#include "common/text.h"
#include "common/units.h"
#include "common/watch_hub.h"
#include "kv/glob.h"
#include "kv/kv_rules.h"
#include "kv/register.h"
#include "mikcar/kv/kv.h"

namespace mikcar::embedded {
extern const std::string_view kKvOpenApi;  // src/kv/openapi.json (cmake/embed.cmake)
}  // namespace mikcar::embedded

namespace mikcar {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using kv::KvBackend;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kDefaultKeysLimit = 1000;
constexpr size_t kMaxKeysLimit = 10000;
constexpr size_t kMaxBatchKeys = 10000;
constexpr auto kWatchPoll = std::chrono::milliseconds(250);
constexpr auto kDeadlineMargin = std::chrono::milliseconds(250);
constexpr auto kMaxWatch = std::chrono::hours(1);
constexpr int64_t kMaxTtlSeconds = 100LL * 365 * 24 * 3600;  // 100 years
constexpr size_t kMaxContentTypeBytes = 1024;

Result<void> ValidateKey(std::string_view key) {
  if (key.empty())
    return Fail(ErrorCode::kBadRequest, "key must not be empty; expected 1-1024 bytes of UTF-8");
  if (key.size() > kMaxKeyBytes) {
    return Fail(ErrorCode::kBadRequest,
                "key is " + std::to_string(key.size()) + " bytes; expected 1-1024 bytes of UTF-8");
  }
  if (!IsValidUtf8(key))
    return Fail(ErrorCode::kBadRequest, "key is not valid UTF-8; expected 1-1024 bytes of UTF-8");
  return {};
}

// A key the request names: well-formed, and within the token's scope.
Result<void> CheckKey(const Request& request, std::string_view key) {
  if (auto ok = ValidateKey(key); !ok) return ok;
  return request.Permit(key);
}

// The {key} path parameter, validated.
Result<std::string> KeyParam(const Request& request) {
  std::string key(request.param("key"));
  if (auto ok = CheckKey(request, key); !ok) return Fail(ok.error());
  return key;
}

// An integer query parameter; nullopt if absent.
Result<std::optional<int64_t>> IntParam(const Request& request, std::string_view name,
                                        std::string_view expected) {
  auto raw = request.query_param(name);
  if (!raw) return std::optional<int64_t>();
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(raw->data(), raw->data() + raw->size(), value);
  if (raw->empty() || ec != std::errc() || ptr != raw->data() + raw->size()) {
    return Fail(ErrorCode::kBadRequest,
                std::string(name) + ": expected " + std::string(expected) + "; got '" + *raw + "'");
  }
  return std::optional<int64_t>(value);
}

// A boolean flag: `?nx`, `?nx=1` and `?nx=true` set it; `0`, `false` or no parameter clear it.
Result<bool> FlagParam(const Request& request, std::string_view name) {
  auto v = request.query_param(name);
  if (!v || *v == "0" || *v == "false") return false;
  if (v->empty() || *v == "1" || *v == "true") return true;
  return Fail(ErrorCode::kBadRequest,
              std::string(name) + ": expected 1, true, 0 or false; got '" + *v + "'");
}

// A route that cannot honour a condition refuses it rather than writing unconditionally: a
// client that sends one relies on it.
Result<void> Unconditional(const Request& request, std::string_view route) {
  if (!request.header("If-Match").empty()) {
    return Fail(ErrorCode::kBadRequest, std::string(route) +
                                            " does not take If-Match; expected it on "
                                            "/kv/set/{key} or /kv/del/{key} only");
  }
  if (!request.header("If-None-Match").empty()) {
    return Fail(ErrorCode::kBadRequest, std::string(route) +
                                            " does not take If-None-Match; expected it on "
                                            "/kv/set/{key} only");
  }
  for (std::string_view flag : {"nx", "xx", "keepttl"}) {
    if (request.query_param(flag)) {
      return Fail(ErrorCode::kBadRequest, std::string(route) + " does not take ?" +
                                              std::string(flag) +
                                              "; expected it on /kv/set/{key} only");
    }
  }
  return {};
}

// The TTL of ?ttl=<seconds>: 0 when absent; 0, negative or over 100 years → 400.
Result<int64_t> TtlParam(const Request& request) {
  static const std::string kExpected =
      "a positive number of seconds, at most 100 years (" + std::to_string(kMaxTtlSeconds) + ")";
  auto ttl = IntParam(request, "ttl", kExpected);
  if (!ttl) return Fail(ttl.error());
  if (!*ttl) return int64_t{0};
  if (**ttl <= 0 || **ttl > kMaxTtlSeconds) {
    return Fail(ErrorCode::kBadRequest,
                "ttl: expected " + kExpected + "; got " + std::to_string(**ttl));
  }
  return **ttl * 1000;
}

// A version as sent back by a client: `"42"`, `W/"42"` or `42`.
std::optional<uint64_t> ParseVersion(std::string_view v) {
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  uint64_t version = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return version;
}

// `If-Match: "<version>"` (or a bare number; `*` means any existing key → version check skipped
// and handled as XX by the caller). The comparison is strong (RFC 9110 §13.1.1): a weak ETag
// never matches.
Result<std::optional<uint64_t>> IfMatch(const Request& request, bool& any) {
  std::string_view v = TrimBlanks(request.header("if-match"));
  any = false;
  if (v.empty()) return std::optional<uint64_t>();
  if (v == "*") {
    any = true;
    return std::optional<uint64_t>();
  }
  auto version = ParseVersion(v);
  if (!version) {
    return Fail(ErrorCode::kBadRequest,
                "If-Match: expected one ETag returned by mikcar, e.g. \"42\", or *");
  }
  if (v.starts_with("W/")) {
    return Fail(ErrorCode::kPreconditionFailed,
                "If-Match: a weak ETag never matches (strong comparison); send \"" +
                    std::to_string(*version) + "\"");
  }
  return version;
}

// Whether `If-None-Match` (`*` or a list of ETags, weak or strong) names `version`; a GET
// compares weakly (RFC 9110 §13.1.2).
bool NoneMatch(std::string_view header, uint64_t version) {
  if (TrimBlanks(header) == "*") return true;
  while (!header.empty()) {
    size_t comma = header.find(',');
    auto tag = ParseVersion(TrimBlanks(header.substr(0, comma)));
    if (tag && *tag == version) return true;
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
  }
  return false;
}

std::string ETag(uint64_t version) { return "\"" + std::to_string(version) + "\""; }

std::string ValueJson(const std::string& value) {
  if (IsValidUtf8(value)) return JsonQuote(value);
  return "{\"base64\":\"" + Base64Encode(value) + "\"}";
}

Result<std::vector<std::string>> KeysArray(const Request& request, std::string_view expected) {
  auto body = ParseJsonBody(request, expected);
  if (!body) return Fail(body.error());
  const json::object* obj = body->if_object();
  if (!obj) return Fail(WrongShape(expected, "not an object"));
  auto it = obj->find("keys");
  if (it == obj->end()) return Fail(WrongShape(expected, "missing field keys"));
  const json::array* arr = it->value().if_array();
  if (!arr) return Fail(WrongShape(expected, "keys is not an array"));
  if (arr->size() > kMaxBatchKeys) {
    return Fail(ErrorCode::kPayloadTooLarge, "keys has " + std::to_string(arr->size()) +
                                                 " entries; at most " +
                                                 std::to_string(kMaxBatchKeys) + " per batch");
  }
  std::vector<std::string> keys;
  keys.reserve(arr->size());
  for (const auto& k : *arr) {
    const json::string* s = k.if_string();
    if (!s) return Fail(WrongShape(expected, "keys contains a non-string"));
    if (auto ok = CheckKey(request, *s); !ok) return Fail(ok.error());
    keys.emplace_back(s->data(), s->size());
  }
  return keys;
}

class KvSidecar final : public Sidecar {
 public:
  explicit KvSidecar(std::unique_ptr<KvBackend> backend) : backend_(std::move(backend)) {}

  std::string name() const override { return "kv"; }
  std::string backend_name() const override { return backend_->name(); }
  std::string_view OpenApi() const override { return embedded::kKvOpenApi; }
  asio::awaitable<void> Collect(MetricsSink& sink) override {
    calls_.Collect(sink);
    co_return;
  }
  asio::awaitable<Result<void>> Ready() override { co_return co_await backend_->Ping(); }
  void Drain() override {
    draining_ = true;
    watch_.NotifyAll();
  }
  void Shutdown() override { backend_->Close(); }

  std::vector<Route> Routes() override {
    auto bind = [this](auto method) { return BindHandler(this, method); };
    return {
        ReadOnly({"GET", "/get/{key}", bind(&KvSidecar::Get)}),
        ReadOnly({"POST", "/get/batch", bind(&KvSidecar::GetBatch)}),
        {"POST", "/set/{key}", bind(&KvSidecar::Set)},
        {"POST", "/set/batch", bind(&KvSidecar::SetBatch)},
        {"DELETE", "/del/{key}", bind(&KvSidecar::Delete)},
        {"POST", "/del/batch", bind(&KvSidecar::DeleteBatch)},
        ReadOnly({"GET", "/keys/{pattern}", bind(&KvSidecar::Keys)}),
        {"POST", "/increment/{key}", bind(&KvSidecar::Increment)},
        ReadOnly({"GET", "/exists/{key}", bind(&KvSidecar::Exists)}),
        ReadOnly({"GET", "/ttl/{key}", bind(&KvSidecar::Ttl)}),
        {"POST", "/expire/{key}", bind(&KvSidecar::Expire)},
        {"POST", "/persist/{key}", bind(&KvSidecar::Persist)},
        ReadOnly({"GET", "/watch/{key}", bind(&KvSidecar::Watch)}),
    };
  }

 private:
  asio::awaitable<Result<Response>> Get(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    auto entry = co_await calls_.Time("get", backend_->Get(key));
    if (!entry) co_return Fail(entry.error());
    co_return ValueResponse(request, std::move(*entry));
  }

  static Response ValueResponse(const Request& request, kv::Entry entry) {
    std::string etag = ETag(entry.version);
    if (std::string_view inm = request.header("if-none-match");
        !inm.empty() && NoneMatch(inm, entry.version)) {
      Response r = Response::Empty(304);
      r.headers.emplace_back("ETag", etag);
      return r;
    }
    Response r = Response::Bytes(std::move(entry.value), entry.content_type.empty()
                                                             ? "text/plain; charset=utf-8"
                                                             : std::move(entry.content_type));
    r.headers.emplace_back("ETag", std::move(etag));
    return r;
  }

  asio::awaitable<Result<Response>> GetBatch(Request& request) {
    auto keys = KeysArray(request, R"({"keys": [string]})");
    if (!keys) co_return Fail(keys.error());
    auto values = co_await calls_.Time("get_many", backend_->GetMany(*keys));
    if (!values) co_return Fail(values.error());
    std::string body = "{";
    std::unordered_map<std::string_view, bool> seen;
    for (size_t i = 0; i < keys->size(); ++i) {
      if (!seen.emplace((*keys)[i], true).second) continue;
      if (body.size() > 1) body += ",";
      body +=
          JsonQuote((*keys)[i]) + ":" + ((*values)[i] ? ValueJson((*values)[i]->value) : "null");
    }
    body += "}";
    co_return Response::Json(std::move(body));
  }

  asio::awaitable<Result<Response>> Set(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    auto ttl = TtlParam(request);
    if (!ttl) co_return Fail(ttl.error());
    auto keep_ttl = FlagParam(request, "keepttl");
    if (!keep_ttl) co_return Fail(keep_ttl.error());
    auto nx = FlagParam(request, "nx");
    if (!nx) co_return Fail(nx.error());
    auto xx = FlagParam(request, "xx");
    if (!xx) co_return Fail(xx.error());
    kv::SetOptions options;
    options.ttl_ms = *ttl;
    options.keep_ttl = *keep_ttl;
    options.only_if_absent = *nx;
    options.only_if_present = *xx;
    // `If-None-Match: *` is HTTP's create-only condition: the same as ?nx.
    if (std::string_view inm = TrimBlanks(request.header("if-none-match")); !inm.empty()) {
      if (inm != "*") {
        co_return Fail(
            ErrorCode::kBadRequest,
            "If-None-Match: expected * (create only) on a set; got '" + std::string(inm) + "'");
      }
      options.only_if_absent = true;
    }
    bool if_match_given = !TrimBlanks(request.header("if-match")).empty();
    if (options.only_if_absent && (options.only_if_present || if_match_given)) {
      co_return Fail(ErrorCode::kBadRequest,
                     "nx (or If-None-Match: *) excludes xx and If-Match: a key cannot be absent "
                     "and present; expected at most one of them");
    }
    if (options.keep_ttl && options.ttl_ms > 0) {
      co_return Fail(ErrorCode::kBadRequest,
                     "keepttl and ttl exclude each other; expected at most one");
    }
    bool any = false;
    auto if_match = IfMatch(request, any);
    if (!if_match) co_return Fail(if_match.error());
    options.if_version = *if_match;
    if (any) options.only_if_present = true;
    options.content_type = std::string(request.header("content-type"));
    if (options.content_type.size() > kMaxContentTypeBytes) {
      co_return Fail(ErrorCode::kBadRequest, "Content-Type is " +
                                                 std::to_string(options.content_type.size()) +
                                                 " bytes; expected at most 1024");
    }
    auto version = co_await calls_.Time(
        "set", backend_->Set(key, std::move(request.body), std::move(options)));
    if (!version) co_return Fail(version.error());
    watch_.Notify(key);
    Response r = Response::Json("{\"key\":" + JsonQuote(key) + ",\"status\":\"ok\"}");
    r.headers.emplace_back("ETag", ETag(*version));
    co_return r;
  }

  asio::awaitable<Result<Response>> SetBatch(Request& request) {
    constexpr std::string_view kExpected = R"({"<key>": "<string value>", ...})";
    if (auto ok = Unconditional(request, "set/batch"); !ok) co_return Fail(ok.error());
    auto ttl = TtlParam(request);
    if (!ttl) co_return Fail(ttl.error());
    auto body = ParseJsonBody(request, kExpected);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
    if (obj->size() > kMaxBatchKeys) {
      co_return Fail(ErrorCode::kPayloadTooLarge, "batch has " + std::to_string(obj->size()) +
                                                      " keys; at most " +
                                                      std::to_string(kMaxBatchKeys));
    }
    std::vector<std::pair<std::string, std::string>> items;
    items.reserve(obj->size());
    for (const auto& kv : *obj) {
      std::string key(kv.key());
      if (auto ok = CheckKey(request, key); !ok) co_return Fail(ok.error());
      const json::string* s = kv.value().if_string();
      if (!s)
        co_return Fail(WrongShape(kExpected, "value of " + JsonQuote(key) + " is not a string"));
      items.emplace_back(std::move(key), std::string(s->data(), s->size()));
    }
    size_t count = items.size();
    std::vector<std::string> keys;
    for (const auto& item : items) keys.push_back(item.first);
    auto done = co_await calls_.Time("set_many", backend_->SetMany(std::move(items), *ttl));
    if (!done) co_return Fail(done.error());
    for (const auto& key : keys) watch_.Notify(key);
    co_return Response::Json("{\"count\":" + std::to_string(count) + ",\"status\":\"ok\"}");
  }

  asio::awaitable<Result<Response>> Delete(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    if (!request.header("if-none-match").empty()) {
      co_return Fail(ErrorCode::kBadRequest,
                     "del does not take If-None-Match; expected If-Match for a conditional delete");
    }
    bool any = false;
    auto if_match = IfMatch(request, any);
    if (!if_match) co_return Fail(if_match.error());
    if (any) {  // If-Match: * → only when the key exists
      auto version = co_await calls_.Time("version", backend_->Version(key));
      if (!version) co_return Fail(version.error());
      if (*version == 0)
        co_return Fail(ErrorCode::kPreconditionFailed, "key does not exist (If-Match: *)");
    }
    auto deleted = co_await calls_.Time("delete", backend_->Delete(key, *if_match));
    if (!deleted) co_return Fail(deleted.error());
    if (*deleted) watch_.Notify(key);
    co_return Response::Json(std::string("{\"deleted\":") + (*deleted ? "1" : "0") +
                             ",\"status\":\"ok\"}");
  }

  asio::awaitable<Result<Response>> DeleteBatch(Request& request) {
    if (auto ok = Unconditional(request, "del/batch"); !ok) co_return Fail(ok.error());
    auto keys = KeysArray(request, R"({"keys": [string]})");
    if (!keys) co_return Fail(keys.error());
    auto deleted = co_await calls_.Time("delete_many", backend_->DeleteMany(*keys));
    if (!deleted) co_return Fail(deleted.error());
    for (const auto& key : *keys) watch_.Notify(key);
    co_return Response::Json("{\"deleted\":" + std::to_string(*deleted) + ",\"status\":\"ok\"}");
  }

  asio::awaitable<Result<Response>> Keys(Request& request) {
    std::string pattern(request.param("pattern"));
    if (pattern.empty() || pattern.size() > kMaxKeyBytes) {
      co_return Fail(ErrorCode::kBadRequest,
                     "pattern: expected a glob of 1-1024 bytes, e.g. user:*");
    }
    // A scoped token lists only its own keys: every match starts with the glob's literal prefix.
    if (auto ok = request.Permit(kv::GlobLiteralPrefix(pattern)); !ok) co_return Fail(ok.error());
    auto limit = IntParam(request, "limit", "a number 1-10000");
    if (!limit) co_return Fail(limit.error());
    int64_t n = limit->value_or(kDefaultKeysLimit);
    if (n <= 0) co_return Fail(ErrorCode::kBadRequest, "limit: expected a number 1-10000");
    std::string cursor;
    if (auto c = request.query_param("cursor"); c && !c->empty()) {
      auto decoded = kv::DecodeCursor(*c);
      if (!decoded) co_return Fail(decoded.error());
      cursor = std::move(*decoded);
    }
    auto page = co_await calls_.Time(
        "keys", backend_->Keys(pattern, cursor, std::min<size_t>(n, kMaxKeysLimit)));
    if (!page) co_return Fail(page.error());
    std::string body = "{\"keys\":[";
    for (size_t i = 0; i < page->keys.size(); ++i) {
      if (i) body += ",";
      body += JsonQuote(page->keys[i]);
    }
    body += "],\"cursor\":" + (page->cursor ? JsonQuote(*page->cursor) : "null") + "}";
    co_return Response::Json(std::move(body));
  }

  asio::awaitable<Result<Response>> Increment(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    if (auto ok = Unconditional(request, "increment"); !ok) co_return Fail(ok.error());
    auto by = IntParam(request, "by", "a 64-bit integer");
    if (!by) co_return Fail(by.error());
    auto value = co_await calls_.Time("increment", backend_->Increment(key, by->value_or(1)));
    if (!value) co_return Fail(value.error());
    watch_.Notify(key);
    co_return Response::Json("{\"value\":" + std::to_string(*value) + "}");
  }

  asio::awaitable<Result<Response>> Exists(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    auto version = co_await calls_.Time("version", backend_->Version(key));
    if (!version) co_return Fail(version.error());
    co_return Response::Json(*version ? R"({"exists":true})" : R"({"exists":false})");
  }

  asio::awaitable<Result<Response>> Ttl(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    auto expires = co_await calls_.Time("expires_at", backend_->ExpiresAt(key));
    if (!expires) co_return Fail(expires.error());
    int64_t ttl = -2;
    if (*expires) {
      if (**expires == 0) {
        ttl = -1;
      } else {
        int64_t left = **expires - kv::NowMs();
        ttl = left <= 0 ? -2 : (left + 999) / 1000;  // whole seconds, rounding up
      }
    }
    co_return Response::Json("{\"ttl\":" + std::to_string(ttl) + "}");
  }

  asio::awaitable<Result<Response>> Expire(Request& request) {
    constexpr std::string_view kExpected = R"({"seconds": integer})";
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    if (auto ok = Unconditional(request, "expire"); !ok) co_return Fail(ok.error());
    auto body = ParseJsonBody(request, kExpected);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
    auto it = obj->find("seconds");
    if (it == obj->end()) co_return Fail(WrongShape(kExpected, "missing field seconds"));
    if (!it->value().is_int64() && !it->value().is_uint64()) {
      co_return Fail(WrongShape(kExpected, "seconds is not an integer"));
    }
    int64_t seconds = it->value().is_int64() ? it->value().get_int64() : INT64_MAX;
    if (seconds > kMaxTtlSeconds) {
      co_return Fail(ErrorCode::kBadRequest, "seconds: expected at most 100 years (" +
                                                 std::to_string(kMaxTtlSeconds) + ")");
    }
    // seconds <= 0 deletes the key; clamp before scaling so a huge negative cannot overflow.
    auto found =
        co_await calls_.Time("expire", backend_->Expire(key, seconds <= 0 ? 0 : seconds * 1000));
    if (!found) co_return Fail(found.error());
    if (*found) watch_.Notify(key);
    co_return Response::Json(*found ? R"({"status":"ok"})" : R"({"status":"key_not_found"})");
  }

  asio::awaitable<Result<Response>> Persist(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    if (auto ok = Unconditional(request, "persist"); !ok) co_return Fail(ok.error());
    auto found = co_await calls_.Time("persist", backend_->Persist(key));
    if (!found) co_return Fail(found.error());
    if (*found) watch_.Notify(key);
    co_return Response::Json(*found ? R"({"status":"ok"})" : R"({"status":"key_not_found"})");
  }

  // Long-poll until the key's version differs from ?version= (0 = absent), answering before
  // the request deadline: 200 with the value, or 304 when nothing changed.
  asio::awaitable<Result<Response>> Watch(Request& request) {
    auto checked = KeyParam(request);
    if (!checked) co_return Fail(checked.error());
    std::string key = std::move(*checked);
    uint64_t known = 0;
    if (auto v = request.query_param("version"); v && !v->empty()) {
      auto parsed = ParseVersion(*v);
      if (!parsed) {
        co_return Fail(ErrorCode::kBadRequest, "version: expected a version from an ETag, e.g. 42");
      }
      known = *parsed;
    }
    auto timeout = DurationParam(request, "timeout", std::chrono::seconds(30), kMaxWatch);
    if (!timeout) co_return Fail(timeout.error());
    auto until = std::min(Clock::now() + *timeout, request.deadline - kDeadlineMargin);

    // Writers elsewhere (another sidecar on the same Redis) are seen by the periodic re-check.
    auto waiter = std::make_shared<WatchHub::Waiter>(co_await asio::this_coro::executor);
    WatchHub::Registration registration(watch_, key, waiter);
    for (;;) {
      waiter->notified = false;
      auto version = co_await calls_.Time("version", backend_->Version(key));
      if (!version) co_return Fail(version.error());
      if (*version != known) {
        if (*version == 0)
          co_return Fail(ErrorCode::kNotFound, "key not found (deleted or expired while watched)");
        auto entry = co_await calls_.Time("get", backend_->Get(key));
        if (!entry) {
          if (entry.error().code == ErrorCode::kNotFound) continue;
          co_return Fail(entry.error());
        }
        co_return ValueResponse(Request{}, std::move(*entry));
      }
      auto now = Clock::now();
      if (now >= until || draining_) {  // shutting down: answer "unchanged" now
        Response r = Response::Empty(304);
        r.headers.emplace_back("ETag", ETag(known));
        co_return r;
      }
      if (waiter->notified) continue;  // written while we were reading the version
      waiter->timer.expires_at(std::min(until, now + kWatchPoll));
      co_await waiter->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  std::unique_ptr<KvBackend> backend_;
  BackendCalls calls_{"kv",
                      backend_->name(),
                      {"get", "get_many", "set", "set_many", "version", "delete", "delete_many",
                       "keys", "increment", "expires_at", "expire", "persist"}};
  WatchHub watch_;
  std::atomic<bool> draining_{false};
};

}  // namespace

BackendRegistry<kv::KvBackend>& KvService::Registry() {
  return ServiceRegistry(&kv::RegisterBuiltinBackends);
}

Result<std::unique_ptr<Sidecar>> KvService::FromUrl(std::string_view url) {
  auto backend = Registry().Create(url);
  if (!backend) return Fail(backend.error());
  return FromBackend(std::move(*backend));
}

std::unique_ptr<Sidecar> KvService::FromBackend(std::unique_ptr<kv::KvBackend> backend) {
  return std::make_unique<KvSidecar>(std::move(backend));
}

}  // namespace mikcar
