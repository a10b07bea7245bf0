// How many CPUs this process may use, and from it the default number of I/O threads (and of
// script workers). std::thread::hardware_concurrency() counts every CPU of the host; a sidecar
// usually runs pinned (taskset, cpuset) or under a container's CPU limit, where one thread per host
// CPU would mean threads time-sharing a fraction of a core.
#pragma once

#include <optional>
#include <string_view>

namespace mikcar {

// CPUs in this process's affinity mask, capped by a cgroup CPU quota (v2 cpu.max, or v1
// cpu.cfs_quota_us / cpu.cfs_period_us) rounded up; at least 1.
unsigned AvailableCores();

// The default number of I/O threads: half of AvailableCores(), at least one. A sidecar shares
// its CPUs with the app that calls it, and that app spends at least as much CPU per request as
// mikcar does. Measured on 2 vCPUs with the client on the same CPUs (bench/README.md, session
// 11): one I/O thread served 1.2-1.5x the KV GETs of two, at a lower p99, because two busy
// I/O threads and the client take turns on two CPUs.
unsigned DefaultIoThreads();

// The CPUs a cgroup v2 `cpu.max` ("max 100000", "150000 100000") allows, rounded up; nullopt
// for no limit or an unreadable value.
std::optional<unsigned> CoresOfCpuMax(std::string_view cpu_max);

}  // namespace mikcar
