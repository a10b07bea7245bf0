#include "storage/memory/memory_storage_backend.h"

#include <map>
#include <mutex>

#include "storage/digest.h"
#include "storage/listing.h"
#include "storage/object_rules.h"

namespace mikcar::storage {
namespace {

// An immutable version of an object; readers keep it alive while they stream it.
struct Stored {
  ObjectInfo info;
  std::shared_ptr<const std::string> data;
};

// Streams [offset, offset + length) of one stored version in 1 MiB views.
class StoredBody final : public BodyStream {
 public:
  StoredBody(std::shared_ptr<const std::string> data, ByteRange range)
      : data_(std::move(data)), range_(range) {}
  boost::asio::awaitable<Result<std::string_view>> Next() override {
    constexpr uint64_t kChunk = 1 << 20;
    uint64_t n = std::min(kChunk, range_.length);
    std::string_view chunk(data_->data() + range_.offset, n);
    range_.offset += n;
    range_.length -= n;
    co_return chunk;
  }

 private:
  std::shared_ptr<const std::string> data_;
  ByteRange range_;
};

class MemoryStorageBackend final : public StorageBackend {
 public:
  std::string name() const override { return "memory"; }

  Task<ObjectInfo> Put(std::string path, PutOptions options, BodyStream& body) override {
    auto data = std::make_shared<std::string>();
    Md5 md5;
    for (;;) {
      auto chunk = co_await body.Next();
      if (!chunk) co_return Fail(chunk.error());
      if (chunk->empty()) break;
      if (options.max_size && data->size() + chunk->size() > options.max_size) {
        co_return Fail(ErrorCode::kPayloadTooLarge,
                       "object exceeds the " + std::to_string(options.max_size) + "-byte limit");
      }
      md5.Update(*chunk);
      data->append(*chunk);
    }
    std::string digest = md5.Final();
    if (auto ok = CheckDigest(options, digest); !ok) co_return Fail(ok.error());
    auto stored = std::make_shared<Stored>();
    stored->info = ObjectInfo{path,
                              data->size(),
                              std::chrono::system_clock::now(),
                              EtagOf(digest),
                              std::move(options.content_type),
                              std::move(options.metadata)};
    stored->data = std::move(data);
    std::lock_guard lock(mu_);
    auto it = objects_.find(path);
    if (auto ok = CheckPutConditions(options, it == objects_.end() ? nullptr : &it->second->info);
        !ok) {
      co_return Fail(ok.error());
    }
    ObjectInfo info = stored->info;
    objects_[std::move(path)] = std::move(stored);
    co_return info;
  }

  Task<Object> Get(std::string path, std::optional<RangeSpec> range) override {
    auto stored = Find(path);
    if (!stored) co_return Fail(ErrorCode::kNotFound, "object not found: " + path);
    Object object;
    object.info = stored->info;
    if (auto part = SelectRange(object, range))
      object.body = std::make_shared<StoredBody>(stored->data, *part);
    co_return object;
  }

  Task<ObjectInfo> Head(std::string path) override {
    auto stored = Find(path);
    if (!stored) co_return Fail(ErrorCode::kNotFound, "object not found: " + path);
    co_return stored->info;
  }

  Task<void> Delete(std::string path) override {
    std::lock_guard lock(mu_);
    if (objects_.erase(path) == 0)
      co_return Fail(ErrorCode::kNotFound, "object not found: " + path);
    co_return Result<void>{};
  }

  Task<ListPage> List(ListOptions options) override {
    ListingPage page(options);
    std::lock_guard lock(mu_);
    for (auto it = objects_.lower_bound(page.first_key()); it != objects_.end(); ++it) {
      if (page.PastEnd(it->first)) break;
      if (!page.Add(it->second->info)) break;
    }
    co_return page.Finish();
  }

  Task<ObjectInfo> Copy(std::string from, std::string to) override {
    auto source = Find(from);
    if (!source) co_return Fail(ErrorCode::kNotFound, "source object not found: " + from);
    auto copy = std::make_shared<Stored>(*source);
    copy->info.path = to;
    copy->info.modified = std::chrono::system_clock::now();
    std::lock_guard lock(mu_);
    objects_[std::move(to)] = copy;
    co_return copy->info;
  }

  Task<void> Ready() override { co_return Result<void>{}; }

 private:
  std::shared_ptr<const Stored> Find(const std::string& path) {
    std::lock_guard lock(mu_);
    auto it = objects_.find(path);
    return it == objects_.end() ? nullptr : it->second;
  }

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Stored>> objects_;
};

}  // namespace

std::unique_ptr<StorageBackend> NewMemoryStorageBackend() {
  return std::make_unique<MemoryStorageBackend>();
}

}  // namespace mikcar::storage
