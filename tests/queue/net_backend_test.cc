// The QueueBackend contract (include/mikcar/queue/backend.h) against the real networked
// servers that scripts/test-backends.sh starts: Redis (plain and TLS) and RabbitMQ. A backend
// whose URL variable is unset is skipped.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>

#include "mikcar/queue/backend.h"
#include "mikcar/uri.h"
#ifdef MIKCAR_WITH_QUEUE_REDIS
#include "common/redis/redis_client.h"
#include "queue/redis/redis_queue_backend.h"
#endif
#ifdef MIKCAR_WITH_QUEUE_AMQP
#include "queue/amqp/amqp_queue_backend.h"
#endif

namespace mikcar::queue {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

template <typename T>
T Await(asio::awaitable<T> task) {
  asio::io_context ctx;
  std::optional<T> out;
  asio::co_spawn(ctx, std::move(task), [&](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out = std::move(value);
  });
  ctx.run();
  return std::move(*out);
}

std::string Unique(std::string_view base) {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::string(base) + "-" + std::to_string(rng() % 1000000000);
}

// As the queue service makes them for a request with a 10 s deadline.
Receive Now(size_t max = 1) {
  return Receive{std::nullopt, Clock::now(), max, 0ms, Clock::now() + 10s};
}
Receive Wait(std::chrono::milliseconds wait, std::optional<std::chrono::milliseconds> vis = {}) {
  return Receive{vis, Clock::now() + wait, 1, 0ms, Clock::now() + wait + 10s};
}
Receive Lease(std::chrono::milliseconds vis, size_t max = 1) {
  return Receive{vis, Clock::now(), max, 0ms, {}};
}
NewMessage Msg(std::string payload, int64_t delay_ms = 0, std::string dedup = "") {
  return NewMessage{std::move(payload), delay_ms, std::move(dedup)};
}

struct Param {
  std::string name;
  std::string env;
};

class NetQueueTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const char* url = std::getenv(GetParam().env.c_str());
    if (url == nullptr || *url == '\0') GTEST_SKIP() << GetParam().env << " is not set";
    if (const char* ca = std::getenv("MIKCAR_TEST_CA_FILE")) setenv("SSL_CERT_FILE", ca, 1);
    base_url_ = url;
    backend_ = Open("max_attempts=3");
    ASSERT_NE(backend_, nullptr);
    auto ready = Await(backend_->Ready());
    ASSERT_TRUE(ready) << ready.error().message;
  }
  void TearDown() override {
    if (backend_) backend_->Close();
  }

  bool IsAmqp() const { return GetParam().name.starts_with("amqp"); }

  std::unique_ptr<QueueBackend> Open(std::string query) {
    std::string url = base_url_;
    url += url.find('?') == std::string::npos ? '?' : '&';
    if (!IsAmqp()) url += "prefix=" + prefix_ + "&";
    url += query;
    auto uri = ParseUri(url);
    EXPECT_TRUE(uri) << uri.error().message;
    Result<std::unique_ptr<QueueBackend>> b = Fail(ErrorCode::kInternal, "not compiled in");
#ifdef MIKCAR_WITH_QUEUE_REDIS
    if (!IsAmqp()) b = OpenRedisQueueBackend(*uri);
#endif
#ifdef MIKCAR_WITH_QUEUE_AMQP
    if (IsAmqp()) b = OpenAmqpQueueBackend(*uri);
#endif
    EXPECT_TRUE(b) << b.error().message;
    return b ? std::move(*b) : nullptr;
  }

  std::vector<std::string> Push(const std::string& q, std::vector<NewMessage> m) {
    auto r = Await(backend_->Push(q, std::move(m)));
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::vector<std::string>{};
  }
  std::vector<Message> Pop(const std::string& q, Receive rc) {
    auto r = Await(backend_->Pop(q, rc));
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::vector<Message>{};
  }
  Length Len(const std::string& q) {
    auto r = Await(backend_->Len(q));
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : Length{};
  }

  std::string base_url_;
  std::string prefix_ = Unique("t") + ":";
  std::unique_ptr<QueueBackend> backend_;
};

