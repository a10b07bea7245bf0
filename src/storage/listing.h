// Builds one page of a listing from keys fed in ascending byte order: the part every backend
// shares (prefix, exclusive start key, delimiter grouping into common prefixes, limit, cursor).
#pragma once

#include <string>
#include <string_view>

#include "mikcar/storage/backend.h"

namespace mikcar::storage {

class ListingPage {
 public:
  explicit ListingPage(const ListOptions& options);

  // The smallest key worth feeding: keys below it are before the page.
  const std::string& first_key() const { return first_; }
  // True when every key starting with `key_prefix` is skipped (already grouped or before the
  // start), so a backend can skip that whole range.
  bool SkipsAll(std::string_view key_prefix) const;
  // Feeds the next key (ascending). Returns false once the page is full: stop feeding.
  bool Add(ObjectInfo info);
  // True when `key` is past every key this listing can return (outside the prefix).
  bool PastEnd(std::string_view key) const;
  ListPage Finish();

 private:
  const ListOptions& options_;
  std::string first_;
  std::string last_group_;  // the last common prefix emitted (or the cursor's group)
  ListPage page_;
  size_t count_ = 0;
  bool full_ = false;
};

}  // namespace mikcar::storage
