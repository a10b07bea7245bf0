#include "common/lmdb/write_ahead_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace mikcar::lmdb {
namespace {

namespace fs = std::filesystem;

constexpr char kSegmentPrefix[] = "wal-";
constexpr char kSpare[] = "wal-spare";
constexpr char kCheckpoint[] = "checkpoint";
constexpr char kCheckpointMagic[] = "MIKCARC1";
constexpr size_t kFrameHeader = 8 + 4 + 8;
constexpr uint64_t kMaxSpareBytes = uint64_t{256} << 20;

Error IoError(std::string_view what, const std::string& path, int err = errno) {
  return Error{err == ENOSPC ? ErrorCode::kUnavailable : ErrorCode::kBackend,
               "lmdb log: " + std::string(what) + " " + path + ": " + std::strerror(err),
               {}};
}

uint32_t Crc(uint64_t lsn, std::string_view body) {
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(&lsn), sizeof lsn);
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(body.data()), body.size()));
}

template <typename T>
void AppendRaw(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}
template <typename T>
bool TakeRaw(std::string_view& in, T& value) {
  if (in.size() < sizeof value) return false;
  std::memcpy(&value, in.data(), sizeof value);
  in.remove_prefix(sizeof value);
  return true;
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(IoError("cannot open", path));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = IoError("cannot read", path);
      ::close(fd);
      return Fail(std::move(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool WriteAll(int fd, std::string_view data, uint64_t offset) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

Result<void> SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(IoError("cannot open directory", dir));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Fail(IoError("cannot sync directory", dir, err));
  return {};
}

// The segments of `dir` by first lsn (the hex in their names), oldest first.
std::vector<std::pair<uint64_t, std::string>> Segments(const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kSegmentPrefix, 0) != 0 || name == kSpare) continue;
    std::string_view hex = std::string_view(name).substr(sizeof kSegmentPrefix - 1);
    if (hex.size() != 16 || hex.find_first_not_of("0123456789abcdef") != hex.npos) continue;
    out.emplace_back(std::stoull(std::string(hex), nullptr, 16), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::optional<WriteAheadLog::Checkpoint>> ReadCheckpoint(const std::string& dir) {
  std::string path = dir + "/" + kCheckpoint;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<WriteAheadLog::Checkpoint>();
  auto data = ReadFile(path);
  if (!data) return Fail(data.error());
  std::string_view in(*data);
  WriteAheadLog::Checkpoint cp;
  uint32_t metas_size = 0, crc = 0;
  bool ok = in.substr(0, 8) == kCheckpointMagic;
  if (ok) in.remove_prefix(8);
  ok = ok && TakeRaw(in, cp.lsn) && TakeRaw(in, cp.txnid) && TakeRaw(in, metas_size) &&
       in.size() == size_t{metas_size} + 4;
  if (ok) {
    cp.metas.assign(in.substr(0, metas_size));
    in.remove_prefix(metas_size);
    TakeRaw(in, crc);
    ok = crc == Crc(cp.lsn, std::string_view(*data).substr(0, data->size() - 4));
  }
  if (!ok) return Fail(ErrorCode::kBackend, "lmdb log: " + path + " is corrupt");
  return std::optional<WriteAheadLog::Checkpoint>(std::move(cp));
}

}  // namespace

Result<WriteAheadLog::Recovered> WriteAheadLog::Recover(const std::string& dir) {
  Recovered out;
  auto checkpoint = ReadCheckpoint(dir);
  if (!checkpoint) return Fail(checkpoint.error());
  out.checkpoint = std::move(*checkpoint);
  uint64_t next = out.checkpoint ? out.checkpoint->lsn + 1 : 1;
  out.last_lsn = next - 1;
  for (const auto& [first, path] : Segments(dir)) {
    auto data = ReadFile(path);
    if (!data) return Fail(data.error());
    // A segment holds `first`, `first + 1`, … from its start; a recycled segment's older bytes
    // follow its last record and end it (their lsn is out of sequence, or their crc fails).
    std::string_view in(*data);
    for (uint64_t expected = first;; ++expected) {
      uint64_t size = 0, lsn = 0;
      uint32_t crc = 0;
      std::string_view frame = in;
      if (!TakeRaw(frame, size) || !TakeRaw(frame, crc) || !TakeRaw(frame, lsn)) break;
      if (lsn != expected || frame.size() < size) break;
      std::string_view body = frame.substr(0, size);
      if (Crc(lsn, body) != crc) break;
      in.remove_prefix(kFrameHeader + size);
      if (lsn < next) continue;     // already in the checkpoint
      if (lsn != next) return out;  // a gap: nothing after it can be applied
      out.records.emplace_back(body);
      out.last_lsn = next++;
    }
  }
  return out;
}

Result<std::unique_ptr<WriteAheadLog>> WriteAheadLog::Create(const std::string& dir,
                                                             uint64_t last_lsn,
                                                             const Checkpoint& checkpoint) {
  std::unique_ptr<WriteAheadLog> log(new WriteAheadLog(dir, last_lsn));
  if (auto saved = log->SaveCheckpoint(checkpoint); !saved) return Fail(saved.error());
  std::vector<std::string> old;
  for (auto& [first, path] : Segments(dir)) old.push_back(std::move(path));
  log->Retire(old);
  if (auto opened = log->OpenSegment(); !opened) return Fail(opened.error());
  return log;
}

WriteAheadLog::~WriteAheadLog() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> WriteAheadLog::OpenSegment() {
  char name[32];
  std::snprintf(name, sizeof name, "%s%016llx", kSegmentPrefix,
                static_cast<unsigned long long>(last_lsn_ + 1));
  segment_ = dir_ + "/" + name;
  std::string spare = dir_ + "/" + kSpare;
  if (::rename(spare.c_str(), segment_.c_str()) != 0 && errno != ENOENT) {
    return Fail(IoError("cannot reuse", spare));
  }
  fd_ = ::open(segment_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return Fail(IoError("cannot open", segment_));
  offset_ = 0;
  synced_ = true;
  // The segment's name must be durable before any record in it is acknowledged.
  return SyncDirectory(dir_);
}

Result<uint64_t> WriteAheadLog::Append(std::string_view body) {
  uint64_t lsn = last_lsn_ + 1;
  frame_.clear();
  AppendRaw(frame_, static_cast<uint64_t>(body.size()));
  AppendRaw(frame_, Crc(lsn, body));
  AppendRaw(frame_, lsn);
  frame_.append(body);
  if (!WriteAll(fd_, frame_, offset_)) return Fail(IoError("cannot write", segment_));
  offset_ += frame_.size();
  last_lsn_ = lsn;
  synced_ = false;
  return lsn;
}

Result<void> WriteAheadLog::Sync() {
  if (synced_) return {};
  if (::fdatasync(fd_) != 0) return Fail(IoError("cannot sync", segment_));
  synced_ = true;
  return {};
}

Result<std::vector<std::string>> WriteAheadLog::Rotate() {
  // Records of the next segment may depend on this one's unsynced ones (a sweep, say).
  if (auto synced = Sync(); !synced) return Fail(synced.error());
  ::close(fd_);
  fd_ = -1;
  std::vector<std::string> done{segment_};
  if (auto opened = OpenSegment(); !opened) return Fail(opened.error());
  return done;
}

Result<void> WriteAheadLog::SaveCheckpoint(const Checkpoint& checkpoint) const {
  std::string data(kCheckpointMagic, 8);
  AppendRaw(data, checkpoint.lsn);
  AppendRaw(data, checkpoint.txnid);
  AppendRaw(data, static_cast<uint32_t>(checkpoint.metas.size()));
  data.append(checkpoint.metas);
  AppendRaw(data, Crc(checkpoint.lsn, data));
  std::string path = dir_ + "/" + kCheckpoint, tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(IoError("cannot create", tmp));
  bool ok = WriteAll(fd, data, 0) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) return Fail(IoError("cannot write", tmp, err));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Fail(IoError("cannot rename", tmp));
  return SyncDirectory(dir_);
}

void WriteAheadLog::Retire(const std::vector<std::string>& segments) {
  std::string spare = dir_ + "/" + kSpare;
  std::error_code ec;
  for (const auto& path : segments) {
    // A lost rename leaves an old segment whose records the checkpoint covers: harmless.
    if (!fs::exists(spare, ec) && fs::file_size(path, ec) <= kMaxSpareBytes && !ec &&
        ::rename(path.c_str(), spare.c_str()) == 0) {
      continue;
    }
    fs::remove(path, ec);
  }
}

}  // namespace mikcar::lmdb
