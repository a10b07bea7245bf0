#include "storage/listing.h"

#include <algorithm>

namespace mikcar::storage {

ListingPage::ListingPage(const ListOptions& options)
    : options_(options), first_(std::max(options.prefix, options.start_after)) {
  // A cursor that is a common prefix resumes after the whole group.
  if (!options.delimiter.empty() && options.start_after.starts_with(options.prefix) &&
      options.start_after.ends_with(options.delimiter) &&
      options.start_after.find(options.delimiter, options.prefix.size()) +
              options.delimiter.size() ==
          options.start_after.size()) {
    last_group_ = options.start_after;
  }
}

bool ListingPage::SkipsAll(std::string_view key_prefix) const {
  return !last_group_.empty() && key_prefix.starts_with(last_group_);
}

bool ListingPage::PastEnd(std::string_view key) const {
  return !key.starts_with(options_.prefix) && key > std::string_view(options_.prefix);
}

bool ListingPage::Add(ObjectInfo info) {
  const std::string& key = info.path;
  if (full_) return false;
  if (!key.starts_with(options_.prefix) || key <= options_.start_after) return true;
  if (!last_group_.empty() && key.starts_with(last_group_)) return true;
  if (!options_.delimiter.empty()) {
    size_t at = key.find(options_.delimiter, options_.prefix.size());
    if (at != std::string::npos) {
      std::string group = key.substr(0, at + options_.delimiter.size());
      if (count_ == options_.limit) {
        full_ = true;
        return false;
      }
      last_group_ = group;
      page_.common_prefixes.push_back(group);
      page_.next = std::move(group);
      ++count_;
      return true;
    }
  }
  if (count_ == options_.limit) {
    full_ = true;
    return false;
  }
  page_.next = key;
  page_.objects.push_back(std::move(info));
  ++count_;
  return true;
}

ListPage ListingPage::Finish() {
  if (!full_) page_.next.reset();
  return std::move(page_);
}

}  // namespace mikcar::storage
