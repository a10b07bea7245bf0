#include "queue/redis/redis_queue_backend.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <set>
#include <thread>

#include "common/redis/redis_client.h"
#include "common/units.h"
#include "queue/message_id.h"
#include "queue/poll_receive.h"

namespace mikcar::queue {
namespace {

namespace asio = boost::asio;
using redis::Reply;

constexpr auto kPoll = std::chrono::milliseconds(50);
constexpr auto kSweep = std::chrono::milliseconds(100);
// A pop without a lease holds what it takes this long (Redis time) until it knows the caller
// can still get it; a sidecar that dies in between leaves the hold to expire.
constexpr auto kHold = std::chrono::milliseconds(5000);
// Receive::deliver_by when unset.
constexpr auto kHandOutBudget = std::chrono::milliseconds(250);
constexpr int64_t kDefaultDedupWindowMs = 5 * 60 * 1000;
constexpr uint32_t kDefaultMaxAttempts = 5;

// Layout and invariants (README.md has the long form). Under the prefix P, queue Q lives in
// P.."queue/"..Q.."/" + s (the stream, consumer group "mikcar"), l (leases: id -> deadline),
// r (expired or nacked leases, ready for redelivery), i (leased id -> stream entry id), z/m
// (delayed: id -> due, id -> msgpack{payload, received_at, attempts}) and d/<dedup id>.
// Topic T: P.."topic/"..T.."/s" with one consumer group per subscriber group, whose l/r/i sit
// under P.."topic/"..T.."/g/"..G.."/". Names never contain '/', so no two of these collide.
// Every stream entry of a queue is either undelivered or pending in the group, and every
// pending entry is in exactly one of l and r; so ready = XLEN - ZCARD l. Entries carry our id
// (stable across redelivery), the payload, received_at and `a`, the deliveries before this
// entry was written (a nack with a delay writes a new entry). attempts = a + the PEL's
// delivery count, which XREADGROUP and XCLAIM keep. P.."queue-wake/" holds, per queue/topic/group,
// the earliest lease deadline or due time, so the sweeper (any sidecar) ticks only what is due.
// All times are Redis's TIME, so sidecars on different machines agree on deadlines.
const std::string kPrelude = R"lua(
local P = ARGV[1]
local MAX = tonumber(ARGV[2])
local WAKE = P .. 'queue-wake/'
local C = 'mikcar'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function fields(arr)
  local f = {}
  for k = 1, #arr, 2 do f[arr[k]] = arr[k + 1] end
  return f
end
local function num(x) return tonumber(x) or 0 end
local function lane_queue(q)
  local b = P .. 'queue/' .. q .. '/'
  return {base = b, s = b .. 's', g = 'mikcar', l = b .. 'l', r = b .. 'r', i = b .. 'i',
          z = b .. 'z', m = b .. 'm', dlq = q .. '.dlq', w = 'q\n' .. q, topic = false}
end
local function lane_topic(t)
  local b = P .. 'topic/' .. t .. '/'
  return {base = b, s = b .. 's', z = b .. 'z', m = b .. 'm', w = 't\n' .. t, topic = true}
end
local function lane_group(t, g)
  local b = P .. 'topic/' .. t .. '/g/' .. g .. '/'
  return {base = b, s = P .. 'topic/' .. t .. '/s', g = g, l = b .. 'l', r = b .. 'r',
          i = b .. 'i', dlq = t .. '.dlq', w = 'g\n' .. t .. '\n' .. g, topic = true}
end
local function has_groups(s)
  local g = redis.pcall('XINFO', 'GROUPS', s)
  return type(g) == 'table' and not g.err and #g > 0
end
-- A topic entry is stored only while some group exists: nobody else could ever read it.
local function append(L, id, payload, ts, a)
  if L.topic and not has_groups(L.s) then return end
  redis.call('XADD', L.s, '*', 'id', id, 'p', payload, 't', ts, 'a', a)
end
local function enqueue(L, id, payload, ts, a, delay)
  if delay > 0 then
    redis.call('ZADD', L.z, now + delay, id)
    redis.call('HSET', L.m, id, cmsgpack.pack({payload, ts, a}))
    redis.call('ZADD', WAKE, 'LT', now + delay, L.w)
  else
    append(L, id, payload, ts, a)
  end
end
local function delivered(L, eid)
  local p = redis.call('XPENDING', L.s, L.g, eid, eid, 1)
  if #p == 0 then return 0 end
  return num(p[1][4])
end
local function drop(L, id, eid)
  redis.call('XACK', L.s, L.g, eid)
  if not L.topic then redis.call('XDEL', L.s, eid) end
  redis.call('ZREM', L.l, id)
  redis.call('ZREM', L.r, id)
  redis.call('HDEL', L.i, id)
end
local function to_dlq(L, id, eid, f)
  append(lane_queue(L.dlq), id, f.p or 'null', f.t or now, 0)
  drop(L, id, eid)
end
local function entry(L, eid)
  if not eid then return nil end
  return redis.call('XRANGE', L.s, eid, eid)[1]
end
local function tick(L)
  if L.z then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', L.z, '-inf', now, 'LIMIT', 0, 1000)) do
      local packed = redis.call('HGET', L.m, id)
      if packed then
        local d = cmsgpack.unpack(packed)
        append(L, id, d[1], d[2], d[3])
      end
      redis.call('ZREM', L.z, id)
      redis.call('HDEL', L.m, id)
    end
  end
  if L.l then
    local expired = redis.call('ZRANGEBYSCORE', L.l, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
    for k = 1, #expired, 2 do
      local id = expired[k]
      local eid = redis.call('HGET', L.i, id)
      local e = entry(L, eid)
      if e then
        local f = fields(e[2])
        if num(f.a) + delivered(L, eid) >= MAX then
          to_dlq(L, id, eid, f)
        else
          redis.call('ZREM', L.l, id)
          redis.call('ZADD', L.r, expired[k + 1], id)
        end
      else
        redis.call('ZREM', L.l, id)
        redis.call('HDEL', L.i, id)
      end
    end
  end
end
local function first_score(key)
  if not key then return nil end
  local a = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if a[2] then return tonumber(a[2]) end
  return nil
end
local function rewake(L)
  local nxt, b = first_score(L.l), first_score(L.z)
  if b and (not nxt or b < nxt) then nxt = b end
  if nxt then redis.call('ZADD', WAKE, nxt, L.w) else redis.call('ZREM', WAKE, L.w) end
end
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
-- Drops topic entries that every group has received and acknowledged.
local function trim(s)
  local groups = redis.pcall('XINFO', 'GROUPS', s)
  if type(groups) ~= 'table' or groups.err or #groups == 0 then return end
  local min = nil
  for _, g in ipairs(groups) do
    local gi = fields(g)
    local cand = gi['last-delivered-id']
    if num(gi.pending) > 0 then cand = redis.call('XPENDING', s, gi.name)[2] end
    if not min or id_less(cand, min) then min = cand end
  end
  redis.call('XTRIM', s, 'MINID', min)
end
local function dedup(L, dedup_id, id, window)
  if dedup_id == '' then return nil end
  local key = L.base .. 'd/' .. dedup_id
  if redis.call('SET', key, id, 'NX', 'PX', window) then return nil end
  return redis.call('GET', key)
end
)lua";

// ARGV: P, max, queue, dedup window ms, then (id, payload, delay ms, dedup id)*. -> ids.
const std::string kPushScript = kPrelude + R"lua(
local L = lane_queue(ARGV[3])
local out = {}
for k = 5, #ARGV, 4 do
  local first = dedup(L, ARGV[k + 3], ARGV[k], ARGV[4])
  if first then
    out[#out + 1] = first
  else
    enqueue(L, ARGV[k], ARGV[k + 1], now, 0, tonumber(ARGV[k + 2]))
    out[#out + 1] = ARGV[k]
  end
end
return out
)lua";

// ARGV: P, max, topic, dedup window ms, id, payload, delay ms, dedup id. -> id.
const std::string kPublishScript = kPrelude + R"lua(
local T = lane_topic(ARGV[3])
local first = dedup(T, ARGV[8], ARGV[5], ARGV[4])
if first then return first end
enqueue(T, ARGV[5], ARGV[6], now, 0, tonumber(ARGV[7]))
return ARGV[5]
)lua";

// ARGV: P, max, name, group ("" = queue), count, lease ms.
// -> {now, {id, payload, received_at, attempts}...}. Every message taken is leased (a pop
// without a lease takes a short hold, settled by kSettleScript). Expired leases are
// redelivered before new entries; first deliveries come in stream (push) order.
const std::string kReceiveScript = kPrelude + R"lua(
local L
if ARGV[4] == '' then
  L = lane_queue(ARGV[3])
  redis.pcall('XGROUP', 'CREATE', L.s, L.g, '0', 'MKSTREAM')
else
  local T = lane_topic(ARGV[3])
  L = lane_group(ARGV[3], ARGV[4])
  redis.pcall('XGROUP', 'CREATE', L.s, L.g, '$', 'MKSTREAM')
  tick(T)
  rewake(T)
end
tick(L)
rewake(L)
local n, lease = tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {now}
local function take(id, eid, f, attempts)
  out[#out + 1] = {id, f.p or 'null', f.t or now, attempts}
  redis.call('ZADD', L.l, now + lease, id)
  redis.call('HSET', L.i, id, eid)
  redis.call('ZADD', WAKE, 'LT', now + lease, L.w)
end
for _, id in ipairs(redis.call('ZRANGE', L.r, 0, n - 1)) do
  redis.call('ZREM', L.r, id)
  local eid = redis.call('HGET', L.i, id)
  local claimed = {}
  if eid then claimed = redis.call('XCLAIM', L.s, L.g, C, 0, eid) end
  local e = claimed[1]
  if e then
    local f = fields(e[2])
    take(id, eid, f, num(f.a) + delivered(L, eid))
  else
    redis.call('HDEL', L.i, id)
  end
end
if #out - 1 < n then
  local r = redis.call('XREADGROUP', 'GROUP', L.g, C, 'COUNT', n - #out + 1, 'STREAMS', L.s, '>')
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do
      local f = fields(e[2])
      take(f.id or e[1], e[1], f, num(f.a) + 1)
    end
  end
end
if L.topic then trim(L.s) end
return out
)lua";

// Settles the hold a pop without a lease took (kReceiveScript with the hold as lease). ARGV:
// P, max, name, group ("" = queue), hold deadline, not_after, ids... A message still held by
// that very delivery (its lease deadline is the hold's: a redelivery always gets a later one)
// is removed when Redis runs this by not_after (ms, Redis time), so its receiver gets it in
// time. Otherwise it is released: ready again at once, ahead of newer ones, its delivery count
// undone (XCLAIM RETRYCOUNT), as nobody received it. -> the ids removed.
const std::string kSettleScript = kPrelude + R"lua(
local L
if ARGV[4] == '' then L = lane_queue(ARGV[3]) else L = lane_group(ARGV[3], ARGV[4]) end
local hold, not_after = tonumber(ARGV[5]), tonumber(ARGV[6])
local hand_out = now <= not_after
local out = {}
for k = 7, #ARGV do
  local id = ARGV[k]
  local eid = redis.call('HGET', L.i, id)
  if eid and tonumber(redis.call('ZSCORE', L.l, id)) == hold then
    if hand_out then
      drop(L, id, eid)
      out[#out + 1] = id
    else
      local n = delivered(L, eid)
      redis.call('XCLAIM', L.s, L.g, C, 0, eid, 'RETRYCOUNT', math.max(n - 1, 0), 'JUSTID')
      redis.call('ZREM', L.l, id)
      -- Scored by when the entry was written: ahead of other redeliveries, in push order
      -- (but for entries written in the same millisecond).
      redis.call('ZADD', L.r, tonumber(string.match(eid, '^(%d+)')), id)
    end
  end
end
rewake(L)
if L.topic and hand_out then trim(L.s) end
return out
)lua";

// ARGV: P, max, name, group, id. The queue's lease first, else the lease of the topic's group
// (the service passes a group on every ack). -> 1, or 0 when the lease is unknown/expired.
const std::string kAckScript = kPrelude + R"lua(
local id = ARGV[5]
local function ack(L)
  local deadline = redis.call('ZSCORE', L.l, id)
  if not deadline or tonumber(deadline) <= now then return 0 end
  local eid = redis.call('HGET', L.i, id)
  if eid then drop(L, id, eid) else redis.call('ZREM', L.l, id) end
  if L.topic then trim(L.s) end
  return 1
end
if ack(lane_queue(ARGV[3])) == 1 then return 1 end
if ARGV[4] == '' then return 0 end
return ack(lane_group(ARGV[3], ARGV[4]))
)lua";

// ARGV: P, max, queue, id, delay ms. -> 1, or 0 when the lease is unknown/expired.
const std::string kNackScript = kPrelude + R"lua(
local L = lane_queue(ARGV[3])
local id, delay = ARGV[4], tonumber(ARGV[5])
local deadline = redis.call('ZSCORE', L.l, id)
if not deadline or tonumber(deadline) <= now then return 0 end
local eid = redis.call('HGET', L.i, id)
local e = entry(L, eid)
if not e then
  redis.call('ZREM', L.l, id)
  redis.call('HDEL', L.i, id)
  return 0
end
local f = fields(e[2])
local attempts = num(f.a) + delivered(L, eid)
if attempts >= MAX then
  to_dlq(L, id, eid, f)
elseif delay > 0 then
  drop(L, id, eid)
  enqueue(L, id, f.p or 'null', f.t or now, attempts, delay)
else
  redis.call('ZREM', L.l, id)
  redis.call('ZADD', L.r, now, id)
end
rewake(L)
return 1
)lua";

// ARGV: P, max, queue. -> {ready, leased, delayed}.
const std::string kLenScript = kPrelude + R"lua(
local L = lane_queue(ARGV[3])
tick(L)
rewake(L)
local leased = redis.call('ZCARD', L.l)
return {redis.call('XLEN', L.s) - leased, leased, redis.call('ZCARD', L.z)}
)lua";

