#include "common/lmdb/group_committer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

namespace mikcar::lmdb {
namespace {

namespace asio = boost::asio;

class GroupCommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("mikcar-gc-test-" + std::to_string(std::random_device{}()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<GroupCommitter> Open() {
    auto store = GroupCommitter::Open(dir_.string(), {"t"});
    EXPECT_TRUE(store) << (store ? "" : store.error().message);
    return store ? std::move(*store) : nullptr;
  }

  std::filesystem::path dir_;
};

// A write of key → value; with `refuse`, a write that validates, fails and changes nothing.
std::function<Result<void>(WriteTxn&)> Put(std::string key, bool refuse = false) {
  return [key = std::move(key), refuse](WriteTxn& txn) -> Result<void> {
    if (refuse) return Fail(ErrorCode::kPreconditionFailed, "refused");
    if (int rc = txn.Put(0, key, key); rc != 0) return Fail(LmdbError(rc, "put"));
    return {};
  };
}

std::function<Result<void>(WriteTxn&)> Del(std::string key) {
  return [key = std::move(key)](WriteTxn& txn) -> Result<void> {
    if (int rc = txn.Del(0, key); rc != 0 && rc != MDB_NOTFOUND) return Fail(LmdbError(rc, "del"));
    return {};
  };
}

bool Has(GroupCommitter& store, const std::string& key) {
  auto found = store.Read([&](MDB_txn* txn) -> Result<bool> {
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
    return mdb_get(txn, store.Dbi(0), &k, &v) == 0;
  });
  return found && *found;
}

struct Outcomes {
  explicit Outcomes(int writes) : outcome(writes), done(writes, 0), remaining(writes) {}
  std::vector<std::optional<ErrorCode>> outcome;
  std::vector<char> done;
  std::atomic<int> remaining;
};

// One write (a coroutine of its own: a lambda's captures would die with the lambda).
asio::awaitable<void> WriteOne(GroupCommitter& store, int i, bool refuse, Outcomes& out,
                               asio::io_context& a, asio::io_context& b) {
  auto result = co_await store.Write<void>(Put("k" + std::to_string(i), refuse));
  if (!result) out.outcome[i] = result.error().code;
  out.done[i] = 1;
  if (--out.remaining == 0) {
    a.stop();
    b.stop();
  }
}

// Runs `writes` writes spread over two I/O threads; returns each write's outcome by index.
std::vector<std::optional<ErrorCode>> WriteAll(GroupCommitter& store, int writes,
                                               std::function<bool(int)> refuse,
                                               std::function<void()> meanwhile = {}) {
  Outcomes out(writes);
  asio::io_context a(1), b(1);
  // A suspended write is no work for the io_context: keep both running until the last answer.
  auto guard_a = asio::make_work_guard(a), guard_b = asio::make_work_guard(b);
  for (int i = 0; i < writes; ++i)
    asio::co_spawn(i % 2 ? a : b, WriteOne(store, i, refuse(i), out, a, b), asio::detached);
  std::thread other([&] { a.run(); });
  if (meanwhile) meanwhile();
  b.run();
  other.join();
  for (int i = 0; i < writes; ++i) EXPECT_TRUE(out.done[i]) << "write " << i << " never completed";
  return out.outcome;
}

TEST_F(GroupCommitterTest, ConcurrentWritesAllCompleteAndSurviveReopening) {
  auto store = Open();
  auto outcome = WriteAll(*store, 2000, [](int) { return false; });
  for (int i = 0; i < 2000; ++i) ASSERT_FALSE(outcome[i]) << "write " << i;
  store->Close();
  store = Open();
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(Has(*store, "k" + std::to_string(i))) << i;
}

TEST_F(GroupCommitterTest, ARefusedWriteSharesABatchAndChangesNothing) {
  auto store = Open();
  auto outcome = WriteAll(*store, 900, [](int i) { return i % 3 == 0; });
  store->Close();
  store = Open();
  for (int i = 0; i < 900; ++i) {
    if (i % 3 == 0) {
      EXPECT_EQ(outcome[i], ErrorCode::kPreconditionFailed) << i;
      EXPECT_FALSE(Has(*store, "k" + std::to_string(i))) << i;
    } else {
      EXPECT_FALSE(outcome[i]) << i;
      EXPECT_TRUE(Has(*store, "k" + std::to_string(i))) << i;
    }
  }
}

TEST_F(GroupCommitterTest, CloseAnswersEveryQueuedWriteAndKeepsTheAcknowledgedOnes) {
  auto store = Open();
  auto outcome = WriteAll(
      *store, 3000, [](int) { return false; },
      [&] {
        // Close while the other thread's writes are under way (the first one has landed).
        auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!Has(*store, "k1") && std::chrono::steady_clock::now() < give_up)
          std::this_thread::yield();
        store->Close();
      });
  int acknowledged = 0;
  for (auto& o : outcome) {
    if (!o)
      ++acknowledged;
    else
      EXPECT_EQ(*o, ErrorCode::kUnavailable);
  }
  store = Open();
  for (int i = 0; i < 3000; ++i) {
    if (!outcome[i]) {
      EXPECT_TRUE(Has(*store, "k" + std::to_string(i))) << "acknowledged " << i;
    }
  }
  EXPECT_GT(acknowledged, 0);
}

// Crashes: a child process opens the store, makes acknowledged writes and dies without closing
// it, as kill -9 would leave it. Every page LMDB wrote is still in the page cache then; the tests
// below also throw away what a power loss could, to show the log alone brings the writes back.
class CrashTest : public GroupCommitterTest {
 protected:
  // Runs `work` in a child that exits without closing the store; false if any write failed.
  void CrashAfter(const std::function<bool(GroupCommitter&)>& work) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = GroupCommitter::Open(dir_.string(), {"t"});
      bool ok = store && work(**store);
      _exit(ok ? 0 : 1);  // no destructors: the store is never closed
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's writes failed";
  }

