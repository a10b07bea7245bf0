#include "storage/file/file_storage_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "common/blocking_pool.h"
#include "common/hex.h"
#include "storage/digest.h"
#include "storage/listing.h"
#include "storage/object_rules.h"

namespace mikcar::storage {
namespace {

// Layout (see README.md): each path segment is a file or directory name, escaped so any segment
// maps to a safe name and names never collide with mikcar's own:
//   '%' → "%25", a leading '.' → "%2E", the empty segment → "%", a name longer than 255 bytes →
//   "%h<sha-256>" with the segment in the xattr user.mikcar.name.
// An object whose path is also a "directory" of other objects (x and x/y) lives in that
// directory under the reserved name "%o". Names starting with '.' are mikcar's (temp files).
constexpr std::string_view kSelf = "%o";
// One xattr per object, read with one syscall: "etag\0content-type\0" then "name\0value\0" pairs.
constexpr const char* kXattrObject = "user.mikcar";
constexpr const char* kXattrName = "user.mikcar.name";
constexpr size_t kNameMax = 255;
constexpr size_t kReadChunk = 256 * 1024;
constexpr size_t kWriteChunk = 1 << 20;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

Error SystemError(std::string_view what, const std::string& path, int err) {
  ErrorCode code = err == ENOSPC || err == EDQUOT || err == EMFILE || err == ENFILE
                       ? ErrorCode::kUnavailable
                       : ErrorCode::kBackend;
  return Error{
      code, "file storage: " + std::string(what) + " '" + path + "': " + std::strerror(err), {}};
}

Error NotFound(const std::string& path) {
  return Error{ErrorCode::kNotFound, "object not found: " + path, {}};
}

Error ThroughSymlink(const std::string& path) {
  return Error{ErrorCode::kForbidden,
               "path '" + path +
                   "' goes through a symbolic link; the file backend never follows "
                   "links out of its root",
               {}};
}

std::string Hex(const unsigned char* data, size_t n) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(data), n));
}

std::string Encode(std::string_view segment) {
  if (segment.empty()) return "%";
  std::string name;
  for (size_t i = 0; i < segment.size(); ++i) {
    char c = segment[i];
    if (c == '%') {
      name += "%25";
    } else if (c == '.' && i == 0) {
      name += "%2E";
    } else {
      name += c;
    }
  }
  if (name.size() > kNameMax) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(segment.data()), segment.size(), digest);
    name = "%h" + Hex(digest, sizeof digest);
  }
  return name;
}

