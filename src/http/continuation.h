// A completion token adapter: `Continuation(token)` marks the completion handler as a
// continuation of the handler that started the operation (Asio's asio_handler_is_continuation).
//
// Why: a connection's coroutine starts one operation at a time, and its completion is the next
// step of the same chain. Asio queues a completion that is ready at once (a write the socket took
// whole, a read of bytes already there) on the shared run queue and wakes an idle I/O thread for
// it, unless the handler is a continuation: then it stays on the thread that started it, which
// runs it next. Fewer futex wake-ups, and the connection's state stays in one core's cache.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <type_traits>
#include <utility>

namespace mikcar::http {

template <typename Token>
struct ContinuationToken {
  Token token;
};

template <typename Token>
constexpr ContinuationToken<std::decay_t<Token>> Continuation(Token&& token) {
  return {std::forward<Token>(token)};
}

template <typename Handler>
struct ContinuationHandler {
  template <typename... Args>
  void operator()(Args&&... args) {
    std::move(handler)(std::forward<Args>(args)...);
  }
  friend bool asio_handler_is_continuation(ContinuationHandler*) { return true; }

  Handler handler;
};

}  // namespace mikcar::http

namespace boost::asio {

// The wrapped handler keeps the executor, allocator and cancellation slot of the one it wraps.
template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, mikcar::http::ContinuationHandler<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const mikcar::http::ContinuationHandler<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const mikcar::http::ContinuationHandler<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};

template <typename Token, typename... Signatures>
struct async_result<mikcar::http::ContinuationToken<Token>, Signatures...>
    : async_result<Token, Signatures...> {
  template <typename Initiation>
  struct Wrapper {
    template <typename Handler, typename... Args>
    void operator()(Handler&& handler, Args&&... args) {
      std::move(initiation)(
          mikcar::http::ContinuationHandler<std::decay_t<Handler>>{std::forward<Handler>(handler)},
          std::forward<Args>(args)...);
    }
    Initiation initiation;
  };

  template <typename Initiation, typename RawToken, typename... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    return async_result<Token, Signatures...>::initiate(
        Wrapper<std::decay_t<Initiation>>{std::forward<Initiation>(initiation)},
        std::forward<RawToken>(token).token, std::forward<Args>(args)...);
  }
};

}  // namespace boost::asio