TEST_P(NetQueueTest, FifoAndStableIds) {
  auto q = Unique("fifo");
  auto ids = Push(q, {Msg("1"), Msg("{\"a\":2}"), Msg("\"three\"")});
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 3u);
  EXPECT_EQ(Len(q).ready, 3u);
  std::vector<std::string> payloads{"1", "{\"a\":2}", "\"three\""};
  for (int i = 0; i < 3; ++i) {
    auto got = Pop(q, Now());
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, ids[i]);
    EXPECT_EQ(got[0].payload, payloads[i]);
    EXPECT_EQ(got[0].attempts, 1u);
    EXPECT_GT(got[0].received_at_ms, 1700000000000);
  }
  EXPECT_TRUE(Pop(q, Now()).empty());
  EXPECT_EQ(Len(q).ready, 0u);
}

TEST_P(NetQueueTest, PopBeforeAnyPushAndTimeoutZero) {
  auto q = Unique("empty");
  auto t0 = Clock::now();
  EXPECT_TRUE(Pop(q, Now()).empty());
  EXPECT_LT(Clock::now() - t0, 500ms);
  t0 = Clock::now();
  EXPECT_TRUE(Pop(q, Wait(400ms)).empty());
  auto took = Clock::now() - t0;
  EXPECT_GE(took, 390ms);
  EXPECT_LT(took, 600ms);  // wait_until is never exceeded by more than one round trip
  auto len = Len(q);
  EXPECT_EQ(len.ready + len.leased + len.delayed, 0u);
}

TEST_P(NetQueueTest, LongPollReturnsWhenPushed) {
  auto q = Unique("poll");
  asio::io_context ctx;
  std::optional<Result<std::vector<Message>>> got;
  Clock::time_point returned;
  asio::co_spawn(ctx, backend_->Pop(q, Wait(5000ms)), [&](std::exception_ptr, auto r) {
    got = std::move(r);
    returned = Clock::now();
  });
  Clock::time_point pushed;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(ctx, 300ms);
        co_await t.async_wait(asio::use_awaitable);
        pushed = Clock::now();
        std::vector<NewMessage> one;
        one.push_back(Msg("\"hi\""));
        auto r = co_await backend_->Push(q, std::move(one));
        EXPECT_TRUE(r);
      },
      asio::detached);
  ctx.run();
  ASSERT_TRUE(got && *got);
  ASSERT_EQ((*got)->size(), 1u);
  EXPECT_EQ((**got)[0].payload, "\"hi\"");
  EXPECT_LT(returned - pushed, 400ms);
}

TEST_P(NetQueueTest, LeaseExpiryRedeliversSameId) {
  auto q = Unique("lease");
  auto ids = Push(q, {Msg("\"x\"")});
  auto first = Pop(q, Lease(600ms));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].id, ids[0]);
  EXPECT_EQ(first[0].attempts, 1u);
  EXPECT_TRUE(Pop(q, Lease(600ms)).empty());
  auto len = Len(q);
  EXPECT_EQ(len.ready, 0u);
  EXPECT_EQ(len.leased, 1u);
  auto again = Pop(q, Wait(3000ms, 5000ms));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, ids[0]);
  EXPECT_EQ(again[0].attempts, 2u);
  // The first lease expired: acking it by id now acks the new lease (same id); acking twice fails.
  EXPECT_TRUE(Await(backend_->Ack(q, "", ids[0])));
  auto twice = Await(backend_->Ack(q, "", ids[0]));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, ErrorCode::kNotFound);
  len = Len(q);
  EXPECT_EQ(len.ready + len.leased + len.delayed, 0u);
}

TEST_P(NetQueueTest, AckOfExpiredLeaseIsNotFound) {
  auto q = Unique("expired");
  auto ids = Push(q, {Msg("1")});
  ASSERT_EQ(Pop(q, Lease(300ms)).size(), 1u);
  std::this_thread::sleep_for(600ms);
  auto r = Await(backend_->Ack(q, "", ids[0]));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  auto unknown = Await(backend_->Ack(q, "", "no-such-id"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  auto nack = Await(backend_->Nack(q, "no-such-id", 0ms));
  ASSERT_FALSE(nack);
  EXPECT_EQ(nack.error().code, ErrorCode::kNotFound);
  // It is still there.
  auto got = Pop(q, Wait(2000ms));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, ids[0]);
}

TEST_P(NetQueueTest, NackNowAndWithDelay) {
  auto q = Unique("nack");
  auto ids = Push(q, {Msg("\"n\"")});
  auto a = Pop(q, Lease(10000ms));
  ASSERT_EQ(a.size(), 1u);
  ASSERT_TRUE(Await(backend_->Nack(q, ids[0], 0ms)));
  auto b = Pop(q, Wait(1000ms, 10000ms));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].id, ids[0]);
  EXPECT_EQ(b[0].attempts, 2u);
  ASSERT_TRUE(Await(backend_->Nack(q, ids[0], 700ms)));
  auto len = Len(q);
  EXPECT_EQ(len.ready, 0u);
  EXPECT_EQ(len.leased, 0u);
  EXPECT_EQ(len.delayed, 1u);
  auto t0 = Clock::now();
  EXPECT_TRUE(Pop(q, Now()).empty());
  auto c = Pop(q, Wait(4000ms, 10000ms));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_GE(Clock::now() - t0, 550ms);
  EXPECT_EQ(c[0].id, ids[0]);
  EXPECT_EQ(c[0].attempts, 3u);
  EXPECT_EQ(c[0].payload, "\"n\"");
}

