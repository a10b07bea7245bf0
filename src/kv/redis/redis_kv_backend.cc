#include "kv/redis/redis_kv_backend.h"

#include <charconv>

#include "common/redis/redis_client.h"
#include "kv/glob.h"
#include "kv/kv_rules.h"

namespace mikcar::kv {
namespace {

using redis::Reply;

// Layout under the prefix P (see README.md): each key is a hash P<key> {v: value, t: content
// type, n: version} carrying the native TTL; P\xffv is the version counter; P\xffk is a sorted
// set of key names (all scores 0) for ordered, cursor-stable listing. 0xFF never occurs in UTF-8,
// so these names cannot collide with a user key. Every multi-step write is one Lua script, so it
// is atomic and keeps the index in step.

// KEYS: data, counter, index. ARGV: value, content type, ttl ms, keepttl, nx, xx, if_version|"",
// key.
const std::string kSetScript = R"lua(
local exists = redis.call('EXISTS', KEYS[1]) == 1
local cur = 0
if exists then cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') end
if ARGV[5] == '1' and exists then return redis.error_reply('PRECONDITION key exists (nx)') end
if ARGV[6] == '1' and not exists then return redis.error_reply('PRECONDITION key does not exist (xx)') end
if ARGV[7] ~= '' and tostring(cur) ~= ARGV[7] then return redis.error_reply('PRECONDITION version does not match If-Match') end
local keep = -1
if ARGV[4] == '1' and exists then keep = redis.call('PTTL', KEYS[1]) end
local n = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'n', n)
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif keep > 0 then redis.call('PEXPIRE', KEYS[1], keep) end
redis.call('ZADD', KEYS[3], 0, ARGV[8])
return n
)lua";

// KEYS: counter, index, then data keys. ARGV: ttl ms, then key, value pairs.
const std::string kSetManyScript = R"lua(
local ttl = tonumber(ARGV[1])
for i = 3, #KEYS do
  local n = redis.call('INCR', KEYS[1])
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], 'v', ARGV[2 * (i - 2) + 1], 't', '', 'n', n)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  redis.call('ZADD', KEYS[2], 0, ARGV[2 * (i - 2)])
end
return #KEYS - 2
)lua";

// KEYS: index, then data keys. ARGV: if_version|"", then key names.
const std::string kDeleteScript = R"lua(
if ARGV[1] ~= '' then
  local cur = redis.call('HGET', KEYS[2], 'n') or '0'
  if cur ~= ARGV[1] then return redis.error_reply('PRECONDITION version does not match If-Match') end
end
local deleted = 0
for i = 2, #KEYS do
  deleted = deleted + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return deleted
)lua";

// KEYS: data, counter, index. ARGV: by, key. Returns the new value as a string (Lua numbers are
// doubles; HINCRBY does the exact i64 arithmetic and Redis's integer parsing).
const std::string kIncrementScript = R"lua(
local ok, r = pcall(redis.call, 'HINCRBY', KEYS[1], 'v', ARGV[1])
if not ok then
  local msg = tostring(r.err or r)
  if string.find(msg, 'overflow') then return redis.error_reply('OVERFLOW ' .. msg) end
  return redis.error_reply('NOTINT ' .. msg)
end
redis.call('HSET', KEYS[1], 'n', redis.call('INCR', KEYS[2]))
if redis.call('HEXISTS', KEYS[1], 't') == 0 then redis.call('HSET', KEYS[1], 't', '') end
redis.call('ZADD', KEYS[3], 0, ARGV[2])
return redis.call('HGET', KEYS[1], 'v')
)lua";

// KEYS: data, counter, index. ARGV: mode ("expire"|"persist"), ttl ms, key. 1 if the key exists.
const std::string kRetimeScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'expire' and tonumber(ARGV[2]) <= 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
  return 1
end
if ARGV[1] == 'expire' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('PERSIST', KEYS[1]) end
redis.call('HSET', KEYS[1], 'n', redis.call('INCR', KEYS[2]))
return 1
)lua";

// KEYS: index. ARGV: prefix, lex range start, lex range end, batch. Returns {live members…}
// followed by the last member examined, or "" when the range ended within this batch; drops
// members whose hash expired.
const std::string kScanScript = R"lua(
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then table.insert(out, m)
  else redis.call('ZREM', KEYS[1], m) end
end
if #members == tonumber(ARGV[4]) then
  table.insert(out, members[#members])
else
  table.insert(out, '')
end
return out
)lua";

// KEYS: data keys. Returns {v, t, n} per key (one snapshot).
const std::string kGetManyScript = R"lua(
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], 'v', 't', 'n') end
return out
)lua";

