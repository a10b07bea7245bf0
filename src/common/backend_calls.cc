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
    case ErrorCode::kSqlTimeout:
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
  // One reading per operation, so the counter and the histogram agree.
  std::vector<LatencyHistogram::Snapshot> latency;
  for (const auto& op : operations_) latency.push_back(op->latency.Read());
  for (size_t k = 0; k < operations_.size(); ++k) {
    if (latency[k].count == 0) continue;
    sink.Counter(
        "mikcar_backend_calls_total", "Calls a service made on its backend.",
        {{"service", service_}, {"backend", backend_}, {"operation", operations_[k]->name}},
        static_cast<double>(latency[k].count));
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
  for (size_t k = 0; k < operations_.size(); ++k) {
    if (latency[k].count == 0) continue;
    sink.Histogram(
        "mikcar_backend_call_duration_seconds",
        "How long backend calls took (a long-poll's wait and a streamed upload included).",
        {{"service", service_}, {"backend", backend_}, {"operation", operations_[k]->name}},
        LatencyHistogram::kBounds, latency[k].cumulative, latency[k].count, latency[k].sum);
  }
}

}  // namespace mikcar
