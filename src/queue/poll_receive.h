// Long-polling for queue backends whose server cannot push to us cheaply (Redis Streams read
// inside Lua scripts, RabbitMQ basic.get): a receive tries its server, then sleeps until the
// next poll or until this process makes a message ready on the same key, whichever is first.
// So a push through this sidecar is seen at once and one through another sidecar within the
// poll interval. The wake-ups are common/watch_hub.h's, as for the KV watch and the embedded
// queue.
#pragma once

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/watch_hub.h"
#include "mikcar/queue/backend.h"

namespace mikcar::queue {

// The receive loop of a polling backend. `fetch(n)` takes up to n ready messages now (and
// leases or removes them). Returns the first batch at once, keeps gathering for
// `receive.gather`, and never starts a fetch at or after `receive.wait_until` except the first
// one, so no message is taken for a request that has already given up. A failed fetch after
// some messages were taken returns those (they are gone from the server already).
template <typename Fetch>
boost::asio::awaitable<Result<std::vector<Message>>> PollReceive(WatchHub& wake, std::string key,
                                                                 const Receive& receive,
                                                                 std::chrono::milliseconds poll,
                                                                 const std::atomic<bool>& draining,
                                                                 Fetch fetch) {
  auto waiter = std::make_shared<WatchHub::Waiter>(co_await boost::asio::this_coro::executor);
  WatchHub::Registration registration(wake, std::move(key), waiter);
  std::vector<Message> out;
  std::optional<Clock::time_point> gather_end;
  const size_t max = std::max<size_t>(receive.max_messages, 1);
  for (;;) {
    if (receive.client_gone && *receive.client_gone) break;  // nobody to deliver to
    waiter->notified = false;  // a Notify() from here on skips the next wait
    Result<std::vector<Message>> got = co_await fetch(max - out.size());
    if (!got) {
      if (out.empty()) co_return tl::unexpected<Error>(std::move(got.error()));
      break;
    }
    for (auto& m : *got) out.push_back(std::move(m));
    if (out.size() >= max) break;
    auto now = Clock::now();
    if (!out.empty() && !gather_end)
      gather_end = std::min(now + receive.gather, receive.wait_until);
    const auto end = gather_end.value_or(receive.wait_until);
    if (now >= end || draining.load()) break;
    if (!waiter->notified) {
      waiter->timer.expires_at(std::min(end, now + poll));
      co_await waiter->timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    if (Clock::now() >= end) break;
  }
  co_return out;
}

}  // namespace mikcar::queue