TEST_P(NetQueueTest, NackedMaxAttemptsGoesToDlq) {
  auto q = Unique("dlq");
  auto ids = Push(q, {Msg("{\"k\":1}")});
  for (uint32_t i = 1; i <= 3; ++i) {
    auto got = Pop(q, Wait(2000ms, 10000ms));
    ASSERT_EQ(got.size(), 1u) << "delivery " << i;
    EXPECT_EQ(got[0].attempts, i);
    ASSERT_TRUE(Await(backend_->Nack(q, ids[0], 0ms)));
  }
  EXPECT_TRUE(Pop(q, Now()).empty());
  auto dead = Pop(q + ".dlq", Wait(2000ms));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, ids[0]);
  EXPECT_EQ(dead[0].payload, "{\"k\":1}");
  EXPECT_EQ(dead[0].attempts, 1u);
}

TEST_P(NetQueueTest, ExpiredMaxAttemptsGoesToDlqWithoutAnyPop) {
  auto q = Unique("dlqexp");
  auto ids = Push(q, {Msg("7")});
  for (uint32_t i = 1; i <= 3; ++i) {
    auto got = Pop(q, Wait(3000ms, 300ms));
    ASSERT_EQ(got.size(), 1u) << "delivery " << i;
    EXPECT_EQ(got[0].attempts, i);
  }
  // Nobody pops q again: the third lease's expiry alone moves the message.
  auto dead = Pop(q + ".dlq", Wait(3000ms));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, ids[0]);
  auto len = Len(q);
  EXPECT_EQ(len.ready + len.leased + len.delayed, 0u);
}

TEST_P(NetQueueTest, DelayedPush) {
  auto q = Unique("delay");
  auto t0 = Clock::now();
  auto ids = Push(q, {Msg("\"later\"", 800), Msg("\"now\"")});
  auto first = Pop(q, Now());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].payload, "\"now\"");
  EXPECT_EQ(Len(q).delayed, 1u);
  auto later = Pop(q, Wait(4000ms));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].id, ids[0]);
  EXPECT_GE(Clock::now() - t0, 750ms);
}

TEST_P(NetQueueTest, DueDelayedMessageIsReadyWithoutAnyPop) {
  auto q = Unique("duelen");
  Push(q, {Msg("1", 300)});
  auto len = Len(q);
  EXPECT_EQ(len.delayed, 1u);
  EXPECT_EQ(len.ready, 0u);
  std::this_thread::sleep_for(900ms);
  len = Len(q);
  EXPECT_EQ(len.ready, 1u);
  EXPECT_EQ(len.delayed, 0u);
}

TEST_P(NetQueueTest, DedupIdReturnsFirstId) {
  auto q = Unique("dedup");
  auto a = Push(q, {Msg("1", 0, "order-1")});
  auto b = Push(q, {Msg("2", 0, "order-1"), Msg("3", 0, "order-2")});
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], a[0]);
  EXPECT_NE(b[1], a[0]);
  EXPECT_EQ(Len(q).ready, 2u);
  auto got = Pop(q, Now());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "1");
}