  // Acknowledged writes of k0..k<n - 1>.
  static bool WriteRange(GroupCommitter& store, int n) {
    auto outcome = WriteAll(store, n, [](int) { return false; });
    for (int i = 0; i < n; ++i)
      if (outcome[i]) return false;
    return true;
  }

  std::filesystem::path Data() const { return dir_ / "data.mdb"; }

  // Overwrites LMDB's two meta pages: the state a power loss leaves when LMDB's newest meta page
  // reached the disk and the pages it points to did not, or worse.
  void DestroyMetaPages() {
    std::string zeros(2 * static_cast<size_t>(::sysconf(_SC_PAGESIZE)), '\0');  // LMDB's page
    int fd = ::open(Data().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, zeros.data(), zeros.size(), 0), static_cast<ssize_t>(zeros.size()));
    ::close(fd);
  }
};

// Readers keep a reset transaction per thread between reads; a map resize must wait for the ones
// reading and the others must see the grown map afterwards. With `fill_cache`, 64 threads read
// first, so the long-running readers are past the cached ones and register per read.
void ReadWhileTheMapGrows(const std::filesystem::path& dir, bool fill_cache) {
  auto opened = GroupCommitter::Open(dir.string(), {"t"}, size_t{1} << 20);
  ASSERT_TRUE(opened) << opened.error().message;
  auto& store = **opened;
  ASSERT_TRUE(WriteAll(store, 1, [](int) { return false; })[0] == std::nullopt);  // "k0"
  if (fill_cache) {
    for (int t = 0; t < 64; ++t) std::thread([&] { EXPECT_TRUE(Has(store, "k0")); }).join();
  }
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        if (!Has(store, "k0")) ++failures;
        ++reads;
      }
    });
  }
  std::string value(4000, 'v');
  for (int i = 0; i < 4000; ++i) {  // 16 MB of values in a 1 MiB map: it grows several times
    std::function<Result<void>(WriteTxn&)> put = [&, i](WriteTxn& txn) -> Result<void> {
      if (int rc = txn.Put(0, "big" + std::to_string(i), value); rc != 0)
        return Fail(LmdbError(rc, "put"));
      return {};
    };
    asio::io_context io;
    bool ok = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> { ok = bool(co_await store.Write<void>(std::move(put))); },
        asio::detached);
    io.run();
    ASSERT_TRUE(ok) << "write " << i;
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(reads, 0);
  EXPECT_TRUE(Has(store, "big3999"));
}

