#include "http/response_head.h"

#include <boost/beast/http/status.hpp>
#include <charconv>
#include <cstring>

#include "common/text.h"

namespace mikcar::http {
namespace {

void AppendNumber(std::string& out, uint64_t n) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

}  // namespace

void ResponseHead::Start(int status, unsigned version) {
  status_ = status;
  version_ = version;
  buffer_.clear();
  buffer_.reserve(512);
  buffer_.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  AppendNumber(buffer_, static_cast<uint64_t>(status));
  buffer_ += ' ';
  auto reason =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  buffer_.append(reason.data(), reason.size());
  buffer_.append("\r\n");
}

bool ResponseHead::Add(std::string_view name, std::string_view value) {
  value = TrimBlanks(value);
  if (std::memchr(value.data(), '\r', value.size()) ||
      std::memchr(value.data(), '\n', value.size()))
    return false;
  for (char c : name) {
    if (c == '\r' || c == '\n' || c == ':' || c == ' ') return false;
  }
  const size_t at = buffer_.size();
  buffer_.resize(at + name.size() + value.size() + 4);
  char* p = buffer_.data() + at;
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p = '\n';
  return true;
}

void ResponseHead::End(std::optional<uint64_t> content_length, bool keep_alive) {
  const bool bodiless = status_ < 200 || status_ == 204 || status_ == 304;
  if (content_length && !bodiless) {
    buffer_.append("Content-Length: ");
    AppendNumber(buffer_, *content_length);
    buffer_.append("\r\n");
  }
  if (version_ == 10 && keep_alive) buffer_.append("Connection: keep-alive\r\n");
  if (version_ != 10 && !keep_alive) buffer_.append("Connection: close\r\n");
  buffer_.append("\r\n");
}

}  // namespace mikcar::http