TEST_P(NetQueueTest, FanOutGroups) {
  auto t = Unique("topic");
  // Published before any group exists: nobody receives it.
  ASSERT_TRUE(Await(backend_->Publish(t, Msg("0"))));
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g1", Now(10)))->empty());
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g2", Now(10)))->empty());
  auto id1 = Await(backend_->Publish(t, Msg("1")));
  auto id2 = Await(backend_->Publish(t, Msg("2")));
  ASSERT_TRUE(id1 && id2);
  for (const char* g : {"g1", "g2"}) {
    auto got = Await(backend_->Subscribe(t, g, Now(10)));
    ASSERT_TRUE(got) << got.error().message;
    ASSERT_EQ(got->size(), 2u) << g;
    EXPECT_EQ((*got)[0].id, *id1);
    EXPECT_EQ((*got)[1].id, *id2);
    EXPECT_EQ((*got)[1].payload, "2");
    EXPECT_TRUE(Await(backend_->Subscribe(t, g, Now(10)))->empty());
  }
  // A topic and a queue may share a name.
  EXPECT_TRUE(Pop(t, Now()).empty());
}

TEST_P(NetQueueTest, GroupConsumersShareAndLeasesAck) {
  auto t = Unique("share");
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g", Now(10)))->empty());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Await(backend_->Publish(t, Msg(std::to_string(i)))));
  auto a = Await(backend_->Subscribe(t, "g", Lease(10000ms, 2)));
  auto b = Await(backend_->Subscribe(t, "g", Lease(10000ms, 10)));
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->size(), 2u);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*a)[0].payload, "0");
  EXPECT_EQ((*b)[1].payload, "3");
  for (const auto& m : *a) EXPECT_TRUE(Await(backend_->Ack(t, "g", m.id)));
  for (const auto& m : *b) EXPECT_TRUE(Await(backend_->Ack(t, "g", m.id)));
  auto again = Await(backend_->Ack(t, "g", (*a)[0].id));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
}

TEST_P(NetQueueTest, TopicLeaseExpiryRedeliversToGroup) {
  auto t = Unique("tlease");
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g", Now()))->empty());
  auto id = Await(backend_->Publish(t, Msg("\"m\"")));
  ASSERT_TRUE(id);
  auto a = Await(backend_->Subscribe(t, "g", Lease(300ms)));
  ASSERT_TRUE(a && a->size() == 1u);
  auto b = Await(backend_->Subscribe(t, "g", Receive{10000ms, Clock::now() + 3000ms, 1, 0ms, {}}));
  ASSERT_TRUE(b);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].id, *id);
  EXPECT_EQ((*b)[0].attempts, 2u);
  EXPECT_TRUE(Await(backend_->Ack(t, "g", *id)));
}

TEST_P(NetQueueTest, CompetingConsumersGetEachMessageOnce) {
  auto q = Unique("compete");
  std::vector<NewMessage> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Msg(std::to_string(i)));
  auto ids = Push(q, std::move(batch));
  ASSERT_EQ(ids.size(), 200u);
  std::vector<std::vector<std::string>> seen(4);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (;;) {
        auto got = Await(backend_->Pop(q, Now()));
        if (!got || got->empty()) return;
        seen[w].push_back((*got)[0].id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::multiset<std::string> all;
  for (auto& s : seen) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.size(), 200u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()),
            std::set<std::string>(ids.begin(), ids.end()));
}

TEST_P(NetQueueTest, BigPayloadAndGather) {
  auto q = Unique("big");
  std::string big = "\"" + std::string(2 << 20, 'x') + "\"";
  auto ids = Push(q, {Msg(big)});
  auto got = Pop(q, Now());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, big);
  // Subscribe-style gather: the second message arrives inside the window.
  auto t = Unique("gather");
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g", Now()))->empty());
  asio::io_context ctx;
  std::optional<Result<std::vector<Message>>> res;
  asio::co_spawn(
      ctx,
      backend_->Subscribe(t, "g",
                          Receive{std::nullopt, Clock::now() + 3s, 10, 500ms, Clock::now() + 10s}),
      [&](std::exception_ptr, auto r) { res = std::move(r); });
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await backend_->Publish(t, Msg("1"));
        asio::steady_timer timer(ctx, 150ms);
        co_await timer.async_wait(asio::use_awaitable);
        co_await backend_->Publish(t, Msg("2"));
      },
      asio::detached);
  ctx.run();
  ASSERT_TRUE(res && *res);
  EXPECT_EQ((*res)->size(), 2u);
}

TEST_P(NetQueueTest, DrainWakesWaiters) {
  auto q = Unique("drain");
  asio::io_context ctx;
  std::optional<Result<std::vector<Message>>> got;
  auto t0 = Clock::now();
  asio::co_spawn(ctx, backend_->Pop(q, Wait(5000ms)),
                 [&](std::exception_ptr, auto r) { got = std::move(r); });
  std::thread drainer([&] {
    std::this_thread::sleep_for(200ms);
    backend_->Drain();
  });
  ctx.run();
  drainer.join();
  ASSERT_TRUE(got && *got);
  EXPECT_TRUE((*got)->empty());
  EXPECT_LT(Clock::now() - t0, 1500ms);
}