TEST_F(GroupCommitterTest, ReadersOnOtherThreadsKeepReadingWhileTheMapGrows) {
  ReadWhileTheMapGrows(dir_, /*fill_cache=*/false);
}

TEST_F(GroupCommitterTest, ReadersBeyondTheCachedOnesKeepReadingWhileTheMapGrows) {
  ReadWhileTheMapGrows(dir_, /*fill_cache=*/true);
}

// More threads than the store keeps readers for, and a Read inside a Read, still read correctly.
TEST_F(GroupCommitterTest, ManyReadingThreadsAndNestedReads) {
  auto store = Open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(WriteAll(*store, 2, [](int) { return false; })[1] == std::nullopt);  // k0, k1
  std::atomic<int> failures{0};
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 100; ++t) {
      threads.emplace_back([&] {
        auto both = store->Read([&](MDB_txn*) -> Result<bool> { return Has(*store, "k1"); });
        if (!both || !*both || !Has(*store, "k0")) ++failures;
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(failures, 0);
  store->Close();
  // A new store on this thread is not confused with the closed one.
  auto again = Open();
  ASSERT_TRUE(again);
  EXPECT_TRUE(Has(*again, "k0"));
}

TEST_F(GroupCommitterTest, ASecondStoreOnTheSameDirectoryIsRefused) {
  auto store = Open();
  auto second = GroupCommitter::Open(dir_.string(), {"t"});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("in use"), std::string::npos) << second.error().message;
  store->Close();
  EXPECT_TRUE(GroupCommitter::Open(dir_.string(), {"t"}));  // free once the first is closed
}

TEST_F(CrashTest, AcknowledgedWritesSurviveACrash) {
  CrashAfter([](GroupCommitter& store) { return WriteRange(store, 2000); });
  auto store = Open();
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(Has(*store, "k" + std::to_string(i))) << i;
}

TEST_F(CrashTest, TheLogAloneRestoresWritesWhoseLmdbPagesWereLost) {
  CrashAfter([](GroupCommitter& store) { return WriteRange(store, 2000); });
  DestroyMetaPages();  // LMDB alone could not even open the file now
  auto store = Open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(Has(*store, "k" + std::to_string(i))) << i;
}

TEST_F(CrashTest, DeletesAndCheckpointsReplayInOrder) {
  std::string before_writes = (dir_ / "data.before").string();
  CrashAfter([&](GroupCommitter& store) {
    if (!WriteRange(store, 1000)) return false;
    // Past the checkpoint interval: the writer checkpoints and the log moves to a new segment.
    std::this_thread::sleep_for(std::chrono::milliseconds(1300));
    auto deleted = [&](int i) {
      asio::io_context io;
      bool ok = false;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            ok = static_cast<bool>(co_await store.Write<void>(Del("k" + std::to_string(i))));
          },
          asio::detached);
      io.run();
      return ok;
    };
    for (int i = 0; i < 1000; i += 2)
      if (!deleted(i)) return false;
    return true;
  });
  {
    // The child's mid-run checkpoint was saved: it names a record past the one made at open.
    std::ifstream in(dir_ / "checkpoint", std::ios::binary);
    std::string checkpoint(std::istreambuf_iterator<char>(in), {});
    uint64_t lsn = 0;
    ASSERT_GE(checkpoint.size(), 16u);
    std::memcpy(&lsn, checkpoint.data() + 8, 8);
    EXPECT_GT(lsn, 0u);
  }
  DestroyMetaPages();
  auto store = Open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(Has(*store, "k" + std::to_string(i)), i % 2 == 1) << i;
  // Reopened cleanly after recovery: the next open replays nothing and still has it all.
  store->Close();
  store = Open();
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(Has(*store, "k" + std::to_string(i)), i % 2 == 1) << i;
}