Error FromReplyError(const Reply& reply) {
  std::string_view msg = reply.str;
  auto rest = [&](std::string_view tag) {
    return std::string(msg.substr(msg.find(tag) + tag.size()));
  };
  if (msg.find("PRECONDITION ") != std::string_view::npos)
    return {ErrorCode::kPreconditionFailed, rest("PRECONDITION "), {}};
  if (msg.find("OVERFLOW ") != std::string_view::npos) {
    return {ErrorCode::kOverflow, "increment or decrement would overflow a 64-bit integer", {}};
  }
  if (msg.find("NOTINT ") != std::string_view::npos) {
    return {ErrorCode::kNotAnInteger,
            "value is not an integer or out of range; expected a base-10 64-bit integer",
            {}};
  }
  return {ErrorCode::kBackend, "redis: " + std::string(msg), {}};
}

uint64_t ParseU64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

class RedisKvBackend final : public KvBackend {
 public:
  RedisKvBackend(std::shared_ptr<redis::Client> client, std::string prefix)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        counter_(prefix_ + "\xffv"),
        index_(prefix_ + "\xffk") {}

  std::string name() const override { return "redis"; }

  Task<Entry> Get(std::string key) override {
    std::vector<std::string> cmd{"HMGET", prefix_ + key, "v", "t", "n"};
    auto reply = co_await Call(std::move(cmd));
    if (!reply) co_return Fail(reply.error());
    auto entry = ToEntry(*reply);
    if (!entry) co_return Fail(ErrorCode::kNotFound, "key not found");
    co_return std::move(*entry);
  }

  Task<std::vector<std::optional<Entry>>> GetMany(std::vector<std::string> keys) override {
    std::vector<std::string> data;
    for (const auto& k : keys) data.push_back(prefix_ + k);
    std::vector<std::string> none;
    auto reply = co_await Script(kGetManyScript, std::move(data), std::move(none));
    if (!reply) co_return Fail(reply.error());
    std::vector<std::optional<Entry>> out;
    for (const auto& e : reply->elements) out.push_back(ToEntry(e));
    co_return out;
  }

  Task<uint64_t> Set(std::string key, std::string value, SetOptions options) override {
    std::vector<std::string> keys_{prefix_ + key, counter_, index_};
    std::vector<std::string> args_{std::move(value),
                                   options.content_type,
                                   std::to_string(options.ttl_ms),
                                   options.keep_ttl ? "1" : "0",
                                   options.only_if_absent ? "1" : "0",
                                   options.only_if_present ? "1" : "0",
                                   options.if_version ? std::to_string(*options.if_version) : "",
                                   key};
    auto reply = co_await Script(kSetScript, std::move(keys_), std::move(args_));
    if (!reply) co_return Fail(reply.error());
    co_return static_cast<uint64_t>(reply->integer);
  }

  Task<void> SetMany(std::vector<std::pair<std::string, std::string>> items,
                     int64_t ttl_ms) override {
    std::vector<std::string> keys{counter_, index_}, args{std::to_string(ttl_ms)};
    for (auto& [k, v] : items) {
      keys.push_back(prefix_ + k);
      args.push_back(k);
      args.push_back(std::move(v));
    }
    auto reply = co_await Script(kSetManyScript, std::move(keys), std::move(args));
    if (!reply) co_return Fail(reply.error());
    co_return Result<void>{};
  }

  Task<bool> Delete(std::string key, std::optional<uint64_t> if_version) override {
    std::vector<std::string> keys_{index_, prefix_ + key};
    std::vector<std::string> args_{if_version ? std::to_string(*if_version) : "", key};
    auto reply = co_await Script(kDeleteScript, std::move(keys_), std::move(args_));
    if (!reply) co_return Fail(reply.error());
    co_return reply->integer > 0;
  }

  Task<uint64_t> DeleteMany(std::vector<std::string> keys) override {
    std::vector<std::string> data{index_}, args{""};
    for (auto& k : keys) {
      data.push_back(prefix_ + k);
      args.push_back(std::move(k));
    }
    auto reply = co_await Script(kDeleteScript, std::move(data), std::move(args));
    if (!reply) co_return Fail(reply.error());
    co_return static_cast<uint64_t>(reply->integer);
  }

  Task<int64_t> Increment(std::string key, int64_t by) override {
    std::vector<std::string> keys_{prefix_ + key, counter_, index_};
    std::vector<std::string> args_{std::to_string(by), key};
    auto reply = co_await Script(kIncrementScript, std::move(keys_), std::move(args_));
    if (!reply) co_return Fail(reply.error());
    int64_t value = 0;
    std::from_chars(reply->str.data(), reply->str.data() + reply->str.size(), value);
    co_return value;
  }

  Task<std::optional<int64_t>> ExpiresAt(std::string key) override {
    std::vector<std::string> cmd{"PTTL", prefix_ + key};
    auto reply = co_await Call(std::move(cmd));
    if (!reply) co_return Fail(reply.error());
    if (reply->integer == -2) co_return std::optional<int64_t>();
    if (reply->integer == -1) co_return std::optional<int64_t>(0);
    co_return std::optional<int64_t>(NowMs() + reply->integer);
  }

