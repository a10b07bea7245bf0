#include "common/cores.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>

namespace mikcar {
namespace {

TEST(CoresTest, CpuMaxQuotaIsRoundedUpAndMaxIsNoLimit) {
  EXPECT_EQ(CoresOfCpuMax("max 100000\n"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000 100000\n"), 1u);
  EXPECT_EQ(CoresOfCpuMax("150000 100000"), 2u);
  EXPECT_EQ(CoresOfCpuMax("50000 100000"), 1u);  // half a core still gets a thread
  EXPECT_EQ(CoresOfCpuMax("400000 100000"), 4u);
  EXPECT_EQ(CoresOfCpuMax(""), std::nullopt);  // no cgroup v2 file
  EXPECT_EQ(CoresOfCpuMax("garbage"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000 0"), std::nullopt);
}

TEST(CoresTest, FollowsTheAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  EXPECT_LE(AvailableCores(), static_cast<unsigned>(CPU_COUNT(&saved)));
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &saved)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(AvailableCores(), 1u);
  EXPECT_EQ(DefaultIoThreads(), 1u);  // one CPU still gets its I/O thread
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

TEST(CoresTest, DefaultIoThreadsAreHalfTheCores) {
  EXPECT_EQ(DefaultIoThreads(), std::max(1u, AvailableCores() / 2));
}

}  // namespace
}  // namespace mikcar
