#include "common/cores.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>
#include <thread>

namespace mikcar {
namespace {

std::optional<long long> Number(std::string_view text) {
  long long n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return n;
}

std::optional<unsigned> CoresOfQuota(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;  // -1 (v1) is "no limit"
  return static_cast<unsigned>(std::max(1LL, (quota + period - 1) / period));
}

std::string ReadLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::optional<unsigned> CoresOfCpuMax(std::string_view cpu_max) {
  while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' '))
    cpu_max.remove_suffix(1);
  size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto quota = Number(cpu_max.substr(0, space));  // "max" is no number: no limit
  auto period = Number(cpu_max.substr(space + 1));
  if (!quota || !period) return std::nullopt;
  return CoresOfQuota(*quota, *period);
}

unsigned AvailableCores() {
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    cores = static_cast<unsigned>(CPU_COUNT(&set));
  std::optional<unsigned> quota = CoresOfCpuMax(ReadLine("/sys/fs/cgroup/cpu.max"));
  if (!quota) {
    auto v1_quota = Number(ReadLine("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
    auto v1_period = Number(ReadLine("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
    if (v1_quota && v1_period) quota = CoresOfQuota(*v1_quota, *v1_period);
  }
  if (quota) cores = std::min(cores, *quota);
  return std::max(1u, cores);
}

unsigned DefaultIoThreads() { return std::max(1u, AvailableCores() / 2); }

}  // namespace mikcar
