#include "http/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
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

// A metric or label name: [a-zA-Z_:][a-zA-Z0-9_:]* (no colon in a label name).
bool ValidName(std::string_view name, bool label) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (c == ':' && !label) || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool ValidLabels(MetricsSink::Labels labels) {
  for (const auto& [key, value] : labels) {
    if (!ValidName(key, true) || key == "le") return false;
  }
  return true;
}

// HELP text: a backslash and a newline escaped.
std::string Help(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// A sample value: integers without a fraction, others in the shortest exact form.
void AppendNumber(std::string& out, double value) {
  if (std::isnan(value)) return out.append("NaN"), void();
  if (std::isinf(value)) return out.append(value > 0 ? "+Inf" : "-Inf"), void();
  char digits[32];
  std::to_chars_result r;
  if (std::abs(value) < 9e15 && value == static_cast<double>(static_cast<int64_t>(value))) {
    r = std::to_chars(digits, digits + sizeof digits, static_cast<int64_t>(value));
  } else {
    r = std::to_chars(digits, digits + sizeof digits, value);
  }
  out.append(digits, r.ptr);
}

// `name{k="v",...,le="bound"} value` and a newline.
void AppendSample(std::string& out, std::string_view name, MetricsSink::Labels labels,
                  std::string_view le, double value) {
  out.append(name);
  if (labels.size() > 0 || !le.empty()) {
    char sep = '{';
    for (const auto& [key, v] : labels) {
      out.push_back(sep);
      out.append(key).append("=\"").append(Label(v)).append("\"");
      sep = ',';
    }
    if (!le.empty()) {
      out.push_back(sep);
      out.append("le=\"").append(le).append("\"");
    }
    out.push_back('}');
  }
  out.push_back(' ');
  AppendNumber(out, value);
  out.push_back('\n');
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
  route->latency.Record(seconds);
}

void Metrics::Collect(FamilySink& sink) const {
  constexpr std::string_view kRequests = "mikcar_http_requests_total";
  constexpr std::string_view kRequestsHelp = "HTTP requests by service, route, method and status.";
  constexpr std::string_view kLatency = "mikcar_http_request_duration_seconds";
  constexpr std::string_view kLatencyHelp = "Request handling latency.";
  sink.Declare(kRequests, "counter", kRequestsHelp);
  sink.Declare(kLatency, "histogram", kLatencyHelp);
  {
    std::lock_guard lock(mu_);
    for (const auto& r : routes_) {
      for (size_t status = 0; status < r.by_status.size(); ++status) {
        uint64_t n = r.by_status[status].load();
        if (n == 0) continue;
        std::string code = std::to_string(status);
        sink.Counter(
            kRequests, kRequestsHelp,
            {{"service", r.service}, {"route", r.route}, {"method", r.method}, {"status", code}},
            static_cast<double>(n));
      }
    }
    for (const auto& r : routes_) {
      LatencyHistogram::Snapshot latency = r.latency.Read();
      if (latency.count == 0) continue;
      sink.Histogram(kLatency, kLatencyHelp,
                     {{"service", r.service}, {"route", r.route}, {"method", r.method}},
                     LatencyHistogram::kBounds, latency.cumulative, latency.count, latency.sum);
    }
  }
  sink.Gauge("mikcar_http_requests_in_flight", "Requests being handled now.", {},
             static_cast<double>(in_flight_.load()));
  sink.Counter("mikcar_http_request_bytes_total", "Request body bytes received.", {},
               static_cast<double>(bytes_in_.load()));
  sink.Counter("mikcar_http_response_bytes_total", "Response body bytes sent.", {},
               static_cast<double>(bytes_out_.load()));
  sink.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {},
             static_cast<double>(ResidentBytes()));
  sink.Gauge("process_open_fds", "Number of open file descriptors.", {},
             static_cast<double>(OpenFds()));
  sink.Counter("process_cpu_seconds_total", "User and system CPU time in seconds.", {},
               CpuSeconds());
  sink.Gauge("process_start_time_seconds",
             "Start time of the process since the unix epoch in seconds.", {}, started_at_);
}

FamilySink::Family* FamilySink::Get(std::string_view name, std::string_view type,
                                    std::string_view help) {
  if (!ValidName(name, false)) return nullptr;
  for (Family& f : families_) {
    if (f.name == name) return f.type == type ? &f : nullptr;
  }
  return &families_.emplace_back(Family{std::string(name), std::string(type), Help(help), {}});
}

void FamilySink::Counter(std::string_view family, std::string_view help, Labels labels,
                         double value) {
  if (!ValidLabels(labels)) return;
  if (Family* f = Get(family, "counter", help)) AppendSample(f->samples, family, labels, "", value);
}

void FamilySink::Gauge(std::string_view family, std::string_view help, Labels labels,
                       double value) {
  if (!ValidLabels(labels)) return;
  if (Family* f = Get(family, "gauge", help)) AppendSample(f->samples, family, labels, "", value);
}

void FamilySink::Histogram(std::string_view family, std::string_view help, Labels labels,
                           std::span<const double> bounds, std::span<const uint64_t> cumulative,
                           uint64_t count, double sum) {
  Family* f = ValidLabels(labels) ? Get(family, "histogram", help) : nullptr;
  if (!f) return;
  const std::string name(family);
  for (size_t i = 0; i < bounds.size() && i < cumulative.size(); ++i) {
    char le[32];
    std::snprintf(le, sizeof le, "%g", bounds[i]);
    AppendSample(f->samples, name + "_bucket", labels, le, static_cast<double>(cumulative[i]));
  }
  AppendSample(f->samples, name + "_bucket", labels, "+Inf", static_cast<double>(count));
  AppendSample(f->samples, name + "_sum", labels, "", sum);
  AppendSample(f->samples, name + "_count", labels, "", static_cast<double>(count));
}

std::string FamilySink::Render() const {
  std::string out;
  for (const Family& f : families_) {
    out.append("# HELP ").append(f.name).append(" ").append(f.help).append("\n");
    out.append("# TYPE ").append(f.name).append(" ").append(f.type).append("\n");
    out.append(f.samples);
  }
  return out;
}

}  // namespace mikcar::http
