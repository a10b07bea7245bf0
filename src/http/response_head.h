// The status line and header block of a response, written straight into one reusable buffer.
// Beast's serializer walks a list of allocated fields through a chain of buffer views; for the
// small responses most routes give, that cost more CPU than the rest of the response path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mikcar::http {

class ResponseHead {
 public:
  // Starts a new head, "HTTP/1.1 200 OK" (`version` 10 or 11, as the request's).
  void Start(int status, unsigned version);
  // One header line. A value with CR or LF would split the response, so that header is left out
  // (and reported false); surrounding blanks are trimmed.
  bool Add(std::string_view name, std::string_view value);
  // Content-Length (none on 1xx, 204 and 304, which have no body), the Connection header
  // `keep_alive` needs for the version, and the blank line.
  void End(std::optional<uint64_t> content_length, bool keep_alive);

  std::string_view view() const { return buffer_; }

 private:
  std::string buffer_;
  int status_ = 200;
  unsigned version_ = 11;
};

// The head of `100 Continue`.
inline constexpr std::string_view kContinueHead = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace mikcar::http
