// The write-ahead log in front of an LMDB environment (see group_committer.h for why).
//
// A log is a directory's `wal-<first lsn>` segment files: records of opaque bytes, each framed
// as u64 body length | u32 crc32 of (lsn, body) | u64 lsn | body, with consecutive lsns. A
// record is durable once Sync() returns. A `checkpoint` file names the last lsn already durable
// in LMDB and holds the two LMDB meta pages of that moment. Retired segments are recycled as a
// zero-cost preallocated spare: overwriting a file in place fsyncs faster than growing one.
//
// Not thread-safe, with one exception: SaveCheckpoint may run on another thread while the
// writer appends (it touches only the checkpoint file).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mikcar/error.h"

namespace mikcar::lmdb {

class WriteAheadLog {
 public:
  struct Checkpoint {
    uint64_t lsn = 0;    // every record up to here is in LMDB's snapshot `txnid`
    uint64_t txnid = 0;  // LMDB's transaction id of that snapshot
    std::string metas;   // LMDB's first two pages (its meta pages) as they were at `txnid`
  };
  struct Recovered {
    std::optional<Checkpoint> checkpoint;
    std::vector<std::string> records;  // bodies after the checkpoint, in order
    uint64_t last_lsn = 0;
  };

  // Reads what `dir` holds: the checkpoint and every intact record after it. A torn or corrupt
  // record ends the log (it was never acknowledged: acknowledgement waits for Sync()), unless a
  // later segment holds records after it: that is corruption, and an error.
  static Result<Recovered> Recover(const std::string& dir);

  // Starts a fresh log whose next record is `last_lsn + 1`, removing older segments. Call after
  // the recovered records are durable in LMDB and `checkpoint` names them.
  static Result<std::unique_ptr<WriteAheadLog>> Create(const std::string& dir, uint64_t last_lsn,
                                                       const Checkpoint& checkpoint);
  ~WriteAheadLog();

  // Appends a record (buffered in the kernel, not yet durable); returns its lsn.
  Result<uint64_t> Append(std::string_view body);
  // Makes every appended record durable.
  Result<void> Sync();
  // Syncs the current segment and starts a new one for the next records. Returns the segments
  // now wholly at or below last_lsn(), to Retire() once a checkpoint covers them.
  Result<std::vector<std::string>> Rotate();
  // Writes `checkpoint` durably (write, fsync, rename, fsync the directory).
  Result<void> SaveCheckpoint(const Checkpoint& checkpoint) const;
  // Removes segments a saved checkpoint covers; keeps one as the spare for the next Rotate().
  void Retire(const std::vector<std::string>& segments);

  uint64_t last_lsn() const { return last_lsn_; }
  uint64_t segment_bytes() const { return offset_; }

 private:
  WriteAheadLog(std::string dir, uint64_t last_lsn) : dir_(std::move(dir)), last_lsn_(last_lsn) {}
  Result<void> OpenSegment();

  std::string dir_;
  uint64_t last_lsn_;
  int fd_ = -1;
  std::string segment_;  // path of the segment being appended to
  uint64_t offset_ = 0;  // append position in it
  bool synced_ = true;
  std::string frame_;  // reused buffer of one framed record
};

}  // namespace mikcar::lmdb
