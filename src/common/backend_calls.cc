#include "common/backend_calls.h"

namespace mikcar {
namespace {

// The index in kReasons of a failure of the backend, or -1 for an answer.
int Reason(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kSqlUnavailable:
      return 0;
    case ErrorCode::kBackendTimeout:
      return 1;
    case ErrorCode::kBackend:
      return 2;
    case ErrorCode::kInternal:
      return 3;
    default:
      return -1;
  }
}

}  // namespace

BackendCalls::BackendCalls(std::string service, std::string backend,
                           std::initializer_list<std::string_view> operations)
    : service_(std::move(service)), backend_(std::move(backend)) {
  for (std::string_view name : operations) operations_.push_back(std::make_unique<Operation>(name));
  operations_.push_back(std::make_unique<Operation>("other"));
}

BackendCalls::Operation& BackendCalls::Find(std::string_view name) {
  for (auto& op : operations_) {
    if (op->name == name) return *op;
  }
  return *operations_.back();
}

void BackendCalls::Operation::Record(std::chrono::steady_clock::duration took, const Error* error) {
  latency.Record(std::chrono::duration<double>(took).count());
  if (int reason = error ? Reason(error->code) : -1; reason >= 0) {
    failures[reason].fetch_add(1, std::memory_order_relaxed);
  }
}

void BackendCalls::Collect(MetricsSink& sink) const {
  for (const auto& op : operations_) {
    uint64_t count = op->latency.count.load();
    if (count == 0) continue;
    sink.Counter("mikcar_backend_calls_total", "Calls a service made on its backend.",
                 {{"service", service_}, {"backend", backend_}, {"operation", op->name}},
                 static_cast<double>(count));
  }
  for (const auto& op : operations_) {
    for (size_t i = 0; i < kReasons.size(); ++i) {
      uint64_t n = op->failures[i].load();
      if (n == 0) continue;
      sink.Counter("mikcar_backend_errors_total",
                   "Backend calls that failed in the backend, by reason.",
                   {{"service", service_},
                    {"backend", backend_},
                    {"operation", op->name},
                    {"reason", kReasons[i]}},
                   static_cast<double>(n));
    }
  }
  for (const auto& op : operations_) {
    uint64_t count = op->latency.count.load();
    if (count == 0) continue;
    auto cumulative = op->latency.Cumulative();
    sink.Histogram("mikcar_backend_call_duration_seconds",
                   "How long backend calls took (a long-poll's wait included).",
                   {{"service", service_}, {"backend", backend_}, {"operation", op->name}},
                   LatencyHistogram::kBounds, cumulative, count, op->latency.Sum());
  }
}

}  // namespace mikcar