TEST_P(NetQueueTest, PushedMessageSurvivesBackendRestart) {
  auto q = Unique("durable");
  auto ids = Push(q, {Msg("\"keep\"")});
  ASSERT_EQ(Pop(q, Lease(400ms)).size(), 1u);  // an unacked lease comes back after a restart
  backend_->Close();
  backend_ = Open("max_attempts=3");
  auto got = Pop(q, Wait(5000ms));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, ids[0]);
  EXPECT_EQ(got[0].payload, "\"keep\"");
}

#ifdef MIKCAR_WITH_QUEUE_REDIS
// Redis stalls (CLIENT PAUSE) while pops without a lease are in flight, so their replies come
// back after their wait_until (past the margin the service keeps before the HTTP deadline):
// they must hand out nothing and leave the messages ready, not lose them.
class RedisNetQueueTest : public NetQueueTest {};  // stalls the server with CLIENT PAUSE

TEST_P(RedisNetQueueTest, PopWhoseReplyIsLateLosesNothing) {
  auto q = Unique("stall");
  auto t = Unique("stalltopic");
  auto ids = Push(q, {Msg("\"a\""), Msg("\"b\"")});
  EXPECT_TRUE(Await(backend_->Subscribe(t, "g", Now()))->empty());
  auto tid = Await(backend_->Publish(t, Msg("\"t\"")));
  ASSERT_TRUE(tid);
  auto uri = ParseUri(base_url_);
  ASSERT_TRUE(uri);
  auto options = redis::OptionsFromUri(*uri);
  ASSERT_TRUE(options) << options.error().message;
  auto admin = redis::Client::Create(*options);
  std::vector<std::string> pause{"CLIENT", "PAUSE", "800", "ALL"};
  auto paused = Await(admin->Command(pause));
  ASSERT_TRUE(paused && !paused->is_error()) << (paused ? paused->str : paused.error().message);
  auto t0 = Clock::now();
  asio::io_context ctx;
  std::optional<Result<std::vector<Message>>> now, soon, group;
  // Requests whose deadlines (deliver_by) pass during the stall: one unset (wait_until + 250 ms).
  auto right_now = Now(), in_a_while = Wait(300ms), group_now = Now(10);
  right_now.deliver_by = Clock::now() + 300ms;
  in_a_while.deliver_by = Clock::now() + 500ms;
  group_now.deliver_by.reset();
  asio::co_spawn(ctx, backend_->Pop(q, right_now), [&](std::exception_ptr, auto r) { now = r; });
  asio::co_spawn(ctx, backend_->Pop(q, in_a_while), [&](std::exception_ptr, auto r) { soon = r; });
  asio::co_spawn(ctx, backend_->Subscribe(t, "g", group_now),
                 [&](std::exception_ptr, auto r) { group = r; });
  ctx.run();
  EXPECT_GE(Clock::now() - t0, 700ms);
  for (auto* r : {&now, &soon, &group}) {
    ASSERT_TRUE(*r && **r) << (*r ? (**r).error().message : "no answer");
    EXPECT_TRUE((**r)->empty()) << "handed out " << (**r)->size() << " message(s) too late";
  }
  // Released at once and not counted as a delivery (their order is only by push millisecond).
  auto len = Len(q);
  EXPECT_EQ(len.ready, 2u);
  EXPECT_EQ(len.leased, 0u);
  std::set<std::string> back;
  for (int i = 0; i < 2; ++i) {
    auto got = Pop(q, Now());
    ASSERT_EQ(got.size(), 1u);
    back.insert(got[0].id);
    EXPECT_EQ(got[0].attempts, 1u);
  }
  EXPECT_EQ(back, std::set<std::string>(ids.begin(), ids.end()));
  auto again = Await(backend_->Subscribe(t, "g", Now(10)));
  ASSERT_TRUE(again);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].id, *tid);
  EXPECT_EQ((*again)[0].attempts, 1u);
  EXPECT_TRUE(Pop(q, Now()).empty());
  admin->Close();
}
#endif