// The segment a directory entry stands for; nullopt for names that are not objects (mikcar's
// own, or files someone placed there whose names the escaping could not have produced).
std::optional<std::string> Decode(int dirfd, std::string_view name) {
  if (name.empty() || name.front() == '.' || name == kSelf) return std::nullopt;
  if (name == "%") return std::string();
  if (name.starts_with("%h")) {
    Fd fd(
        ::openat(dirfd, std::string(name).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return std::nullopt;
    char buf[1100];
    ssize_t n = ::fgetxattr(fd.get(), kXattrName, buf, sizeof buf);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  std::string segment;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      segment += name[i];
      continue;
    }
    if (i + 2 >= name.size()) return std::nullopt;
    int hi = HexDigitValue(name[i + 1]), lo = HexDigitValue(name[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    segment += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return segment;
}

std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> segments;
  for (size_t start = 0;;) {
    size_t end = path.find('/', start);
    segments.emplace_back(path.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return segments;
}

std::optional<std::string> GetXattr(int fd, const char* name) {
  char buf[64 * 1024];
  ssize_t n = ::fgetxattr(fd, name, buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

std::string PackAttributes(std::string_view etag, std::string_view type, const Metadata& metadata) {
  std::string packed;
  packed.append(etag).push_back('\0');
  packed.append(type).push_back('\0');
  for (const auto& [name, value] : metadata) {
    packed.append(name).push_back('\0');
    packed.append(value).push_back('\0');
  }
  return packed;
}

// The fields of PackAttributes() in order.
std::vector<std::string> UnpackAttributes(std::string_view packed) {
  std::vector<std::string> fields;
  for (size_t end; (end = packed.find('\0')) != std::string_view::npos;) {
    fields.emplace_back(packed.substr(0, end));
    packed.remove_prefix(end + 1);
  }
  return fields;
}

// The description of the open object file `fd`.
Result<ObjectInfo> Describe(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Fail(SystemError("stat", path, errno));
  ObjectInfo info;
  info.path = path;
  info.size = static_cast<uint64_t>(st.st_size);
  info.modified = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  auto attributes = GetXattr(fd, kXattrObject);
  std::vector<std::string> fields;
  if (attributes) fields = UnpackAttributes(*attributes);
  if (fields.size() >= 2) {
    info.etag = std::move(fields[0]);
    info.content_type = std::move(fields[1]);
    for (size_t i = 2; i + 1 < fields.size(); i += 2)
      info.metadata.emplace_back(std::move(fields[i]), std::move(fields[i + 1]));
  } else {
    // A file placed in the root by hand: an ETag from its size and modification time.
    char buf[64];
    std::snprintf(buf, sizeof buf, "\"%llx-%llx\"",
                  static_cast<unsigned long long>(st.st_mtim.tv_sec) * 1000000000ull +
                      static_cast<unsigned long long>(st.st_mtim.tv_nsec),
                  static_cast<unsigned long long>(st.st_size));
    info.etag = buf;
    info.content_type = "application/octet-stream";
  }
  return info;
}

// True when every page of `part` of `fd` is in the page cache (cachestat(2), Linux 6.5+; older
// kernels say no), so sending it from the I/O thread cannot wait for the disk.
bool Resident(int fd, ByteRange part) {
  struct Range {
    uint64_t off, len;
  } range{part.offset, part.length};
  struct Stat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat{};
  constexpr long kCachestat = 451;
  if (::syscall(kCachestat, fd, &range, &stat, 0) != 0) return false;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = (part.offset + part.length + page - 1) / page - part.offset / page;
  return stat.nr_cache >= pages;
}

// Reads a range of an open object file on the blocking pool, one chunk per call; or, when the
// range is in the page cache, lets the server send it with sendfile(2).
class FileBody final : public BodyStream {
 public:
  FileBody(std::shared_ptr<Fd> fd, ByteRange range, BlockingPool& pool, std::string path)
      : fd_(std::move(fd)),
        range_(range),
        pool_(pool),
        path_(std::move(path)),
        resident_(Resident(fd_->get(), range)) {}

  std::optional<FileRegion> file_region() const override {
    if (!resident_) return std::nullopt;
    return FileRegion{fd_->get(), range_.offset, range_.length};
  }

  boost::asio::awaitable<Result<std::string_view>> Next() override {
    if (range_.length == 0) co_return std::string_view();
    // The job shares the buffer: it stays valid even if this body is dropped mid-read.
    auto read = [fd = fd_, chunk = chunk_, range = range_, path = path_]() -> Result<size_t> {
      chunk->resize(std::min<uint64_t>(kReadChunk, range.length));
      ssize_t n =
          ::pread(fd->get(), chunk->data(), chunk->size(), static_cast<off_t>(range.offset));
      if (n < 0) return Fail(SystemError("read", path, errno));
      if (n == 0)
        return Fail(ErrorCode::kBackend, "file storage: '" + path + "' shrank while read");
      return static_cast<size_t>(n);
    };
    auto n = co_await pool_.Run(std::move(read));
    if (!n) co_return Fail(n.error());
    range_.offset += *n;
    range_.length -= *n;
    co_return std::string_view(chunk_->data(), *n);
  }

 private:
  std::shared_ptr<Fd> fd_;
  ByteRange range_;
  BlockingPool& pool_;
  std::string path_;
  std::shared_ptr<std::string> chunk_ = std::make_shared<std::string>();
  bool resident_;
};

// A body already read whole (small objects: no second trip to the pool).
class BufferedBody final : public BodyStream {
 public:
  explicit BufferedBody(std::string data) : data_(std::move(data)) {}
  boost::asio::awaitable<Result<std::string_view>> Next() override {
    if (sent_) co_return std::string_view();
    sent_ = true;
    co_return std::string_view(data_);
  }

 private:
  std::string data_;
  bool sent_ = false;
};

// Open objects recently read, so a hot GET needs no open/stat/xattr and no trip to the pool (as
// nginx's open_file_cache). Writes through this backend drop their entry before they are
// acknowledged, and an entry is only added if no write happened while it was being opened, so a
// GET never sees an older version than the last acknowledged write. Changes made to the files
// behind mikcar's back are seen within kFresh.
class OpenObjectCache {
 public:
  struct Entry {
    std::shared_ptr<Fd> fd;
    ObjectInfo info;
    std::chrono::steady_clock::time_point opened;
  };
  static constexpr auto kFresh = std::chrono::seconds(1);
  // Each entry holds a file descriptor: few enough to stay far from a 1024-fd limit.
  static constexpr size_t kMaxEntries = 256;

  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  std::optional<Entry> Find(const std::string& path) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(path);
    if (it == entries_.end()) return std::nullopt;
    if (std::chrono::steady_clock::now() - it->second.opened > kFresh) {
      entries_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }
  void Insert(const std::string& path, Entry entry, uint64_t generation_seen) {
    std::lock_guard lock(mu_);
    if (generation_.load(std::memory_order_acquire) != generation_seen) return;
    if (entries_.size() >= kMaxEntries) {
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(entries_, [now](const auto& e) { return now - e.second.opened > kFresh; });
      if (entries_.size() >= kMaxEntries) entries_.erase(entries_.begin());
    }
    entries_[path] = std::move(entry);
  }
  void Invalidate(const std::string& path) {
    std::lock_guard lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    entries_.erase(path);
  }

 private:
  std::mutex mu_;
  std::atomic<uint64_t> generation_{0};
  std::unordered_map<std::string, Entry> entries_;
};

// Reads [offset, offset + length) of `fd` whole. With RWF_NOWAIT only from the page cache (the I/O
// thread's hot path): nullopt when any of it would need the disk. Without flags, nullopt on a
// read error or a file that shrank.
std::optional<std::string> ReadWhole(int fd, ByteRange part, int flags) {
  std::string data(part.length, '\0');
  size_t done = 0;
  while (done < data.size()) {
    iovec iov{data.data() + done, data.size() - done};
    ssize_t n = ::preadv2(fd, &iov, 1, static_cast<off_t>(part.offset + done), flags);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    done += static_cast<size_t>(n);
  }
  return data;
}

class FileStorageBackend final : public StorageBackend {
 public:
  FileStorageBackend(Fd root, Fd tmp, std::string root_path)
      : root_(std::move(root)), tmp_(std::move(tmp)), root_path_(std::move(root_path)) {}

  std::string name() const override { return "file"; }

  Task<ObjectInfo> Put(std::string path, PutOptions options, BodyStream& body) override {
    // The body goes to a temp file outside the tree first; only a complete, synced file is
    // renamed into place, so readers and crashes never see a partial object.
    auto upload = std::make_shared<Upload>();
    auto create = [this, upload]() -> Result<void> { return upload->Create(*this); };
    auto created = co_await pool_.Run(std::move(create));
    if (!created) co_return Fail(created.error());
    std::optional<Error> failure;
    for (;;) {
      auto chunk = co_await body.Next();
      if (!chunk) {
        failure = chunk.error();
        break;
      }
      if (options.max_size &&
          upload->size + upload->pending.size() + chunk->size() > options.max_size) {
        failure = Error{ErrorCode::kPayloadTooLarge,
                        "object exceeds the " + std::to_string(options.max_size) + "-byte limit",
                        {}};
        break;
      }
      bool end = chunk->empty();
      upload->pending.append(*chunk);
      if (upload->pending.size() >= kWriteChunk || (end && !upload->pending.empty())) {
        auto flush = [upload, path]() -> Result<void> { return upload->Flush(path); };
        auto flushed = co_await pool_.Run(std::move(flush));
        if (!flushed) {
          failure = flushed.error();
          break;
        }
      }
      if (end) break;
    }
    Result<ObjectInfo> info = Fail(Error{});
    if (!failure) {
      auto finish = [this, upload, path, options = std::move(options)]() -> Result<ObjectInfo> {
        auto digest = upload->md5.Final();
        if (auto ok = CheckDigest(options, digest); !ok) return Fail(ok.error());
        auto info = upload->Seal(path, EtagOf(digest), options.content_type, options.metadata);
        if (!info) return info;
        if (auto ok = Install(path, upload->name, &options); !ok) return Fail(ok.error());
        upload->installed = true;
        return info;
      };
      info = co_await pool_.Run(std::move(finish));
      if (!info) failure = info.error();
    }
    if (failure) {  // the temp file never became the object: remove it (even if the pool is full)
      pool_.Detach([this, upload] { upload->Discard(*this); });
      co_return Fail(std::move(*failure));
    }
    co_return info;
  }

  Task<Object> Get(std::string path, std::optional<RangeSpec> range) override {
    // Hot path, on the I/O thread: a cached open object whose bytes are in the page cache.
    const uint64_t generation = cache_.generation();
    if (auto hit = cache_.Find(path)) {
      Object object;
      object.info = std::move(hit->info);
      if (auto part = SelectRange(object, range))
        object.body = Body(hit->fd, *part, path, RWF_NOWAIT);
      co_return object;
    }
    auto open = [this, path, range, generation]() -> Result<Object> {
      auto opened = OpenObject(path);
      if (!opened) return Fail(opened.error());
      auto fd = std::make_shared<Fd>(std::move(*opened));
      auto info = Describe(fd->get(), path);
      if (!info) return Fail(info.error());
      cache_.Insert(path, {fd, *info, std::chrono::steady_clock::now()}, generation);
      Object object;
      object.info = std::move(*info);
      if (auto part = SelectRange(object, range)) object.body = Body(fd, *part, path, 0);
      return object;
    };
    co_return co_await pool_.Run(std::move(open));
  }

  Task<ObjectInfo> Head(std::string path) override {
    if (auto hit = cache_.Find(path)) co_return std::move(hit->info);
    auto head = [this, path]() -> Result<ObjectInfo> {
      auto fd = OpenObject(path);
      if (!fd) return Fail(fd.error());
      return Describe(fd->get(), path);
    };
    co_return co_await pool_.Run(std::move(head));
  }

  Task<void> Delete(std::string path) override {
    auto remove = [this, path]() -> Result<void> { return Remove(path); };
    co_return co_await pool_.Run(std::move(remove));
  }

  Task<ListPage> List(ListOptions options) override {
    auto list = [this, options = std::move(options)]() -> Result<ListPage> {
      ListingPage page(options);
      std::shared_lock tree(tree_mu_);
      Fd root(::dup(root_.get()));
      if (!root) return Fail(SystemError("open", root_path_, errno));
      if (auto walked = Walk(std::move(root), "", page, options); !walked)
        return Fail(walked.error());
      return page.Finish();
    };
    co_return co_await pool_.Run(std::move(list));
  }

  Task<ObjectInfo> Copy(std::string from, std::string to) override {
    auto copy = [this, from, to]() -> Result<ObjectInfo> {
      auto source = OpenObject(from);
      if (!source) {
        if (source.error().code == ErrorCode::kNotFound)
          return Fail(ErrorCode::kNotFound, "source object not found: " + from);
        return Fail(source.error());
      }
      auto described = Describe(source->get(), from);
      if (!described) return Fail(described.error());
      Upload upload;
      if (auto ok = upload.Create(*this); !ok) return Fail(ok.error());
      auto result = [&]() -> Result<ObjectInfo> {
        off_t in = 0;
        uint64_t left = described->size;
        while (left > 0) {
          ssize_t n = ::copy_file_range(source->get(), &in, upload.fd.get(), nullptr, left, 0);
          if (n < 0) return Fail(SystemError("copy", from, errno));
          if (n == 0)
            return Fail(ErrorCode::kBackend, "file storage: '" + from + "' shrank while copied");
          left -= static_cast<uint64_t>(n);
        }
        auto info = upload.Seal(to, described->etag, described->content_type, described->metadata);
        if (!info) return info;
        if (auto ok = Install(to, upload.name, nullptr); !ok) return Fail(ok.error());
        upload.installed = true;
        return info;
      }();
      if (!result) upload.Discard(*this);
      return result;
    };
    co_return co_await pool_.Run(std::move(copy));
  }

  Task<void> Ready() override {
    auto check = [this]() -> Result<void> {
      struct stat st;
      if (::fstat(root_.get(), &st) != 0) return Fail(SystemError("stat", root_path_, errno));
      if (st.st_nlink == 0)
        return Fail(ErrorCode::kUnavailable, "file storage: root '" + root_path_ + "' was deleted");
      return {};
    };
    co_return co_await pool_.Run(std::move(check));
  }

  void Close() override { pool_.Stop(); }

 private:
  // One upload's temp file in <root>/.mikcar/tmp, written on the pool.
  struct Upload {
    Fd fd;
    std::string name;
    std::string pending;
    uint64_t size = 0;
    Md5 md5;
    bool installed = false;
    const FileStorageBackend* backend = nullptr;

    Result<void> Create(const FileStorageBackend& owner) {
      backend = &owner;
      unsigned char random[12];
      RAND_bytes(random, sizeof random);
      name = ".upload-" + Hex(random, sizeof random);
      fd = Fd(
          ::openat(owner.tmp_.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (!fd)
        return Fail(SystemError("create temp file in", owner.root_path_ + "/.mikcar/tmp", errno));
      return {};
    }
    Result<void> Flush(const std::string& path) {
      md5.Update(pending);
      size_t done = 0;
      while (done < pending.size()) {
        ssize_t n = ::write(fd.get(), pending.data() + done, pending.size() - done);
        if (n < 0) {
          if (errno == EINTR) continue;
          return Fail(SystemError("write", path, errno));
        }
        done += static_cast<size_t>(n);
      }
      size += pending.size();
      pending.clear();
      return {};
    }
    // Metadata and fsync: the file is complete and durable, ready to be renamed into place.
    Result<ObjectInfo> Seal(const std::string& path, const std::string& etag,
                            const std::string& type, const Metadata& metadata) {
      std::string packed = PackAttributes(etag, type, metadata);
      if (::fsetxattr(fd.get(), kXattrObject, packed.data(), packed.size(), 0) != 0) {
        return Fail(SystemError("set metadata (xattr) of", path, errno));
      }
      if (::fsync(fd.get()) != 0) return Fail(SystemError("fsync", path, errno));
      return Describe(fd.get(), path);
    }
    void Discard(const FileStorageBackend& owner) {
      fd.Reset();
      if (!name.empty() && !installed) ::unlinkat(owner.tmp_.get(), name.c_str(), 0);
    }
  };

  // The bytes of `part`: read at once when small (`flags` RWF_NOWAIT on the I/O thread, where a
  // page-cache miss falls back to the pool), else streamed by FileBody (sendfile when resident).
  std::shared_ptr<BodyStream> Body(const std::shared_ptr<Fd>& fd, ByteRange part,
                                   const std::string& path, int flags) {
    if (part.length <= kReadChunk) {
      if (auto data = ReadWhole(fd->get(), part, flags))
        return std::make_shared<BufferedBody>(std::move(*data));
    }
    return std::make_shared<FileBody>(fd, part, pool_, path);
  }

  std::mutex& KeyMutex(const std::string& path) {
    return key_mu_[std::hash<std::string>{}(path) % key_mu_.size()];
  }

  // Opens the directory chain of `segments` (all but the last), from the root, never following
  // a link. NOT_FOUND when a directory is missing (or is an object).
  Result<Fd> OpenParent(const std::vector<std::string>& segments, const std::string& path) const {
    Fd dir(::dup(root_.get()));
    if (!dir) return Fail(SystemError("open", root_path_, errno));
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      Fd next(::openat(dir.get(), Encode(segments[i]).c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next) {
        if (errno == ELOOP) return Fail(ThroughSymlink(path));
        if (errno == ENOENT || errno == ENOTDIR) return Fail(NotFound(path));
        return Fail(SystemError("open", path, errno));
      }
      dir = std::move(next);
    }
    return dir;
  }

  // Opens the object file of `path` for reading.
  Result<Fd> OpenObject(const std::string& path) const {
    auto segments = Split(path);
    auto dir = OpenParent(segments, path);
    if (!dir) return Fail(dir.error());
    Fd fd(::openat(dir->get(), Encode(segments.back()).c_str(),
                   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      if (errno == ELOOP) return Fail(ThroughSymlink(path));
      if (errno == ENOENT) return Fail(NotFound(path));
      return Fail(SystemError("open", path, errno));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Fail(SystemError("stat", path, errno));
    if (S_ISDIR(st.st_mode)) {
      fd = Fd(::openat(fd.get(), std::string(kSelf).c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!fd) {
        if (errno == ENOENT || errno == ELOOP) return Fail(NotFound(path));
        return Fail(SystemError("open", path, errno));
      }
      if (::fstat(fd.get(), &st) != 0) return Fail(SystemError("stat", path, errno));
    }
    if (!S_ISREG(st.st_mode)) return Fail(NotFound(path));
    return fd;
  }

  // Creates the directory chain of `segments` (all but the last). An object standing where a
  // directory is needed (x, when x/y is written) becomes that directory's "%o" first.
  Result<Fd> MakeParent(const std::vector<std::string>& segments, const std::string& path) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      std::optional<size_t> convert;
      {
        std::shared_lock tree(tree_mu_);
        Fd dir(::dup(root_.get()));
        if (!dir) return Fail(SystemError("open", root_path_, errno));
        size_t i = 0;
        for (; i + 1 < segments.size(); ++i) {
          std::string name = Encode(segments[i]);
          bool created = false;
          if (::mkdirat(dir.get(), name.c_str(), 0755) == 0) {
            created = true;
            if (name.starts_with("%h")) {
              Fd made(::openat(dir.get(), name.c_str(),
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
              if (made)
                ::fsetxattr(made.get(), kXattrName, segments[i].data(), segments[i].size(), 0);
            }
          } else if (errno != EEXIST) {
            return Fail(SystemError("create directory for", path, errno));
          }
          Fd next(
              ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
          if (!next) {
            if (errno == ENOTDIR) break;  // an object: convert it below
            if (errno == ELOOP) return Fail(ThroughSymlink(path));
            if (errno == ENOENT) break;  // removed by a concurrent prune: retry
            return Fail(SystemError("open", path, errno));
          }
          if (created && ::fsync(dir.get()) != 0) return Fail(SystemError("fsync", path, errno));
          dir = std::move(next);
        }
        if (i + 1 >= segments.size()) return dir;
        struct stat st;
        if (::fstatat(dir.get(), Encode(segments[i]).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
          convert = i;
        }
      }
      if (convert) {
        if (auto ok = ConvertToDirectory(segments, *convert, path); !ok) return Fail(ok.error());
      }
    }
    return Fail(ErrorCode::kUnavailable, "file storage: '" + path + "' keeps changing; try again");
  }

  // Turns the object file at segments[0..level] into a directory holding it as "%o", atomically
  // for readers: the directory (with a hard link to the file inside) is swapped in with one
  // renameat2(RENAME_EXCHANGE).
  Result<void> ConvertToDirectory(const std::vector<std::string>& segments, size_t level,
                                  const std::string& path) {
    std::unique_lock tree(tree_mu_);
    std::vector<std::string> parent(segments.begin(), segments.begin() + level + 1);
    auto dir = OpenParent(parent, path);
    // The caller saw the file under the shared lock and let go of it to take this one; meanwhile
    // a delete may have removed that file and pruned its now empty directory (or an object took
    // the directory's place): like the file being gone, that is for MakeParent to look again.
    if (!dir && dir.error().code == ErrorCode::kNotFound) return {};
    if (!dir) return Fail(dir.error());
    std::string name = Encode(segments[level]);
    struct stat st;
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      return {};  // already converted, or gone
    unsigned char random[8];
    RAND_bytes(random, sizeof random);
    std::string staging = ".convert-" + Hex(random, sizeof random);
    if (::mkdirat(dir->get(), staging.c_str(), 0755) != 0)
      return Fail(SystemError("create directory for", path, errno));
    Fd staged(
        ::openat(dir->get(), staging.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!staged ||
        ::linkat(dir->get(), name.c_str(), staged.get(), std::string(kSelf).c_str(), 0) != 0 ||
        ::renameat2(dir->get(), staging.c_str(), dir->get(), name.c_str(), RENAME_EXCHANGE) != 0) {
      int err = errno;
      if (staged) ::unlinkat(staged.get(), std::string(kSelf).c_str(), 0);
      ::unlinkat(dir->get(), staging.c_str(), AT_REMOVEDIR);
      return Fail(SystemError("make a directory of", path, err));
    }
    if (name.starts_with("%h")) {
      ::fsetxattr(staged.get(), kXattrName, segments[level].data(), segments[level].size(), 0);
    }
    ::unlinkat(dir->get(), staging.c_str(), 0);  // the old name of the file, now linked as "%o"
    if (::fsync(staged.get()) != 0 || ::fsync(dir->get()) != 0)
      return Fail(SystemError("fsync", path, errno));
    return {};
  }

  // Renames the sealed temp file `temp` to `path`, checking `conditions` (PUT) atomically.
  Result<void> Install(const std::string& path, const std::string& temp,
                       const PutOptions* conditions) {
    auto segments = Split(path);
    const std::string leaf = Encode(segments.back());
    if (leaf.starts_with("%h")) {
      Fd file(::openat(tmp_.get(), temp.c_str(), O_RDONLY | O_CLOEXEC));
      if (file)
        ::fsetxattr(file.get(), kXattrName, segments.back().data(), segments.back().size(), 0);
    }
    for (int attempt = 0;; ++attempt) {
      auto dir = MakeParent(segments, path);
      if (!dir) return Fail(dir.error());
      std::shared_lock tree(tree_mu_);
      std::lock_guard key(KeyMutex(path));
      // A delete may have pruned the parent between MakeParent and the lock: make it again.
      auto parent = OpenParent(segments, path);
      if (!parent && parent.error().code == ErrorCode::kNotFound && attempt < 8) continue;
      if (!parent) return Fail(parent.error());
      std::string name = leaf;
      if (conditions) {
        auto current = OpenObject(path);
        std::optional<ObjectInfo> info;
        if (current) {
          auto described = Describe(current->get(), path);
          if (!described) return Fail(described.error());
          info = std::move(*described);
        } else if (current.error().code != ErrorCode::kNotFound) {
          return Fail(current.error());
        }
        if (auto ok = CheckPutConditions(*conditions, info ? &*info : nullptr); !ok) return ok;
      }
      // The object's own file, or "%o" inside the directory of the same name. A writer of "x/y"
      // may create that directory between the check and the rename (EISDIR): look again. A
      // directory is only removed under the exclusive lock, so the second look holds.
      int target = parent->get();
      Fd self_dir;
      for (int look = 0;; ++look) {
        struct stat st;
        if (::fstatat(target, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          if (S_ISLNK(st.st_mode)) return Fail(ThroughSymlink(path));
          if (S_ISDIR(st.st_mode)) {
            self_dir =
                Fd(::openat(target, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!self_dir) return Fail(SystemError("open", path, errno));
            target = self_dir.get();
            name = kSelf;
          }
        }
        if (::renameat(tmp_.get(), temp.c_str(), target, name.c_str()) == 0) break;
        if (errno != EISDIR || look > 0) return Fail(SystemError("rename into place", path, errno));
      }
      cache_.Invalidate(path);
      if (::fsync(target) != 0) return Fail(SystemError("fsync", path, errno));
      return {};
    }
  }

  Result<void> Remove(const std::string& path) {
    auto segments = Split(path);
    {
      std::shared_lock tree(tree_mu_);
      std::lock_guard key(KeyMutex(path));
      auto dir = OpenParent(segments, path);
      if (!dir) return Fail(dir.error());
      std::string name = Encode(segments.back());
      struct stat st;
      if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return Fail(NotFound(path));
        return Fail(SystemError("stat", path, errno));
      }
      if (S_ISLNK(st.st_mode)) return Fail(ThroughSymlink(path));
      if (S_ISDIR(st.st_mode)) {
        Fd self(
            ::openat(dir->get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!self || ::unlinkat(self.get(), std::string(kSelf).c_str(), 0) != 0) {
          if (errno == ENOENT) return Fail(NotFound(path));
          return Fail(SystemError("delete", path, errno));
        }
        if (::fsync(self.get()) != 0) return Fail(SystemError("fsync", path, errno));
      } else {
        if (!S_ISREG(st.st_mode)) return Fail(NotFound(path));
        if (::unlinkat(dir->get(), name.c_str(), 0) != 0) {
          if (errno == ENOENT) return Fail(NotFound(path));
          return Fail(SystemError("delete", path, errno));
        }
        if (::fsync(dir->get()) != 0) return Fail(SystemError("fsync", path, errno));
      }
    }
    cache_.Invalidate(path);
    Prune(segments);
    return {};
  }

  // Removes the directories along `segments` that the delete left empty, deepest first.
  void Prune(const std::vector<std::string>& segments) {
    std::unique_lock tree(tree_mu_);
    std::vector<Fd> chain;
    chain.emplace_back(::dup(root_.get()));
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      Fd next(::openat(chain.back().get(), Encode(segments[i]).c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next) return;
      chain.push_back(std::move(next));
    }
    // The leaf itself, when it was a directory holding the deleted "%o".
    size_t depth = segments.size();
    for (size_t level = depth; level-- > 0;) {
      if (level >= chain.size()) continue;
      if (::unlinkat(chain[level].get(), Encode(segments[level]).c_str(), AT_REMOVEDIR) != 0) {
        if (errno == ENOTDIR || errno == ENOENT) continue;  // the leaf was a plain file
        return;
      }
    }
  }

  // Feeds the objects under the open directory `dir` (whose keys start with `prefix`) to `page`
  // in ascending key order. Returns false once the listing is complete.
  Result<bool> Walk(Fd dir, const std::string& prefix, ListingPage& page,
                    const ListOptions& options) {
    struct Item {
      std::string key;
      std::string name;
      bool directory;  // descend (key ends with '/')
    };
    std::vector<Item> items;
    {
      // A new open file description: a dup() would share the read position with other walks.
      Fd own(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      DIR* stream = own ? ::fdopendir(own.get()) : nullptr;
      if (!stream) return Fail(SystemError("list", root_path_ + "/" + prefix, errno));
      own.Release();  // the DIR owns it now
      while (dirent* entry = ::readdir(stream)) {
        std::string_view name = entry->d_name;
        if (name == "." || name == "..") continue;
        if (name == kSelf) continue;  // listed by the parent as the directory's own object
        auto segment = Decode(dir.get(), name);
        if (!segment) continue;
        unsigned char type = entry->d_type;
        if (type == DT_UNKNOWN) {
          struct stat st;
          if (::fstatat(dir.get(), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
          type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        std::string key = prefix + *segment;
        if (type == DT_DIR) {
          items.push_back({key, std::string(name), false});  // its "%o", if any
          items.push_back({key + "/", std::string(name), true});
        } else if (type == DT_REG) {
          items.push_back({std::move(key), std::string(name), false});
        }
      }
      ::closedir(stream);
    }
    std::sort(items.begin(), items.end(),
              [](const Item& a, const Item& b) { return a.key < b.key; });
    const std::string& first = page.first_key();
    for (const Item& item : items) {
      if (page.SkipsAll(prefix)) return true;  // the rest of this directory is one group
      if (item.directory) {
        if (item.key < first && !first.starts_with(item.key)) continue;  // all before the start
        if (page.PastEnd(item.key) && !options.prefix.starts_with(item.key)) return false;
        if (page.SkipsAll(item.key)) continue;
        Fd sub(::openat(dir.get(), item.name.c_str(),
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) continue;  // removed meanwhile
        auto more = Walk(std::move(sub), item.key, page, options);
        if (!more || !*more) return more;
        continue;
      }
      if (item.key < first) continue;
      if (page.PastEnd(item.key)) return false;
      if (page.SkipsAll(item.key)) continue;
      Fd fd(::openat(dir.get(), item.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (fd) {
        struct stat st;
        if (::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode))
          fd = Fd(::openat(fd.get(), std::string(kSelf).c_str(),
                           O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      }
      if (!fd) continue;  // a directory without its own object, or removed meanwhile
      auto info = Describe(fd.get(), item.key);
      if (!info) continue;
      if (!page.Add(std::move(*info))) return false;
    }
    return true;
  }

  Fd root_;
  Fd tmp_;
  std::string root_path_;
  BlockingPool pool_{8, 4096};
  OpenObjectCache cache_;
  std::shared_mutex tree_mu_;  // shared: writes and reads; exclusive: directory conversion/prune
  std::array<std::mutex, 64> key_mu_;
};

}  // namespace

Result<std::unique_ptr<StorageBackend>> OpenFileStorageBackend(const Uri& uri) {
  if (uri.path.empty() || uri.path.front() != '/' ||
      (!uri.host.empty() && uri.host != "localhost")) {
    return Fail(ErrorCode::kBadRequest, "expected file:///absolute/dir (three slashes)");
  }
  std::string root_path = uri.path;
  // Create the root and its private area (.mikcar/tmp, for uploads in progress).
  for (size_t at = 1; at != std::string::npos;) {
    at = root_path.find('/', at + 1);
    std::string part = root_path.substr(0, at);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
      return Fail(SystemError("create directory", part, errno));
  }
  Fd root(::open(root_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return Fail(SystemError("open", root_path, errno));
  for (const char* dir : {".mikcar", ".mikcar/tmp"}) {
    if (::mkdirat(root.get(), dir, 0700) != 0 && errno != EEXIST)
      return Fail(SystemError("create directory", root_path + "/" + dir, errno));
  }
  Fd tmp(::openat(root.get(), ".mikcar/tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!tmp) return Fail(SystemError("open", root_path + "/.mikcar/tmp", errno));
  // Uploads interrupted by a crash never became objects: drop their temp files.
  if (DIR* stream = ::fdopendir(::openat(tmp.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC))) {
    while (dirent* entry = ::readdir(stream)) {
      if (entry->d_name[0] == '.' && std::string_view(entry->d_name).starts_with(".upload-"))
        ::unlinkat(tmp.get(), entry->d_name, 0);
    }
    ::closedir(stream);
  }
  // Metadata lives in extended attributes: refuse a filesystem without them now, not at the
  // first upload.
  static constexpr char kProbe[] = ".xattr-probe";
  Fd probe(::openat(tmp.get(), kProbe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  bool xattrs = probe && ::fsetxattr(probe.get(), kXattrObject, "x", 1, 0) == 0;
  int err = errno;
  ::unlinkat(tmp.get(), kProbe, 0);
  if (!xattrs) {
    return Fail(ErrorCode::kUnavailable, "file storage: the filesystem of '" + root_path +
                                             "' does not support user extended attributes (" +
                                             std::strerror(err) +
                                             "); expected ext4, xfs, btrfs or tmpfs");
  }
  return std::unique_ptr<StorageBackend>(
      std::make_unique<FileStorageBackend>(std::move(root), std::move(tmp), root_path));
}

}  // namespace mikcar::storage
