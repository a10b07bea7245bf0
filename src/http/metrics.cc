#include "http/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>

namespace mikcar::http {
namespace {

std::string Label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

long ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

long OpenFds() {
  long n = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(dir);
    --n;  // the directory stream itself
  }
  return n;
}

// User plus system CPU time of the process, in seconds.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One unlabelled metric with its HELP and TYPE lines.
template <typename Number>
void AppendScalar(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help, Number value) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  char digits[32];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(name).append(" ").append(digits, end).append("\n");
}

}  // namespace

Metrics::Metrics() : started_at_(UnixSeconds()) {}

RouteStats* Metrics::Register(std::string_view service, std::string_view route,
                              std::string_view method) {
  std::lock_guard lock(mu_);
  RouteStats& stats = routes_.emplace_back();
  stats.service = service;
  stats.route = route;
  stats.method = method;
  return &stats;
}

void Metrics::Finished(RouteStats* route, int status, double seconds, uint64_t bytes_in,
                       uint64_t bytes_out) {
  constexpr auto relaxed = std::memory_order_relaxed;
  in_flight_.fetch_sub(1, relaxed);
  bytes_in_.fetch_add(bytes_in, relaxed);
  bytes_out_.fetch_add(bytes_out, relaxed);
  if (status >= 0 && status < static_cast<int>(route->by_status.size()))
    route->by_status[status].fetch_add(1, relaxed);
  for (size_t i = 0; i < RouteStats::kBuckets.size(); ++i) {
    if (seconds <= RouteStats::kBuckets[i]) {
      route->buckets[i].fetch_add(1, relaxed);  // cumulative counts are summed when rendering
      break;
    }
  }
  route->count.fetch_add(1, relaxed);
  route->sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), relaxed);
}

std::string Metrics::Render() const {
  std::string out;
  char line[512];
  std::lock_guard lock(mu_);
  out +=
      "# HELP mikcar_http_requests_total HTTP requests by service, route, method and status.\n"
      "# TYPE mikcar_http_requests_total counter\n";
  for (const auto& r : routes_) {
    for (size_t status = 0; status < r.by_status.size(); ++status) {
      uint64_t n = r.by_status[status].load();
      if (n == 0) continue;
      out += "mikcar_http_requests_total{service=\"" + Label(r.service) + "\",route=\"" +
             Label(r.route) + "\",method=\"" + Label(r.method) + "\",status=\"" +
             std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }
  }
  out +=
      "# HELP mikcar_http_request_duration_seconds Request handling latency.\n"
      "# TYPE mikcar_http_request_duration_seconds histogram\n";
  for (const auto& r : routes_) {
    uint64_t count = r.count.load();
    if (count == 0) continue;
    std::string labels = "service=\"" + Label(r.service) + "\",route=\"" + Label(r.route) +
                         "\",method=\"" + Label(r.method) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < RouteStats::kBuckets.size(); ++i) {
      cumulative += r.buckets[i].load();
      std::snprintf(line, sizeof line, "{%s,le=\"%g\"} %llu\n", labels.c_str(),
                    RouteStats::kBuckets[i], static_cast<unsigned long long>(cumulative));
      out += "mikcar_http_request_duration_seconds_bucket";
      out += line;
    }
    out += "mikcar_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " +
           std::to_string(count) + "\n";
    std::snprintf(line, sizeof line, "{%s} %.9f\n", labels.c_str(),
                  static_cast<double>(r.sum_ns.load()) / 1e9);
    out += "mikcar_http_request_duration_seconds_sum";
    out += line;
    out += "mikcar_http_request_duration_seconds_count{" + labels + "} " + std::to_string(count) +
           "\n";
  }
  AppendScalar(out, "mikcar_http_requests_in_flight", "gauge", "Requests being handled now.",
               in_flight_.load());
  AppendScalar(out, "mikcar_http_request_bytes_total", "counter", "Request body bytes received.",
               static_cast<long long>(bytes_in_.load()));
  AppendScalar(out, "mikcar_http_response_bytes_total", "counter", "Response body bytes sent.",
               static_cast<long long>(bytes_out_.load()));
  AppendScalar(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
               ResidentBytes());
  AppendScalar(out, "process_open_fds", "gauge", "Number of open file descriptors.", OpenFds());
  AppendScalar(out, "process_cpu_seconds_total", "counter", "User and system CPU time in seconds.",
               CpuSeconds());
  AppendScalar(out, "process_start_time_seconds", "gauge",
               "Start time of the process since the unix epoch in seconds.", started_at_);
  return out;
}

}  // namespace mikcar::http
