#include "common/redis/redis_client.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/sha.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/async.h"

namespace mikcar::redis {
namespace {

namespace asio = boost::asio;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kConnectTimeout = std::chrono::seconds(3);

std::string Format(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  std::string out = n > 0 ? std::string(cmd, static_cast<size_t>(n)) : std::string();
  redisFreeCommand(cmd);
  return out;
}

Reply Convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
  }
  return out;
}

std::string Sha1Hex(const std::string& s) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

class ClientImpl final : public Client, public std::enable_shared_from_this<ClientImpl> {
 public:
  explicit ClientImpl(Options options) : options_(std::move(options)) {
    if (options_.tls) {
      ssl_ctx_.set_default_verify_paths();
      ssl_ctx_.set_verify_mode(options_.tls_insecure ? asio::ssl::verify_none
                                                     : asio::ssl::verify_peer);
    }
  }
  ~ClientImpl() override { Close(); }

  void Start() {
    thread_ = std::thread([this] { ctx_.run(); });
  }

  asio::awaitable<Result<Reply>> Command(std::vector<std::string> args) override {
    auto start = [self = shared_from_this(),
                  cmd = Format(args)](std::shared_ptr<Completion<Reply>> done) mutable {
      asio::post(self->ctx_, [self, cmd = std::move(cmd), done]() mutable {
        self->Enqueue(std::move(cmd), done);
      });
    };
    co_return co_await Suspend<Reply>(std::move(start));
  }

  asio::awaitable<Result<Reply>> Eval(const std::string& script, std::vector<std::string> keys,
                                      std::vector<std::string> args) override {
    std::vector<std::string> cmd{"EVALSHA", Sha(script), std::to_string(keys.size())};
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto reply = co_await Command(cmd);
    if (reply && reply->is_error() && reply->str.starts_with("NOSCRIPT")) {
      cmd[0] = "EVAL";
      cmd[1] = script;
      reply = co_await Command(std::move(cmd));
    }
    co_return reply;
  }

  void Close() override {
    std::call_once(closed_, [this] {
      asio::post(ctx_, [this] {
        boost::system::error_code ignored;
        Socket().close(ignored);
        guard_.reset();
      });
      if (thread_.joinable()) thread_.join();
    });
  }

 private:
  std::string Sha(const std::string& script) {
    std::lock_guard lock(sha_mu_);
    auto it = sha_.find(script);
    if (it == sha_.end()) it = sha_.emplace(script, Sha1Hex(script)).first;
    return it->second;
  }

  // Client thread only from here on.
  void Enqueue(std::string cmd, std::shared_ptr<Completion<Reply>> done) {
    out_ += cmd;
    pending_.push_back(std::move(done));
    if (state_ == State::kDisconnected) {
      state_ = State::kConnecting;
      asio::co_spawn(ctx_, Run(), asio::detached);
    } else if (state_ == State::kConnected && !writing_) {
      asio::co_spawn(ctx_, Flush(), asio::detached);
    }
  }

  asio::awaitable<void> Flush() {
    writing_ = true;
    while (!out_.empty() && state_ == State::kConnected) {
      std::string buffer;
      buffer.swap(out_);
      auto [ec, n] = options_.tls
                         ? co_await asio::async_write(*stream_, asio::buffer(buffer), kTuple)
                         : co_await asio::async_write(Socket(), asio::buffer(buffer), kTuple);
      if (ec) {
        boost::system::error_code ignored;
        Socket().close(ignored);  // the reader sees it and fails what is in flight
        break;
      }
    }
    writing_ = false;
  }