TEST_F(CrashTest, TheMapGrowsWhileACheckpointIsPinnedAndRecoveryStillWorks) {
  // 1 MiB of map for about 8 MiB of values written across several checkpoints.
  auto open_small = [this] { return GroupCommitter::Open(dir_.string(), {"t"}, size_t{1} << 20); };
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto store = open_small();
    if (!store) {
      std::fprintf(stderr, "open: %s\n", store.error().message.c_str());
      _exit(2);
    }
    std::string value(2000, 'v');
    for (int round = 0; round < 4; ++round) {
      asio::io_context io;
      bool ok = true;
      for (int i = 0; i < 1000; ++i) {
        std::string key = "r" + std::to_string(round) + "k" + std::to_string(i);
        asio::co_spawn(
            io,
            [&, key]() -> asio::awaitable<void> {
              std::function<Result<void>(WriteTxn&)> put = [&, key](WriteTxn& txn) -> Result<void> {
                if (int rc = txn.Put(0, key, value); rc != 0) return Fail(LmdbError(rc, "put"));
                return {};
              };
              auto written = co_await (*store)->Write<void>(std::move(put));
              if (!written) {
                std::fprintf(stderr, "write: %s\n", written.error().message.c_str());
                ok = false;
              }
            },
            asio::detached);
      }
      io.run();
      if (!ok) _exit(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(600));  // a checkpoint in between
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's writes failed";
  DestroyMetaPages();
  auto store = open_small();
  ASSERT_TRUE(store) << store.error().message;
  for (int round = 0; round < 4; ++round)
    for (int i = 0; i < 1000; ++i)
      ASSERT_TRUE(Has(**store, "r" + std::to_string(round) + "k" + std::to_string(i)))
          << round << " " << i;
}

TEST_F(CrashTest, ATornRecordAtTheEndOfTheLogIsIgnored) {
  CrashAfter([](GroupCommitter& store) { return WriteRange(store, 500); });
  // A record the crash cut short, after the newest one: its header promises more than was
  // written. Frames are u64 size | u32 crc | u64 lsn | body, with consecutive lsns.
  std::filesystem::path last;
  size_t end = 0;
  uint64_t lsn = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("wal-", 0) != 0 || name == "wal-spare") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string log(std::istreambuf_iterator<char>(in), {});
    size_t at = 0;
    uint64_t prev = 0;
    for (;;) {
      uint64_t size = 0, next = 0;
      if (at + 20 > log.size()) break;
      std::memcpy(&size, log.data() + at, 8);
      std::memcpy(&next, log.data() + at + 12, 8);
      if ((prev != 0 && next != prev + 1) || at + 20 + size > log.size()) break;
      prev = next;
      at += 20 + size;
    }
    if (prev > lsn) std::tie(last, end, lsn) = std::tuple(entry.path(), at, prev);
  }
  ASSERT_GT(lsn, 0u);
  {
    std::fstream out(last, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(end));
    uint64_t size = 1000;
    uint32_t crc = 0;
    ++lsn;
    out.write(reinterpret_cast<char*>(&size), 8).write(reinterpret_cast<char*>(&crc), 4);
    out.write(reinterpret_cast<char*>(&lsn), 8).write("partial", 7);
  }
  DestroyMetaPages();
  auto store = Open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(Has(*store, "k" + std::to_string(i))) << i;
}

}  // namespace
}  // namespace mikcar::lmdb