// ARGV: P, max. Ticks up to 100 due queues/topics/groups. -> their wake members.
const std::string kSweepScript = kPrelude + R"lua(
local due = redis.call('ZRANGEBYSCORE', WAKE, '-inf', now, 'LIMIT', 0, 100)
for _, w in ipairs(due) do
  local kind, rest = string.sub(w, 1, 1), string.sub(w, 3)
  local L
  if kind == 'q' then
    L = lane_queue(rest)
  elseif kind == 't' then
    L = lane_topic(rest)
  else
    local nl = string.find(rest, '\n', 1, true)
    if nl then L = lane_group(string.sub(rest, 1, nl - 1), string.sub(rest, nl + 1)) end
  end
  -- A lease (in l) implies the group exists, so ticking never needs XPENDING without one.
  if L then
    tick(L)
    rewake(L)
  else
    redis.call('ZREM', WAKE, w)
  end
end
return due
)lua";

int64_t ToInt(const Reply& r) {
  if (r.type == Reply::Type::kInteger) return r.integer;
  int64_t v = 0;
  std::from_chars(r.str.data(), r.str.data() + r.str.size(), v);
  return v;
}

class RedisQueueBackend final : public QueueBackend {
 public:
  RedisQueueBackend(std::shared_ptr<redis::Client> client, std::string prefix,
                    uint32_t max_attempts, int64_t dedup_window_ms, std::string where)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        max_attempts_(std::to_string(max_attempts)),
        dedup_window_ms_(std::to_string(dedup_window_ms)),
        where_(std::move(where)) {
    asio::co_spawn(sweeper_ctx_, Sweep(), asio::detached);
    sweeper_ = std::thread([this] { sweeper_ctx_.run(); });
  }
  ~RedisQueueBackend() override { Close(); }