#ifdef MIKCAR_WITH_QUEUE_AMQP
// RabbitMQ refuses a message over its max_message_size (the test broker's is in
// MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE) by closing the channel. A batch with such a message in the
// middle stores none of its messages, and the backend keeps its connection and the leases on it.
class AmqpNetQueueTest : public NetQueueTest {};

TEST_P(AmqpNetQueueTest, BatchFailingPartWayStoresNothing) {
  const char* max = std::getenv("MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE");
  if (max == nullptr) GTEST_SKIP() << "MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE is not set";
  auto q = Unique("atomic");
  auto held = Push(q, {Msg("\"held\"")});
  auto leased = Pop(q, Lease(30s));
  ASSERT_EQ(leased.size(), 1u);
  std::string too_big = "\"" + std::string(std::stoul(max) + (1 << 20), 'x') + "\"";
  auto refused = Await(backend_->Push(q, {Msg("1"), Msg("2"), Msg(too_big), Msg("4")}));
  ASSERT_FALSE(refused) << "a batch with a message over max_message_size was stored";
  EXPECT_EQ(refused.error().code, ErrorCode::kPayloadTooLarge) << refused.error().message;
  auto len = Len(q);
  EXPECT_EQ(len.ready, 0u);
  EXPECT_EQ(len.leased, 1u);
  EXPECT_TRUE(Pop(q, Now(10)).empty());
  auto acked = Await(backend_->Ack(q, "", held[0]));
  EXPECT_TRUE(acked) << acked.error().message;
  // The same batch without the big message is stored whole, in order.
  auto ids = Push(q, {Msg("1"), Msg("2"), Msg("4")});
  ASSERT_EQ(ids.size(), 3u);
  auto got = Pop(q, Now(10));
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i].id, ids[i]);
  EXPECT_EQ(Len(q).ready, 0u);
}

// A single push over max_message_size is refused alone: the lease another consumer holds stays
// (it is not requeued and redelivered), and the next push works.
TEST_P(AmqpNetQueueTest, RefusedSinglePushKeepsOtherLeases) {
  const char* max = std::getenv("MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE");
  if (max == nullptr) GTEST_SKIP() << "MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE is not set";
  auto q = Unique("single");
  auto held = Push(q, {Msg("\"held\"")});
  ASSERT_EQ(Pop(q, Lease(30s)).size(), 1u);
  std::string too_big = "\"" + std::string(std::stoul(max) + (1 << 20), 'x') + "\"";
  auto refused = Await(backend_->Push(q, {Msg(too_big)}));
  ASSERT_FALSE(refused) << "a message over max_message_size was stored";
  EXPECT_EQ(refused.error().code, ErrorCode::kPayloadTooLarge) << refused.error().message;
  auto len = Len(q);
  EXPECT_EQ(len.ready, 0u) << "the lease was requeued";
  EXPECT_EQ(len.leased, 1u);
  EXPECT_TRUE(Pop(q, Now()).empty());
  auto acked = Await(backend_->Ack(q, "", held[0]));
  EXPECT_TRUE(acked) << acked.error().message;
  auto after = Push(q, {Msg("\"after\"")});
  auto got = Pop(q, Now());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, after[0]);
  EXPECT_EQ(got[0].attempts, 1u);
}
#endif

INSTANTIATE_TEST_SUITE_P(Servers, NetQueueTest,
                         ::testing::Values(Param{"redis", "MIKCAR_TEST_REDIS_URL"},
                                           Param{"rediss", "MIKCAR_TEST_REDISS_URL"},
                                           Param{"amqp", "MIKCAR_TEST_AMQP_URL"},
                                           Param{"amqps", "MIKCAR_TEST_AMQPS_URL"}),
                         [](const auto& info) { return info.param.name; });
INSTANTIATE_TEST_SUITE_P(Servers, RedisNetQueueTest,
                         ::testing::Values(Param{"redis", "MIKCAR_TEST_REDIS_URL"},
                                           Param{"rediss", "MIKCAR_TEST_REDISS_URL"}),
                         [](const auto& info) { return info.param.name; });

#ifdef MIKCAR_WITH_QUEUE_AMQP
INSTANTIATE_TEST_SUITE_P(Servers, AmqpNetQueueTest,
                         ::testing::Values(Param{"amqp", "MIKCAR_TEST_AMQP_URL"},
                                           Param{"amqps", "MIKCAR_TEST_AMQPS_URL"}),
                         [](const auto& info) { return info.param.name; });
#endif

}  // namespace
}  // namespace mikcar::queue