  // Connects, sends AUTH/SELECT ahead of the queued commands, then reads replies until the
  // connection fails.
  asio::awaitable<void> Run() {
    std::string failure = Connect(co_await ConnectSocket());
    size_t handshake = 0;
    if (failure.empty()) {
      std::string hello;
      if (!options_.password.empty()) {
        hello += options_.user.empty() ? Format({"AUTH", options_.password})
                                       : Format({"AUTH", options_.user, options_.password});
        ++handshake;
      }
      if (options_.db != 0) {
        hello += Format({"SELECT", std::to_string(options_.db)});
        ++handshake;
      }
      out_ = hello + out_;
      state_ = State::kConnected;
      asio::co_spawn(ctx_, Flush(), asio::detached);
      std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(),
                                                                  redisReaderFree);
      char buf[64 * 1024];
      while (failure.empty()) {
        auto [ec, n] = options_.tls ? co_await stream_->async_read_some(asio::buffer(buf), kTuple)
                                    : co_await Socket().async_read_some(asio::buffer(buf), kTuple);
        if (ec) {
          failure = "connection lost: " + ec.message();
          break;
        }
        if (redisReaderFeed(reader.get(), buf, n) != REDIS_OK) {
          failure = "protocol error";
          break;
        }
        for (;;) {
          void* raw = nullptr;
          if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
            failure = "protocol error";
            break;
          }
          if (raw == nullptr) break;
          Reply reply = Convert(static_cast<redisReply*>(raw));
          freeReplyObject(raw);
          if (handshake > 0) {
            --handshake;
            if (reply.is_error()) failure = "handshake (AUTH/SELECT) failed: " + reply.str;
            continue;
          }
          if (pending_.empty()) {
            failure = "reply without a command";
            break;
          }
          auto done = std::move(pending_.front());
          pending_.pop_front();
          done->Complete(std::move(reply));
        }
      }
    }
    boost::system::error_code ignored;
    Socket().close(ignored);
    state_ = State::kDisconnected;
    out_.clear();
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& done : pending) {
      done->Complete(
          Fail(ErrorCode::kUnavailable,
               "redis " + options_.host + ":" + std::to_string(options_.port) + ": " + failure));
    }
  }

  asio::ip::tcp::socket& Socket() { return stream_->next_layer(); }

  asio::awaitable<boost::system::error_code> ConnectSocket() {
    asio::ip::tcp::resolver resolver(ctx_);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(options_.host, std::to_string(options_.port), kTuple);
    if (rec) co_return rec;
    stream_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(ctx_, ssl_ctx_);
    asio::steady_timer timer(ctx_, kConnectTimeout);
    timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) {
        boost::system::error_code ignored;
        Socket().close(ignored);
      }
    });
    auto [ec, ep] = co_await asio::async_connect(Socket(), endpoints, kTuple);
    if (!ec) Socket().set_option(asio::ip::tcp::no_delay(true), ec);
    if (!ec && options_.tls) {
      SSL_set_tlsext_host_name(stream_->native_handle(), options_.host.c_str());
      if (!options_.tls_insecure)
        stream_->set_verify_callback(asio::ssl::host_name_verification(options_.host));
      std::tie(ec) = co_await stream_->async_handshake(asio::ssl::stream_base::client, kTuple);
    }
    timer.cancel();
    co_return ec;
  }

  static std::string Connect(boost::system::error_code ec) {
    return ec ? "cannot connect: " + ec.message() : std::string();
  }

  enum class State { kDisconnected, kConnecting, kConnected };

  Options options_;
  asio::io_context ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(ctx_);
  std::thread thread_;
  std::once_flag closed_;
  asio::ssl::context ssl_ctx_{asio::ssl::context::tls_client};
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> stream_ =
      std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(ctx_, ssl_ctx_);
  State state_ = State::kDisconnected;
  std::string out_;
  bool writing_ = false;
  std::deque<std::shared_ptr<Completion<Reply>>> pending_;
  std::mutex sha_mu_;
  std::unordered_map<std::string, std::string> sha_;
};

}  // namespace

Result<Options> OptionsFromUri(const Uri& uri) {
  Options options;
  options.host = uri.host.empty() ? "127.0.0.1" : uri.host;
  options.port = uri.port.value_or(6379);
  options.user = uri.user;
  options.password = uri.password;
  options.tls = uri.scheme == "rediss";
  options.tls_insecure = uri.query_param("insecure").value_or("") == "true";
  std::string_view db = uri.path;
  if (db.starts_with('/')) db.remove_prefix(1);
  if (!db.empty()) {
    auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), options.db);
    if (ec != std::errc() || ptr != db.data() + db.size() || options.db < 0) {
      return Fail(ErrorCode::kBadRequest,
                  "expected redis://[:password@]host:port[/db] with a numeric db; got path '" +
                      uri.path + "'");
    }
  }
  return options;
}

std::shared_ptr<Client> Client::Create(Options options) {
  auto client = std::make_shared<ClientImpl>(std::move(options));
  client->Start();
  return client;
}

}  // namespace mikcar::redis
