#include "common/lmdb/group_committer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

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
std::function<Result<void>(MDB_txn*)> Put(MDB_dbi dbi, std::string key, bool refuse = false) {
  return [dbi, key = std::move(key), refuse](MDB_txn* txn) -> Result<void> {
    if (refuse) return Fail(ErrorCode::kPreconditionFailed, "refused");
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{key.size(), const_cast<char*>(key.data())};
    if (int rc = mdb_put(txn, dbi, &k, &v, 0); rc != 0) return Fail(LmdbError(rc, "put"));
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
  auto result = co_await store.Write<void>(Put(store.Dbi(0), "k" + std::to_string(i), refuse));
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

}  // namespace
}  // namespace mikcar::lmdb