  std::string name() const override { return "redis"; }

  Task<std::vector<std::string>> Push(std::string queue,
                                      std::vector<NewMessage> messages) override {
    auto args = Args(queue, {dedup_window_ms_});
    for (auto& m : messages) {
      args.push_back(NewMessageId());
      args.push_back(std::move(m.payload));
      args.push_back(std::to_string(std::max<int64_t>(m.delay_ms, 0)));
      args.push_back(std::move(m.dedup_id));
    }
    auto reply = co_await Script(kPushScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    std::vector<std::string> ids;
    for (const auto& e : reply->elements) ids.push_back(e.str);
    wake_.Notify(QueueKey(queue));
    co_return ids;
  }

  Task<std::vector<Message>> Pop(std::string queue, Receive receive) override {
    co_return co_await Take(queue, "", QueueKey(queue), receive);
  }

  Task<void> Ack(std::string queue, std::string group, std::string id) override {
    // Named argument vectors: GCC 12 rejects initializer lists inside co_await expressions.
    auto args = Args(queue, {group, id});
    auto reply = co_await Script(kAckScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    if (ToInt(*reply) == 0) {
      co_return NoLease(group.empty() ? queue : queue + "' or topic group '" + queue + "/" + group,
                        id);
    }
    co_return Result<void>{};
  }

  Task<void> Nack(std::string queue, std::string id, std::chrono::milliseconds delay) override {
    auto args = Args(queue, {id, std::to_string(delay.count())});
    auto reply = co_await Script(kNackScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    if (ToInt(*reply) == 0) co_return NoLease(queue, id);
    wake_.Notify(QueueKey(queue));
    wake_.Notify(QueueKey(queue + ".dlq"));
    co_return Result<void>{};
  }

  Task<std::string> Publish(std::string topic, NewMessage message) override {
    auto args = Args(topic, {dedup_window_ms_, NewMessageId(), std::move(message.payload),
                             std::to_string(std::max<int64_t>(message.delay_ms, 0)),
                             std::move(message.dedup_id)});
    auto reply = co_await Script(kPublishScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    wake_.Notify(TopicKey(topic));
    co_return reply->str;
  }

  Task<std::vector<Message>> Subscribe(std::string topic, std::string group,
                                       Receive receive) override {
    co_return co_await Take(topic, group, TopicKey(topic), receive);
  }

  Task<Length> Len(std::string queue) override {
    auto args = Args(queue, {});
    auto reply = co_await Script(kLenScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    if (reply->elements.size() != 3) co_return Unexpected("len");
    Length len;
    len.ready = static_cast<uint64_t>(std::max<int64_t>(ToInt(reply->elements[0]), 0));
    len.leased = static_cast<uint64_t>(ToInt(reply->elements[1]));
    len.delayed = static_cast<uint64_t>(ToInt(reply->elements[2]));
    co_return len;
  }

  Task<void> Ready() override {
    std::vector<std::string> ping{"PING"};
    auto reply = co_await client_->Command(std::move(ping));
    if (!reply) co_return Fail(reply.error());
    if (reply->is_error()) co_return Fail(ErrorCode::kBackend, where_ + ": " + reply->str);
    co_return Result<void>{};
  }

  void Drain() override {
    draining_ = true;
    wake_.NotifyAll();
  }

  void Close() override {
    std::call_once(closed_, [this] {
      draining_ = true;
      wake_.NotifyAll();
      sweeper_ctx_.stop();  // abandons a sweep in flight: it is one atomic script either way
      if (sweeper_.joinable()) sweeper_.join();
      client_->Close();
    });
  }

 private:
  static std::string QueueKey(const std::string& queue) { return "q\n" + queue; }
  static std::string TopicKey(const std::string& topic) { return "t\n" + topic; }

  std::vector<std::string> Args(const std::string& name, std::vector<std::string> rest) {
    std::vector<std::string> args{prefix_, max_attempts_, name};
    for (auto& a : rest) args.push_back(std::move(a));
    return args;
  }

  Task<std::vector<Message>> Take(std::string name, std::string group, std::string key,
                                  Receive receive) {
    const std::optional<std::chrono::milliseconds> visibility = receive.visibility;
    const auto hand_out_by = receive.deliver_by.value_or(receive.wait_until + kHandOutBudget);
    auto fetch = [this, &name, &group, visibility,
                  hand_out_by](size_t n) -> Task<std::vector<Message>> {
      const auto lease = visibility.value_or(kHold);
      auto args = Args(name, {group, std::to_string(n), std::to_string(lease.count())});
      auto reply = co_await Script(kReceiveScript, std::move(args));
      const auto arrived = Clock::now();
      if (!reply) co_return Fail(reply.error());
      if (reply->elements.empty()) co_return Unexpected("receive");
      const int64_t redis_now = ToInt(reply->elements[0]);
      std::vector<Message> out;
      for (size_t k = 1; k < reply->elements.size(); ++k) {
        const auto& e = reply->elements[k];
        if (e.elements.size() != 4) co_return Unexpected("receive");
        Message m;
        m.id = e.elements[0].str;
        m.payload = e.elements[1].str;
        m.received_at_ms = ToInt(e.elements[2]);
        m.attempts = static_cast<uint32_t>(ToInt(e.elements[3]));
        out.push_back(std::move(m));
      }
      if (visibility || out.empty()) co_return out;
      co_return co_await Settle(name, group, std::move(out), redis_now + kHold.count(), redis_now,
                                arrived, hand_out_by);
    };
    co_return co_await PollReceive(wake_, std::move(key), receive, kPoll, draining_, fetch);
  }

  // Ends the hold of a pop without a lease: removes the messages if Redis gets to it soon
  // enough that they still reach the caller by `hand_out_by`, else releases them. Redis's clock
  // is only compared with itself: the receive script ran no later than our `arrived`, so a
  // settle that runs by `redis_now + (hand_out_by - arrived)` on Redis's clock ran by
  // `hand_out_by` on ours. A settle that fails, or a sidecar that dies before it, leaves the
  // hold to expire: the messages come back after kHold.
  Task<std::vector<Message>> Settle(const std::string& name, const std::string& group,
                                    std::vector<Message> held, int64_t hold_deadline,
                                    int64_t redis_now, Clock::time_point arrived,
                                    Clock::time_point hand_out_by) {
    const int64_t budget_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(hand_out_by - arrived).count();
    std::vector<std::string> args =
        Args(name, {group, std::to_string(hold_deadline),
                    std::to_string(budget_ms < 0 ? -1 : redis_now + budget_ms)});
    for (const auto& m : held) args.push_back(m.id);
    if (budget_ms < 0) {
      // The receive answered too late for anybody to get its messages: release them without
      // making this answer later still.
      asio::co_spawn(co_await asio::this_coro::executor, Release(client_, std::move(args)),
                     asio::detached);
      co_return std::vector<Message>{};
    }
    auto reply = co_await Script(kSettleScript, std::move(args));
    if (!reply) co_return Fail(reply.error());
    std::set<std::string> removed;
    for (const auto& e : reply->elements) removed.insert(e.str);
    std::erase_if(held, [&](const Message& m) { return !removed.contains(m.id); });
    co_return held;
  }

  static asio::awaitable<void> Release(std::shared_ptr<redis::Client> client,
                                       std::vector<std::string> args) {
    std::vector<std::string> keys;
    co_await client->Eval(kSettleScript, std::move(keys), std::move(args));
  }

  // A script whose error replies are backend errors named by this backend.
  asio::awaitable<Result<Reply>> Script(const std::string& script, std::vector<std::string> args) {
    std::vector<std::string> keys;
    auto reply = co_await client_->Eval(script, std::move(keys), std::move(args));
    if (reply && reply->is_error()) co_return Fail(ErrorCode::kBackend, where_ + ": " + reply->str);
    co_return reply;
  }

  tl::unexpected<Error> Unexpected(const char* what) const {
    return Fail(ErrorCode::kBackend, where_ + ": unexpected reply to " + what);
  }

  static tl::unexpected<Error> NoLease(const std::string& where, const std::string& id) {
    return Fail(ErrorCode::kNotFound,
                "no active lease for message '" + id + "' in '" + where +
                    "' (unknown, already acknowledged, or its visibility timeout expired)");
  }

  // Any sidecar's sweeper moves what is due (delays, expired leases, DLQ moves); wakes local
  // receivers of what it touched.
  asio::awaitable<void> Sweep() {
    for (;;) {
      sweep_timer_.expires_after(kSweep);
      co_await sweep_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      std::vector<std::string> keys, args{prefix_, max_attempts_};
      auto reply = co_await client_->Eval(kSweepScript, std::move(keys), std::move(args));
      if (!reply || reply->is_error()) {
        if (!reply_failed_) {
          spdlog::warn("{}: queue sweep failed: {}", where_,
                       reply ? reply->str : reply.error().message);
        }
        reply_failed_ = true;
        continue;
      }
      reply_failed_ = false;
      for (const auto& member : reply->elements) {
        const std::string& w = member.str;
        if (w.size() < 2) continue;
        std::string rest = w.substr(2);
        if (w[0] == 'q') {
          wake_.Notify(QueueKey(rest));
          wake_.Notify(QueueKey(rest + ".dlq"));
        } else {
          auto nl = rest.find('\n');
          std::string topic = rest.substr(0, nl);
          wake_.Notify(TopicKey(topic));
          if (nl != std::string::npos) wake_.Notify(QueueKey(topic + ".dlq"));
        }
      }
    }
  }

  std::shared_ptr<redis::Client> client_;
  std::string prefix_;
  std::string max_attempts_;
  std::string dedup_window_ms_;
  std::string where_;
  WatchHub wake_;
  std::atomic<bool> draining_{false};
  asio::io_context sweeper_ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> sweeper_work_ =
      asio::make_work_guard(sweeper_ctx_);
  asio::steady_timer sweep_timer_{sweeper_ctx_};
  bool reply_failed_ = false;
  std::thread sweeper_;
  std::once_flag closed_;
};

}  // namespace

Result<std::unique_ptr<QueueBackend>> OpenRedisQueueBackend(const Uri& uri) {
  auto options = redis::OptionsFromUri(uri);
  if (!options) return Fail(options.error());
  uint32_t max_attempts = kDefaultMaxAttempts;
  if (auto v = uri.query_param("max_attempts")) {
    auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), max_attempts);
    if (ec != std::errc() || ptr != v->data() + v->size() || max_attempts < 1) {
      return Fail(ErrorCode::kBadRequest,
                  "redis queue: expected ?max_attempts= a positive integer; got '" + *v + "'");
    }
  }
  int64_t dedup_window_ms = kDefaultDedupWindowMs;
  if (auto v = uri.query_param("dedup_window")) {
    auto d = ParseDuration(*v);
    if (!d || d->count() <= 0) {
      return Fail(ErrorCode::kBadRequest,
                  "redis queue: expected ?dedup_window= a positive duration (300s, 5000ms); got '" +
                      *v + "'");
    }
    dedup_window_ms = d->count();
  }
  std::string where = std::string(uri.scheme == "rediss" ? "rediss" : "redis") + " queue " +
                      options->host + ":" + std::to_string(options->port);
  auto client = redis::Client::Create(*options);
  return std::unique_ptr<QueueBackend>(
      std::make_unique<RedisQueueBackend>(client, uri.query_param("prefix").value_or(""),
                                          max_attempts, dedup_window_ms, std::move(where)));
}

}  // namespace mikcar::queue
