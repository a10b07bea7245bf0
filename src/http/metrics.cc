#include "http/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace mikcar::http {
namespace {

std::string Label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') { out += "\\n"; continue; }
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

}  // namespace

void Metrics::Finished(std::string_view service, std::string_view route, std::string_view method, int status,
                       double seconds, uint64_t bytes_in, uint64_t bytes_out) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto key = std::make_tuple(std::string(service), std::string(route), std::string(method), status);
  ++requests_[key];
  Latency& lat = latency_[std::make_tuple(std::string(service), std::string(route))];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++lat.buckets[i];
  }
  ++lat.count;
  lat.sum += seconds;
  bytes_in_ += bytes_in;
  bytes_out_ += bytes_out;
}

std::string Metrics::Render() const {
  std::string out;
  char line[512];
  std::lock_guard lock(mu_);
  out += "# HELP mikcar_http_requests_total HTTP requests by service, route, method and status.\n"
         "# TYPE mikcar_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [service, route, method, status] = key;
    out += "mikcar_http_requests_total{service=\"" + Label(service) + "\",route=\"" + Label(route) +
           "\",method=\"" + Label(method) + "\",status=\"" + std::to_string(status) + "\"} " +
           std::to_string(n) + "\n";
  }
  out += "# HELP mikcar_http_request_duration_seconds Request handling latency.\n"
         "# TYPE mikcar_http_request_duration_seconds histogram\n";
  for (const auto& [key, lat] : latency_) {
    const auto& [service, route] = key;
    std::string labels = "service=\"" + Label(service) + "\",route=\"" + Label(route) + "\"";
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      std::snprintf(line, sizeof line, "{%s,le=\"%g\"} %llu\n", labels.c_str(), kBuckets[i],
                    static_cast<unsigned long long>(lat.buckets[i]));
      out += "mikcar_http_request_duration_seconds_bucket";
      out += line;
    }
    out += "mikcar_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(lat.count) + "\n";
    std::snprintf(line, sizeof line, "{%s} %.9f\n", labels.c_str(), lat.sum);
    out += "mikcar_http_request_duration_seconds_sum";
    out += line;
    out += "mikcar_http_request_duration_seconds_count{" + labels + "} " + std::to_string(lat.count) + "\n";
  }
  out += "# HELP mikcar_http_requests_in_flight Requests being handled now.\n"
         "# TYPE mikcar_http_requests_in_flight gauge\n"
         "mikcar_http_requests_in_flight " + std::to_string(in_flight_.load()) + "\n";
  out += "# HELP mikcar_http_request_bytes_total Request body bytes received.\n"
         "# TYPE mikcar_http_request_bytes_total counter\n"
         "mikcar_http_request_bytes_total " + std::to_string(bytes_in_) + "\n";
  out += "# HELP mikcar_http_response_bytes_total Response body bytes sent.\n"
         "# TYPE mikcar_http_response_bytes_total counter\n"
         "mikcar_http_response_bytes_total " + std::to_string(bytes_out_) + "\n";
  out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
         "# TYPE process_resident_memory_bytes gauge\n"
         "process_resident_memory_bytes " + std::to_string(ResidentBytes()) + "\n";
  out += "# HELP process_open_fds Number of open file descriptors.\n"
         "# TYPE process_open_fds gauge\n"
         "process_open_fds " + std::to_string(OpenFds()) + "\n";
  return out;
}

}  // namespace mikcar::http
