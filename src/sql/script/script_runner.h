// `ScriptRunner`: runs the JavaScript of POST /sql/script (SPEC §5.3) inside one SQL transaction.
//
// Scripts run on a bounded pool of JavaScript worker threads, never on an I/O thread; each worker
// owns one JavaScriptCore VM (context group) and gives every script a fresh global. The
// synchronous `sql.query/execute/queryOne` block the worker while the statement runs on the
// backend's own asynchronous machinery on the request's I/O executor, so a worker never runs a
// backend awaitable itself and an I/O thread never waits for a worker. The engine is loaded on the
// first script (src/sql/script/jsc.h). Thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "mikcar/error.h"
#include "mikcar/sql/backend.h"

namespace mikcar::sql::script {

// Limits of every script (configured on the DATABASE_URL, see README.md in this directory).
struct ScriptOptions {
  std::chrono::milliseconds timeout{5'000};       // wall time when a request names none
  std::chrono::milliseconds max_timeout{30'000};  // the most a request may ask for
  uint64_t heap_limit = 64ull << 20;              // growth of the VM heap while the script runs
  unsigned workers = 0;                           // JS worker threads; 0: 2 × cores (at least 2)
  size_t max_queued = 1024;                       // scripts queued or running before 503
  uint64_t max_sql_calls = 10'000;
  uint64_t max_rows = 100'000;
};

struct ScriptJob {
  std::string source;
  std::string input_json = "null";  // the request's `input`, serialised
  std::string trace_id;
  std::chrono::milliseconds timeout{5'000};  // already within ScriptOptions::max_timeout
  Limits sql_limits;                         // the request's statement timeout and deadline
};

struct ScriptOutcome {
  std::string result_json;
  uint64_t queries_executed = 0;
};

class ScriptRunner {
 public:
  virtual ~ScriptRunner() = default;
  // Runs `job`: the script's result as JSON, its transaction committed. Errors (each with a
  // "queries_executed" field, the transaction rolled back): SCRIPT_ERROR 400 (thrown, syntax, a
  // result that is not JSON, a cap on SQL calls or rows; "line" when known), SCRIPT_TIMEOUT 408,
  // SCRIPT_MEMORY 413, the SQL error of a failed statement (even one the script caught),
  // UNAVAILABLE 503 when the engine is missing or the worker queue is full.
  virtual boost::asio::awaitable<Result<ScriptOutcome>> Run(ScriptJob job) = 0;
  // Lets the queued and running scripts finish (each within its time limit), then stops the
  // workers; a later Run() answers UNAVAILABLE. Call while the I/O threads still run: a finished
  // script answers through them.
  virtual void Stop() {}
};

// A runner over `backend`, which must outlive it. Starts no thread and loads nothing until the
// first script.
std::unique_ptr<ScriptRunner> MakeScriptRunner(SqlBackend& backend, ScriptOptions options);

}  // namespace mikcar::sql::script
