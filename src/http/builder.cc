#include "mikcar/builder.h"

#include "http/server.h"

namespace mikcar {

SidecarHandle::SidecarHandle(std::unique_ptr<http::Server> server) : server_(std::move(server)) {}
SidecarHandle::SidecarHandle(SidecarHandle&&) noexcept = default;
SidecarHandle& SidecarHandle::operator=(SidecarHandle&& other) noexcept {
  stop();
  server_ = std::move(other.server_);
  return *this;
}
SidecarHandle::~SidecarHandle() { stop(); }

uint16_t SidecarHandle::port() const { return server_ ? server_->port() : 0; }

void SidecarHandle::wait(std::function<void()> on_hangup) {
  if (server_) server_->WaitForSignal(std::move(on_hangup));
}

Result<void> SidecarHandle::set_tokens(std::string auth_token, std::vector<ScopedToken> tokens) {
  if (!server_) return Fail(ErrorCode::kBadRequest, "the server has stopped");
  return server_->SetTokens(std::move(auth_token), std::move(tokens));
}

void SidecarHandle::stop() {
  if (server_) server_->Stop();
}

Result<SidecarHandle> SidecarBuilder::start() {
  auto server = http::Server::Create(options_, std::move(services_));
  if (!server) return Fail(server.error());
  if (auto started = (*server)->Start(); !started) return Fail(started.error());
  return SidecarHandle(std::move(*server));
}

Result<void> SidecarBuilder::serve() {
  auto handle = start();
  if (!handle) return Fail(handle.error());
  handle->wait();
  return {};
}

}  // namespace mikcar