  Task<bool> Expire(std::string key, int64_t ttl_ms) override {
    std::vector<std::string> keys_{prefix_ + key, counter_, index_};
    std::vector<std::string> args_{"expire", std::to_string(ttl_ms), key};
    auto reply = co_await Script(kRetimeScript, std::move(keys_), std::move(args_));
    if (!reply) co_return Fail(reply.error());
    co_return reply->integer == 1;
  }

  Task<bool> Persist(std::string key) override {
    std::vector<std::string> keys_{prefix_ + key, counter_, index_};
    std::vector<std::string> args_{"persist", "0", key};
    auto reply = co_await Script(kRetimeScript, std::move(keys_), std::move(args_));
    if (!reply) co_return Fail(reply.error());
    co_return reply->integer == 1;
  }

  Task<uint64_t> Version(std::string key) override {
    std::vector<std::string> cmd{"HGET", prefix_ + key, "n"};
    auto reply = co_await Call(std::move(cmd));
    if (!reply) co_return Fail(reply.error());
    co_return reply->is_nil() ? 0 : ParseU64(reply->str);
  }

  Task<KeysPage> Keys(std::string pattern, std::string cursor, size_t limit) override {
    KeysPage page;
    std::string prefix = GlobLiteralPrefix(pattern);
    // Lexicographic (byte) ranges over the index; 0xFF never occurs in a UTF-8 key, so
    // "[prefix\xff" bounds every key that starts with the prefix.
    std::string start = !cursor.empty() && cursor >= prefix ? "(" + cursor
                        : prefix.empty()                    ? "-"
                                                            : "[" + prefix;
    std::string end = prefix.empty() ? "+" : "[" + prefix + "\xff";
    for (size_t examined = 0, work = 0;;) {
      size_t batch = std::min<size_t>(1000, limit - page.keys.size() + 100);
      std::vector<std::string> keys_{index_};
      std::vector<std::string> args_{prefix_, start, end, std::to_string(batch)};
      auto reply = co_await Script(kScanScript, std::move(keys_), std::move(args_));
      if (!reply) co_return Fail(reply.error());
      auto& items = reply->elements;
      if (items.empty()) co_return Fail(ErrorCode::kBackend, "scan: empty script reply");
      for (size_t i = 0; i + 1 < items.size(); ++i) {
        // A full page gets a cursor only when a key follows it, as on the other backends.
        if (page.keys.size() == limit) {
          page.cursor = EncodeCursor(page.keys.back());
          co_return page;
        }
        if (GlobMatch(pattern, items[i].str, &work)) page.keys.push_back(items[i].str);
        if (work > kMaxGlobWork) {  // the matcher's budget (kv_rules.h): resume after this key
          page.cursor = EncodeCursor(items[i].str);
          co_return page;
        }
      }
      if (items.back().str.empty()) co_return page;  // the range ended within this batch
      start = "(" + items.back().str;
      examined += batch;
      if (examined > kMaxKeysExamined) {
        page.cursor = EncodeCursor(items.back().str);
        co_return page;
      }
    }
  }

  Task<void> Ping() override {
    std::vector<std::string> cmd{"PING"};
    auto reply = co_await Call(std::move(cmd));
    if (!reply) co_return Fail(reply.error());
    co_return Result<void>{};
  }

  void Close() override { client_->Close(); }

 private:
  // A command whose error replies are backend errors.
  boost::asio::awaitable<Result<Reply>> Call(std::vector<std::string> args) {
    auto reply = co_await client_->Command(std::move(args));
    if (reply && reply->is_error()) co_return Fail(FromReplyError(*reply));
    co_return reply;
  }

  boost::asio::awaitable<Result<Reply>> Script(const std::string& script,
                                               std::vector<std::string> keys,
                                               std::vector<std::string> args) {
    auto reply = co_await client_->Eval(script, std::move(keys), std::move(args));
    if (reply && reply->is_error()) co_return Fail(FromReplyError(*reply));
    co_return reply;
  }

  static std::optional<Entry> ToEntry(const Reply& r) {
    if (r.elements.size() != 3 || r.elements[0].is_nil()) return std::nullopt;
    return Entry{r.elements[0].str, r.elements[1].str,
                 r.elements[2].is_nil() ? 0 : ParseU64(r.elements[2].str), 0};
  }

  std::shared_ptr<redis::Client> client_;
  std::string prefix_;
  std::string counter_;
  std::string index_;
};

}  // namespace

Result<std::unique_ptr<KvBackend>> OpenRedisKvBackend(const Uri& uri) {
  auto options = redis::OptionsFromUri(uri);
  if (!options) return Fail(options.error());
  auto client = redis::Client::Create(*options);
  return std::unique_ptr<KvBackend>(
      std::make_unique<RedisKvBackend>(client, uri.query_param("prefix").value_or("")));
}

}  // namespace mikcar::kv
