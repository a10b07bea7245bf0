// The /storage service: parses and validates each request once, calls one StorageBackend, shapes
// the response (SPEC §4). Knows nothing about HTTP parsing or concrete backends.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <charconv>

#include "common/backend_calls.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/json.h"
#include "mikcar/storage/storage.h"
#include "storage/object_rules.h"
#include "storage/presign.h"
#include "storage/register.h"

namespace mikcar::embedded {
extern const std::string_view kStorageOpenApi;  // src/storage/openapi.json (cmake/embed.cmake)
}  // namespace mikcar::embedded

namespace mikcar {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using storage::ObjectInfo;
using storage::StorageBackend;

constexpr size_t kMaxListLimit = 1000;
constexpr size_t kMaxBatchPaths = 1000;
constexpr int64_t kDefaultPresignSeconds = 3600;
constexpr int64_t kMaxPresignSeconds = 7 * 24 * 3600;
constexpr std::string_view kMetaPrefix = "x-meta-";
constexpr size_t kMaxMetadataBytes = 2048;

// The {path} parameter, validated by the rules of SPEC §4.3 and within the token's scope.
Result<std::string> PathParam(const Request& request) {
  std::string path(request.param("path"));
  if (auto ok = storage::ValidatePath(path); !ok) return Fail(ok.error());
  if (auto ok = request.Permit(path); !ok) return Fail(ok.error());
  return path;
}

std::string_view ToLower(std::string& s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ETag, dates, type, length-independent headers of an object.
void AddObjectHeaders(const ObjectInfo& info, Response& response) {
  response.headers.emplace_back("ETag", info.etag);
  response.headers.emplace_back("Last-Modified", storage::HttpDate(info.modified));
  response.headers.emplace_back("x-object-size", std::to_string(info.size));
  response.headers.emplace_back("x-last-modified", Rfc3339(info.modified));
  response.headers.emplace_back("Accept-Ranges", "bytes");
  for (const auto& [name, value] : info.metadata) {
    response.headers.emplace_back(std::string(kMetaPrefix) + name, value);
  }
}

std::string ObjectJson(const ObjectInfo& info) {
  return "{\"location\":" + JsonQuote(info.path) + ",\"size\":" + std::to_string(info.size) +
         ",\"last_modified\":" + JsonQuote(Rfc3339(info.modified)) +
         ",\"e_tag\":" + JsonQuote(info.etag) +
         ",\"content_type\":" + JsonQuote(info.content_type) + "}";
}

// Not-modified / precondition answer for a read of `info`, if the request's conditions give one
// (RFC 9110 §13.2.2: If-Match, then If-None-Match, else If-Modified-Since).
std::optional<Result<Response>> ReadConditions(const Request& request, const ObjectInfo& info) {
  std::string_view if_match = request.header("if-match");
  if (!if_match.empty() && !storage::EtagListMatches(if_match, info.etag)) {
    return Fail(ErrorCode::kPreconditionFailed, "If-Match: the object's ETag is " + info.etag +
                                                    "; expected one of " + std::string(if_match));
  }
  bool not_modified = false;
  std::string_view if_none_match = request.header("if-none-match");
  if (!if_none_match.empty()) {
    not_modified = storage::EtagListMatches(if_none_match, info.etag);
  } else if (auto since = storage::ParseHttpDate(request.header("if-modified-since"))) {
    not_modified = std::chrono::floor<std::chrono::seconds>(info.modified) <= *since;
  }
  if (!not_modified) return std::nullopt;
  Response response = Response::Empty(304);
  response.headers.emplace_back("ETag", info.etag);
  response.headers.emplace_back("Last-Modified", storage::HttpDate(info.modified));
  return response;
}

class StorageSidecar final : public Sidecar {
 public:
  StorageSidecar(std::unique_ptr<StorageBackend> backend, StorageOptions options)
      : backend_(std::move(backend)),
        options_(std::move(options)),
        signer_(options_.presign_secret) {}

  std::string name() const override { return "storage"; }
  std::string backend_name() const override { return backend_->name(); }
  std::string_view OpenApi() const override { return embedded::kStorageOpenApi; }
  asio::awaitable<void> Collect(MetricsSink& sink) override {
    calls_.Collect(sink);
    co_return;
  }
  asio::awaitable<Result<void>> Ready() override { co_return co_await backend_->Ready(); }
  void Shutdown() override { backend_->Close(); }

  std::vector<Route> Routes() override {
    auto bind = [this](auto method) { return BindHandler(this, method); };
    Route put{"PUT", "/object/{*path}", bind(&StorageSidecar::Put), Access::kOptional};
    put.streamed_body = true;
    put.body_limit = options_.max_object_size;
    return {
        put,
        ReadOnly({"GET", "/object/{*path}", bind(&StorageSidecar::Get), Access::kOptional}),
        ReadOnly({"HEAD", "/object/{*path}", bind(&StorageSidecar::Get), Access::kOptional}),
        {"DELETE", "/object/{*path}", bind(&StorageSidecar::Delete), Access::kOptional},
        ReadOnly({"GET", "/list", bind(&StorageSidecar::List)}),
        ReadOnly({"GET", "/list/{*prefix}", bind(&StorageSidecar::List)}),
        {"POST", "/copy", bind(&StorageSidecar::Copy)},
        // A read-only token may presign a GET only (checked by the handler).
        ReadOnly({"POST", "/presign/{*path}", bind(&StorageSidecar::Presign)}),
        {"POST", "/delete/batch", bind(&StorageSidecar::DeleteBatch)},
    };
  }

 private:
  // Object routes answer a valid bearer token or a valid presigned URL for this object and
  // method.
  Result<void> Authorize(const Request& request, std::string_view path) const {
    if (request.authenticated) return {};
    if (storage::UrlSigner::IsSigned(request)) return signer_.Verify(request, path);
    return Fail(ErrorCode::kUnauthorized,
                "missing or invalid bearer token; expected 'Authorization: Bearer <token>' or a "
                "presigned URL");
  }

  asio::awaitable<Result<Response>> Put(Request& request) {
    auto path = PathParam(request);
    if (!path) co_return Fail(path.error());
    if (auto ok = Authorize(request, *path); !ok) co_return Fail(ok.error());
    storage::PutOptions options;
    if (auto type = request.header("content-type"); !type.empty()) options.content_type = type;
    for (const auto& [name, value] : request.headers) {
      if (name.size() > kMetaPrefix.size() &&
          strncasecmp(name.data(), kMetaPrefix.data(), kMetaPrefix.size()) == 0) {
        std::string key(name.substr(kMetaPrefix.size()));
        ToLower(key);
        options.metadata.emplace_back(std::move(key), std::string(value));
      }
    }
    size_t metadata_bytes = 0;
    for (const auto& [name, value] : options.metadata) metadata_bytes += name.size() + value.size();
    if (metadata_bytes > kMaxMetadataBytes) {
      co_return Fail(ErrorCode::kBadRequest,
                     "x-meta-* headers hold " + std::to_string(metadata_bytes) +
                         " bytes; expected at most 2048 (names and values, as S3)");
    }
    if (auto v = request.header("if-match"); !v.empty()) options.if_match = std::string(v);
    if (auto v = request.header("if-none-match"); !v.empty())
      options.if_none_match = std::string(v);
    if (auto md5 = request.header("content-md5"); !md5.empty()) {
      auto raw = Base64Decode(md5);
      if (!raw || raw->size() != 16) {
        co_return Fail(ErrorCode::kBadDigest,
                       "Content-MD5: expected the base64 of a 16-byte MD5 digest; got '" +
                           std::string(md5) + "'");
      }
      options.md5 = std::move(*raw);
    }
    options.max_size = options_.max_object_size;
    // A conditional PUT that will fail is refused before its body is read; the backend checks
    // again, atomically with the write.
    if (options.if_match || options.if_none_match) {
      auto current = co_await calls_.Time("head", backend_->Head(*path));
      if (!current && current.error().code != ErrorCode::kNotFound) co_return Fail(current.error());
      if (auto ok = storage::CheckPutConditions(options, current ? &*current : nullptr); !ok)
        co_return Fail(ok.error());
    }
    auto info =
        co_await calls_.Time("put", backend_->Put(*path, std::move(options), *request.body_stream));
    if (!info) co_return Fail(info.error());
    Response response =
        Response::Json("{\"path\":" + JsonQuote(*path) + ",\"status\":\"created\"}", 201);
    response.headers.emplace_back("ETag", info->etag);
    co_return response;
  }

  asio::awaitable<Result<Response>> Get(Request& request) {
    auto path = PathParam(request);
    if (!path) co_return Fail(path.error());
    if (auto ok = Authorize(request, *path); !ok) co_return Fail(ok.error());
    const bool head = request.method == "HEAD";
    auto range = storage::ParseRange(request.header("range"));
    if (head) {
      auto info = co_await calls_.Time("head", backend_->Head(*path));
      if (!info) co_return Fail(info.error());
      if (auto answer = ReadConditions(request, *info)) co_return std::move(*answer);
      Response response = Response::Empty(200);
      response.content_type = info->content_type;
      AddObjectHeaders(*info, response);
      response.stream_length = info->size;
      co_return response;
    }
    auto object = co_await calls_.Time("get", backend_->Get(*path, range));
    if (!object) co_return Fail(object.error());
    const ObjectInfo& info = object->info;
    if (auto answer = ReadConditions(request, info)) co_return std::move(*answer);
    if (object->unsatisfiable) {
      Response response = ErrorResponse(Error{ErrorCode::kRangeNotSatisfiable,
                                              "Range '" + std::string(request.header("range")) +
                                                  "' is outside the object of " +
                                                  std::to_string(info.size) + " bytes",
                                              {}});
      response.headers.emplace_back("Content-Range", "bytes */" + std::to_string(info.size));
      co_return response;
    }
    uint64_t length = object->range ? object->range->length : info.size;
    Response response = Response::Stream(std::move(object->body), length, info.content_type,
                                         object->range ? 206 : 200);
    AddObjectHeaders(info, response);
    if (object->range) {
      const auto& r = *object->range;
      response.headers.emplace_back("Content-Range", "bytes " + std::to_string(r.offset) + "-" +
                                                         std::to_string(r.offset + r.length - 1) +
                                                         "/" + std::to_string(info.size));
    }
    co_return response;
  }

  asio::awaitable<Result<Response>> Delete(Request& request) {
    auto path = PathParam(request);
    if (!path) co_return Fail(path.error());
    // Presigned URLs are only for GET and PUT: one used here is refused as such (403).
    if (auto ok = Authorize(request, *path); !ok) co_return Fail(ok.error());
    if (auto ok = co_await calls_.Time("delete", backend_->Delete(*path)); !ok)
      co_return Fail(ok.error());
    co_return Response::Json("{\"path\":" + JsonQuote(*path) + ",\"status\":\"deleted\"}");
  }

  asio::awaitable<Result<Response>> List(Request& request) {
    storage::ListOptions options;
    std::string prefix(request.param("prefix"));
    if (!prefix.empty()) {
      if (auto ok = storage::ValidatePath(prefix); !ok) co_return Fail(ok.error());
    }
    auto mode = request.query_param("prefix_mode");
    if (mode && *mode != "string" && *mode != "segment") {
      co_return Fail(ErrorCode::kBadRequest,
                     "prefix_mode: expected 'segment' or 'string'; got '" + *mode + "'");
    }
    // Segment mode (compat): "user" lists "user/…", never "users…".
    if (!prefix.empty() && (!mode || *mode == "segment") && !prefix.ends_with('/')) prefix += '/';
    if (auto ok = request.Permit(prefix); !ok) co_return Fail(ok.error());
    options.prefix = std::move(prefix);
    if (auto limit = request.query_param("limit")) {
      int64_t n = 0;
      auto [ptr, ec] = std::from_chars(limit->data(), limit->data() + limit->size(), n);
      if (limit->empty() || ec != std::errc() || ptr != limit->data() + limit->size() || n <= 0) {
        co_return Fail(ErrorCode::kBadRequest,
                       "limit: expected a positive integer (at most 1000); got '" + *limit + "'");
      }
      options.limit = std::min<size_t>(static_cast<size_t>(n), kMaxListLimit);
    }
    auto cursor = request.query_param("cursor");
    if (!cursor) cursor = request.query_param("offset");
    if (cursor) options.start_after = std::move(*cursor);
    auto delimiter = request.query_param("delimiter");
    if (delimiter) options.delimiter = std::move(*delimiter);
    auto page = co_await calls_.Time("list", backend_->List(std::move(options)));
    if (!page) co_return Fail(page.error());
    std::string body = "{\"objects\":[";
    for (size_t i = 0; i < page->objects.size(); ++i) {
      if (i) body += ',';
      body += ObjectJson(page->objects[i]);
    }
    body += "],\"next_offset\":";
    body += page->next ? JsonQuote(*page->next) : "null";
    if (delimiter) {
      body += ",\"common_prefixes\":[";
      for (size_t i = 0; i < page->common_prefixes.size(); ++i) {
        if (i) body += ',';
        body += JsonQuote(page->common_prefixes[i]);
      }
      body += ']';
    }
    body += '}';
    co_return Response::Json(std::move(body));
  }

  asio::awaitable<Result<Response>> Copy(Request& request) {
    static constexpr std::string_view kExpected = R"({"from": string, "to": string})";
    auto body = ParseJsonBody(request, kExpected);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
    auto field = [&](const char* name) -> Result<std::string> {
      const json::value* v = obj->if_contains(name);
      if (!v) return Fail(WrongShape(kExpected, std::string("missing field ") + name));
      if (!v->is_string())
        return Fail(WrongShape(kExpected, std::string(name) + " is not a string"));
      std::string path(v->get_string());
      if (auto ok = storage::ValidatePath(path); !ok)
        return Fail(ErrorCode::kBadRequest, std::string(name) + ": " + ok.error().message);
      if (auto ok = request.Permit(path); !ok) return Fail(ok.error());
      return path;
    };
    auto from = field("from");
    if (!from) co_return Fail(from.error());
    auto to = field("to");
    if (!to) co_return Fail(to.error());
    auto info = co_await calls_.Time("copy", backend_->Copy(*from, *to));
    if (!info) co_return Fail(info.error());
    Response response =
        Response::Json("{\"from\":" + JsonQuote(*from) + ",\"to\":" + JsonQuote(*to) +
                       ",\"e_tag\":" + JsonQuote(info->etag) + ",\"status\":\"copied\"}");
    response.headers.emplace_back("ETag", info->etag);
    co_return response;
  }

  asio::awaitable<Result<Response>> Presign(Request& request) {
    static constexpr std::string_view kExpected =
        R"({"method": "GET"|"PUT", "expires": seconds (1-604800, default 3600)})";
    auto path = PathParam(request);
    if (!path) co_return Fail(path.error());
    std::string method = "GET";
    int64_t seconds = kDefaultPresignSeconds;
    if (!request.body.empty()) {
      auto body = ParseJsonBody(request, kExpected);
      if (!body) co_return Fail(body.error());
      const json::object* obj = body->if_object();
      if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
      if (const json::value* m = obj->if_contains("method")) {
        if (!m->is_string() || (m->get_string() != "GET" && m->get_string() != "PUT"))
          co_return Fail(WrongShape(kExpected, "method is not \"GET\" or \"PUT\""));
        method = std::string(m->get_string());
      }
      if (method == "PUT" && request.read_only()) {
        co_return Fail(ErrorCode::kForbidden,
                       "token '" + request.scope->name + "' is read-only; it may presign GET only");
      }
      if (const json::value* e = obj->if_contains("expires")) {
        if (!e->is_int64() || e->get_int64() < 1 || e->get_int64() > kMaxPresignSeconds)
          co_return Fail(WrongShape(kExpected, "expires is not an integer from 1 to 604800"));
        seconds = e->get_int64();
      }
    }
    auto expires = std::chrono::time_point_cast<std::chrono::seconds>(
        std::chrono::system_clock::now() + std::chrono::seconds(seconds));
    auto native = co_await calls_.Time(
        "presign",
        backend_->Presign(
            *path, method == "GET" ? storage::PresignMethod::kGet : storage::PresignMethod::kPut,
            expires));
    if (!native) co_return Fail(native.error());
    std::string url = std::move(*native);
    if (url.empty()) {
      // The mount prefix ("/storage", or "" at the root) is what precedes this route's path.
      std::string_view mount(request.path);
      mount = mount.substr(0, mount.find("/presign/"));
      url = signer_.Sign(mount, method, *path, expires);
    }
    co_return Response::Json("{\"url\":" + JsonQuote(url) + ",\"method\":\"" + method +
                             "\",\"expires_at\":" + JsonQuote(Rfc3339(expires)) + "}");
  }

  asio::awaitable<Result<Response>> DeleteBatch(Request& request) {
    static constexpr std::string_view kExpected = R"({"paths": [string] (at most 1000)})";
    auto body = ParseJsonBody(request, kExpected);
    if (!body) co_return Fail(body.error());
    const json::object* obj = body->if_object();
    if (!obj) co_return Fail(WrongShape(kExpected, "not an object"));
    const json::value* paths = obj->if_contains("paths");
    if (!paths) co_return Fail(WrongShape(kExpected, "missing field paths"));
    const json::array* list = paths->if_array();
    if (!list) co_return Fail(WrongShape(kExpected, "paths is not an array"));
    if (list->size() > kMaxBatchPaths) {
      co_return Fail(
          WrongShape(kExpected, "paths has " + std::to_string(list->size()) + " entries"));
    }
    std::vector<std::string> targets;
    for (const json::value& v : *list) {
      if (!v.is_string()) co_return Fail(WrongShape(kExpected, "paths contains a non-string"));
      std::string path(v.get_string());
      if (auto ok = storage::ValidatePath(path); !ok) {
        co_return Fail(ErrorCode::kBadRequest,
                       "paths: " + JsonQuote(path) + ": " + ok.error().message);
      }
      if (auto ok = request.Permit(path); !ok) co_return Fail(ok.error());
      targets.push_back(std::move(path));
    }
    std::string deleted, missing;
    for (const std::string& path : targets) {
      auto done = co_await calls_.Time("delete", backend_->Delete(path));
      std::string& into = done ? deleted : missing;
      if (!done && done.error().code != ErrorCode::kNotFound) co_return Fail(done.error());
      if (!into.empty()) into += ',';
      into += JsonQuote(path);
    }
    co_return Response::Json("{\"deleted\":[" + deleted + "],\"missing\":[" + missing + "]}");
  }

  std::unique_ptr<StorageBackend> backend_;
  BackendCalls calls_{
      "storage", backend_->name(), {"head", "put", "get", "delete", "list", "copy", "presign"}};
  StorageOptions options_;
  storage::UrlSigner signer_;
};

}  // namespace

BackendRegistry<storage::StorageBackend>& StorageService::Registry() {
  return ServiceRegistry(&storage::RegisterBuiltinBackends);
}

Result<std::unique_ptr<Sidecar>> StorageService::FromUrl(std::string_view url,
                                                         StorageOptions options) {
  auto backend = Registry().Create(url);
  if (!backend) return Fail(backend.error());
  return FromBackend(std::move(*backend), std::move(options));
}

std::unique_ptr<Sidecar> StorageService::FromBackend(
    std::unique_ptr<storage::StorageBackend> backend, StorageOptions options) {
  return std::make_unique<StorageSidecar>(std::move(backend), std::move(options));
}

}  // namespace mikcar
