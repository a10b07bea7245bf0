#include "sql/script/script_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/blocking_pool.h"
#include "common/cores.h"
#include "sql/script/jsc.h"
#include "sql/script/script_forms.h"
#include "sql/statement_json.h"

namespace mikcar::sql::script {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// The watchdog slice: JSC calls back after this much execution, and the callback re-arms it
// (returning false without re-arming would let the script run forever). Each call checks the
// wall-clock deadline and the heap.
constexpr double kSliceSeconds = 0.01;
// How long a worker waits beyond the deadline for a statement that the backend bounds itself.
constexpr auto kIoGrace = std::chrono::seconds(10);
// Cached forms: at most this many scripts and bytes, then the cache starts over.
constexpr size_t kCacheEntries = 1024;
constexpr size_t kCacheBytes = 16u << 20;
constexpr size_t kMaxLogLine = 4096;

// The globals a script must not see (SPEC §5.3): no WebAssembly, no binary buffers (they also
// allocate outside the heap the memory limit watches), no string eval (also turned off in the
// engine, so `Function("…")` throws too).
constexpr const char* kForbiddenGlobals[] = {
    "eval",         "WebAssembly",   "ArrayBuffer",    "SharedArrayBuffer",    "Atomics",
    "DataView",     "Int8Array",     "Uint8Array",     "Uint8ClampedArray",    "Int16Array",
    "Uint16Array",  "Int32Array",    "Uint32Array",    "Float16Array",         "Float32Array",
    "Float64Array", "BigInt64Array", "BigUint64Array", "FinalizationRegistry", "WeakRef",
};

// ---- strings ------------------------------------------------------------------------------

// UTF-8 (already validated by the JSON parser) as UTF-16 for the engine; NUL bytes survive.
std::u16string Utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c, n = 1;
    } else if ((c >> 5) == 6) {
      cp = c & 0x1f, n = 2;
    } else if ((c >> 4) == 14) {
      cp = c & 0x0f, n = 3;
    } else {
      cp = c & 0x07, n = 4;
    }
    if (i + n > s.size()) break;
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += n;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xd800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xdc00 + (cp & 0x3ff)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

// The engine's UTF-16 as UTF-8; a lone surrogate becomes U+FFFD.
std::string Utf8(const Jsc& js, JSStringRef string) {
  size_t length = js.JSStringGetLength(string);
  const JSChar* p = js.JSStringGetCharactersPtr(string);
  std::string out;
  out.reserve(length);
  for (size_t i = 0; i < length; ++i) {
    uint32_t cp = p[i];
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < length && p[i + 1] >= 0xdc00 &&
        p[i + 1] <= 0xdfff) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (p[++i] - 0xdc00);
    } else if (cp >= 0xd800 && cp <= 0xdfff) {
      cp = 0xfffd;
    }
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }
  return out;
}

// An owned JSStringRef.
class JsString {
 public:
  JsString(const Jsc& js, std::string_view utf8) : js_(&js) {
    std::u16string u = Utf16(utf8);
    string_ = js.JSStringCreateWithCharacters(reinterpret_cast<const JSChar*>(u.data()), u.size());
  }
  JsString(const Jsc& js, JSStringRef adopted) : js_(&js), string_(adopted) {}
  JsString(const JsString&) = delete;
  JsString& operator=(const JsString&) = delete;
  ~JsString() {
    if (string_) js_->JSStringRelease(string_);
  }
  JSStringRef get() const { return string_; }
  explicit operator bool() const { return string_ != nullptr; }

 private:
  const Jsc* js_;
  JSStringRef string_ = nullptr;
};

// ---- the per-thread VM --------------------------------------------------------------------

// One JavaScriptCore VM per worker thread: a group is used by one thread at a time, and creating
// one costs 20–40 ms, so it lives as long as the thread.
struct WorkerVm {
  JSContextGroupRef group = nullptr;
  // Lines JSObjectMakeFunction adds before a function body (its "(function anonymous(…) {"
  // prologue), measured once: subtracted from errors of the function forms.
  int body_line_offset = 0;
  // The next request's global, made while the worker would otherwise be idle (after the
  // previous answer went out): creating a global and trimming it is most of a trivial script's
  // cost. It holds nothing of any request.
  JSGlobalContextRef spare = nullptr;
};

struct CachedForm {
  PreparedSource source;
  // For ScriptForm::kScript: 0 not yet compiled, 1 a program (its completion value is the result),
  // 2 a function body (a top-level return).
  std::atomic<int> compiled_as{0};
};

// ---- one run ------------------------------------------------------------------------------

enum class Stop { kNone, kTimeout, kMemory };

// What a worker hands back to the request's coroutine: the outcome and the transaction to end.
struct Finished {
  Result<ScriptOutcome> outcome;
  std::shared_ptr<Transaction> transaction;
  Clock::time_point deadline;
  uint64_t queries = 0;
};

struct ScriptRun {
  const Jsc* js = nullptr;
  const ScriptOptions* options = nullptr;
  const ScriptJob* job = nullptr;
  SqlBackend* backend = nullptr;
  asio::any_io_executor io;
  WorkerVm* vm = nullptr;
  JSGlobalContextRef ctx = nullptr;
  Clock::time_point deadline;
  Stop stop = Stop::kNone;
  double heap_baseline = -1;  // unknown until the first slice
  double heap_peak = 0;
  // The transaction, begun by the first SQL call on the I/O thread (shared with that call, so an
  // abandoned wait never leaves it writing into a finished run).
  std::shared_ptr<std::shared_ptr<Transaction>> transaction =
      std::make_shared<std::shared_ptr<Transaction>>();
  std::optional<Error> sql_error;  // sticky: the script is rolled back and answers with it
  uint64_t queries = 0;
  uint64_t rows = 0;
  // The settled value of a returned promise (protected from the GC while held here).
  bool settled = false;
  bool rejected = false;
  JSValueRef settlement = nullptr;
};

thread_local ScriptRun* current = nullptr;  // the run on this worker thread, for native callbacks

// True once the watchdog stopped the current script (time or memory).
bool Stopped() { return current && current->stop != Stop::kNone; }

JSValueRef Get(const Jsc& js, JSContextRef ctx, JSObjectRef object, const char* name) {
  JSStringRef n = js.JSStringCreateWithUTF8CString(name);
  JSValueRef v = js.JSObjectGetProperty(ctx, object, n, nullptr);
  js.JSStringRelease(n);
  return v;
}

void Set(const Jsc& js, JSContextRef ctx, JSObjectRef object, const char* name, JSValueRef value) {
  JSStringRef n = js.JSStringCreateWithUTF8CString(name);
  js.JSObjectSetProperty(ctx, object, n, value, kJSPropertyAttributeNone, nullptr);
  js.JSStringRelease(n);
}

double HeapInUse(const Jsc& js, JSContextRef ctx) {
  JSObjectRef stats = js.JSGetMemoryUsageStatistics(ctx);
  if (!stats) return 0;
  return js.JSValueToNumber(ctx, Get(js, ctx, stats, "heapSize"), nullptr) +
         js.JSValueToNumber(ctx, Get(js, ctx, stats, "extraMemorySize"), nullptr);
}

bool ShouldTerminate(JSContextRef ctx, void* arg) {
  ScriptRun& run = *static_cast<ScriptRun*>(arg);
  if (Clock::now() >= run.deadline) {
    run.stop = Stop::kTimeout;
    return true;
  }
  // JSGetMemoryUsageStatistics walks the whole heap (about 1 ms for a fresh VM), so it is never
  // called for a script that ends within its first slice: the baseline is the heap at the first
  // check, and what the script allocated before it (one slice's worth) is not counted.
  double heap = HeapInUse(*run.js, ctx);
  if (run.heap_baseline < 0) run.heap_baseline = heap;
  double used = heap - run.heap_baseline;
  run.heap_peak = std::max(run.heap_peak, used);
  if (used > static_cast<double>(run.options->heap_limit)) {
    run.stop = Stop::kMemory;
    return true;
  }
  run.js->JSContextGroupSetExecutionTimeLimit(run.vm->group, kSliceSeconds, ShouldTerminate, arg);
  return false;
}

std::string ValueText(const Jsc& js, JSContextRef ctx, JSValueRef value) {
  JSStringRef s = js.JSValueToStringCopy(ctx, value, nullptr);
  if (!s) return "?";
  JsString owned(js, s);
  return Utf8(js, s);
}

JSValueRef Throw(const Jsc& js, JSContextRef ctx, JSValueRef* exception, std::string_view message) {
  JsString text(js, message);
  JSValueRef arg = js.JSValueMakeString(ctx, text.get());
  *exception = js.JSObjectMakeError(ctx, 1, &arg, nullptr);
  return js.JSValueMakeUndefined(ctx);
}

Error ScriptError(std::string message) {
  return Error{ErrorCode::kScriptError, std::move(message), {}};
}

// Runs one backend call on the request's I/O executor and blocks this worker until it is done.
// The awaitable is created and run on the I/O thread, so nothing of the backend runs here.
template <typename T, typename MakeTask>
Result<T> OnIo(const asio::any_io_executor& io, MakeTask make, Clock::time_point deadline) {
  auto done = std::make_shared<std::promise<Result<T>>>();
  auto future = done->get_future();
  asio::co_spawn(io, std::move(make), [done](std::exception_ptr e, Result<T> result) {
    if (e) result = Fail(ErrorCode::kInternal, "the database call failed with an exception");
    done->set_value(std::move(result));
  });
  if (future.wait_until(deadline + kIoGrace) != std::future_status::ready)
    return Fail(ErrorCode::kUnavailable,
                "the database call did not finish (server shutting down?)");
  return future.get();
}

// ---- sql.* --------------------------------------------------------------------------------

enum class SqlMode { kQuery, kExecute, kQueryOne };

// The statement of a sql.* call, or a TypeError for the script.
Result<Statement> StatementOf(const Jsc& js, JSContextRef ctx, size_t argc, const JSValueRef argv[],
                              const char* what) {
  if (argc < 1 || !js.JSValueIsString(ctx, argv[0]))
    return Fail(ScriptError(std::string(what) + "(sql, params): sql must be a string"));
  Statement statement;
  statement.sql = ValueText(js, ctx, argv[0]);
  if (statement.sql.find('\0') != std::string::npos)
    return Fail(ScriptError(std::string(what) + ": sql contains a NUL character"));
  if (IsTransactionControl(statement.sql)) {
    return Fail(ScriptError(std::string(what) +
                            ": transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …) is not "
                            "available: the script runs in one transaction that mikcar ends"));
  }
  if (argc < 2 || js.JSValueIsUndefined(ctx, argv[1]) || js.JSValueIsNull(ctx, argv[1]))
    return statement;
  if (!js.JSValueIsArray(ctx, argv[1]))
    return Fail(ScriptError(std::string(what) + "(sql, params): params must be an array"));
  JSValueRef exception = nullptr;
  JSStringRef text = js.JSValueCreateJSONString(ctx, argv[1], 0, &exception);
  if (!text) {
    std::string why = exception ? ValueText(js, ctx, exception) : "not JSON";
    return Fail(ScriptError(std::string(what) + ": params cannot be sent: " + why));
  }
  JsString owned(js, text);
  boost::system::error_code ec;
  boost::json::value list = boost::json::parse(Utf8(js, text), ec);
  if (ec || !list.is_array())
    return Fail(ScriptError(std::string(what) + ": params cannot be sent"));
  for (const boost::json::value& v : list.get_array()) {
    auto param = ToParam(v);
    if (!param) return Fail(param.error());
    statement.params.push_back(std::move(*param));
  }
  return statement;
}

JSValueRef SqlCall(SqlMode mode, JSContextRef ctx, size_t argc, const JSValueRef argv[],
                   JSValueRef* exception) {
  ScriptRun& run = *current;
  const Jsc& js = *run.js;
  const char* what = mode == SqlMode::kQuery     ? "sql.query"
                     : mode == SqlMode::kExecute ? "sql.execute"
                                                 : "sql.queryOne";
  if (run.sql_error) {
    return Throw(
        js, ctx, exception,
        "an earlier SQL call failed, the transaction is rolled back: " + run.sql_error->message);
  }
  if (run.queries >= run.options->max_sql_calls) {
    run.sql_error = ScriptError("the script made more than " +
                                std::to_string(run.options->max_sql_calls) + " SQL calls");
    return Throw(js, ctx, exception, run.sql_error->message);
  }
  auto statement = StatementOf(js, ctx, argc, argv, what);
  if (Stopped()) return js.JSValueMakeUndefined(ctx);  // stopped inside a toJSON of params
  if (!statement) return Throw(js, ctx, exception, statement.error().message);

  // The statement may not outlast the script: its timeout and the transaction's deadline are the
  // script's remaining time (and never more than the request's own limits).
  auto now = Clock::now();
  if (now >= run.deadline) {
    run.stop = Stop::kTimeout;
    return Throw(js, ctx, exception, "script timed out");
  }
  // BEGIN and the first statement in one trip to the I/O thread.
  Limits limits = run.job->sql_limits;
  limits.deadline = std::min(limits.deadline, run.deadline);
  // Rounded up: a statement cut short by the script's own limit must not end before the script's
  // deadline, or its timeout would read as the statement's (504) instead of the script's (408).
  limits.statement_timeout =
      std::min(limits.statement_timeout,
               std::max(std::chrono::milliseconds(1),
                        std::chrono::ceil<std::chrono::milliseconds>(run.deadline - now)));
  auto step = [backend = run.backend, limits, transaction = run.transaction,
               s = std::move(*statement)]() mutable -> Task<ResultSet> {
    if (!*transaction) {
      auto begun = co_await backend->Begin(limits);
      if (!begun) co_return Fail(std::move(begun.error()));
      *transaction = std::move(*begun);
    }
    co_return co_await (*transaction)->Run(std::move(s));
  };
  auto result = OnIo<ResultSet>(run.io, std::move(step), run.deadline);
  if (!result) {
    run.sql_error = std::move(result.error());
    return Throw(js, ctx, exception, run.sql_error->message);
  }
  ++run.queries;
  run.rows += result->rows.size();
  if (run.rows > run.options->max_rows) {
    run.sql_error =
        ScriptError("the script read more than " + std::to_string(run.options->max_rows) + " rows");
    return Throw(js, ctx, exception, run.sql_error->message);
  }
  if (mode == SqlMode::kExecute) return js.JSValueMakeNumber(ctx, double(result->rows_affected));
  if (mode == SqlMode::kQueryOne) {
    if (result->rows.empty()) return js.JSValueMakeNull(ctx);
    result->rows.resize(1);
  }
  JsString rows(js, RowsJson(*result));
  JSValueRef value = js.JSValueMakeFromJSONString(ctx, rows.get());
  if (!value) return Throw(js, ctx, exception, std::string(what) + ": rows are not JSON");
  if (mode == SqlMode::kQueryOne) {
    JSObjectRef list = js.JSValueToObject(ctx, value, nullptr);
    JSStringRef zero = js.JSStringCreateWithUTF8CString("0");
    value = js.JSObjectGetProperty(ctx, list, zero, nullptr);
    js.JSStringRelease(zero);
  }
  return value;
}

JSValueRef SqlQuery(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                    const JSValueRef argv[], JSValueRef* exception) {
  return SqlCall(SqlMode::kQuery, ctx, argc, argv, exception);
}
JSValueRef SqlExecute(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                      const JSValueRef argv[], JSValueRef* exception) {
  return SqlCall(SqlMode::kExecute, ctx, argc, argv, exception);
}
JSValueRef SqlQueryOne(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                       const JSValueRef argv[], JSValueRef* exception) {
  return SqlCall(SqlMode::kQueryOne, ctx, argc, argv, exception);
}

JSValueRef ConsoleLog(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                      const JSValueRef argv[], JSValueRef*) {
  ScriptRun& run = *current;
  const Jsc& js = *run.js;
  if (!spdlog::should_log(spdlog::level::debug)) return js.JSValueMakeUndefined(ctx);
  std::string line;
  for (size_t i = 0; i < argc && line.size() < kMaxLogLine && !Stopped(); ++i) {
    if (i) line += ' ';
    if (js.JSValueIsString(ctx, argv[i]) || !js.JSValueIsObject(ctx, argv[i])) {
      line += ValueText(js, ctx, argv[i]);
    } else if (JSStringRef text = js.JSValueCreateJSONString(ctx, argv[i], 0, nullptr)) {
      JsString owned(js, text);
      line += Utf8(js, text);
    } else {
      line += ValueText(js, ctx, argv[i]);
    }
  }
  if (line.size() > kMaxLogLine) line.resize(kMaxLogLine);
  spdlog::debug("script console.log: {} trace={}", line, run.job->trace_id);
  return js.JSValueMakeUndefined(ctx);
}

// BigInt.prototype.toJSON: a BigInt in the result or in params becomes its decimal string.
JSValueRef BigIntToJson(JSContextRef ctx, JSObjectRef, JSObjectRef self, size_t, const JSValueRef[],
                        JSValueRef* exception) {
  const Jsc& js = *current->js;
  JSStringRef text = js.JSValueToStringCopy(ctx, self, exception);
  if (!text) return js.JSValueMakeUndefined(ctx);
  JSValueRef value = js.JSValueMakeString(ctx, text);
  js.JSStringRelease(text);
  return value;
}

JSValueRef Settle(bool rejected, JSContextRef ctx, size_t argc, const JSValueRef argv[]) {
  ScriptRun& run = *current;
  const Jsc& js = *run.js;
  if (!run.settled) {
    run.settled = true;
    run.rejected = rejected;
    run.settlement = argc ? argv[0] : js.JSValueMakeUndefined(ctx);
    js.JSValueProtect(ctx, run.settlement);
  }
  return js.JSValueMakeUndefined(ctx);
}
JSValueRef Fulfilled(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                     const JSValueRef argv[], JSValueRef*) {
  return Settle(false, ctx, argc, argv);
}
JSValueRef Rejected(JSContextRef ctx, JSObjectRef, JSObjectRef, size_t argc,
                    const JSValueRef argv[], JSValueRef*) {
  return Settle(true, ctx, argc, argv);
}

JSObjectRef Native(const Jsc& js, JSContextRef ctx, const char* name,
                   JSObjectCallAsFunctionCallback callback) {
  JSStringRef n = js.JSStringCreateWithUTF8CString(name);
  JSObjectRef f = js.JSObjectMakeFunctionWithCallback(ctx, n, callback);
  js.JSStringRelease(n);
  return f;
}

// ---- the runner ---------------------------------------------------------------------------

class JscScriptRunner final : public ScriptRunner {
 public:
  JscScriptRunner(SqlBackend& backend, ScriptOptions options)
      : backend_(backend), options_(options) {
    if (options_.workers == 0) options_.workers = std::max(2u, 2 * AvailableCores());
  }
  // The workers stop first: a script still finishing (or a worker preparing its next global)
  // uses the members below. Found by ThreadSanitizer at shutdown.
  ~JscScriptRunner() override {
    Stop();
    pool_.reset();
  }

  void Stop() override {
    BlockingPool* pool = nullptr;
    {
      std::lock_guard lock(pool_mu_);  // no script is posted after this
      stopped_ = true;
      pool = pool_.get();
    }
    // Outside the lock: a script request arriving meanwhile must not hold an I/O thread.
    if (pool) pool->Stop();  // waits for the queued and running scripts
  }

  asio::awaitable<Result<ScriptOutcome>> Run(ScriptJob job) override {
    auto js = LoadJsc();
    if (!js) co_return Fail(js.error());
    if (queued_.fetch_add(1, std::memory_order_relaxed) >= options_.max_queued) {
      queued_.fetch_sub(1, std::memory_order_relaxed);
      co_return Fail(
          ErrorCode::kUnavailable,
          "server busy: " + std::to_string(options_.max_queued) + " scripts are queued or running");
    }
    auto io = co_await asio::this_coro::executor;
    auto shared = std::make_shared<ScriptJob>(std::move(job));
    // Not BlockingPool::Run: the worker answers first, then prepares the next global.
    auto start = [this, js = *js, io, shared](auto done) {
      // Posted under the lock: Stop() either comes first (and the script is refused) or waits
      // for this one too.
      std::lock_guard lock(pool_mu_);
      if (stopped_) {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        done->Complete(Fail(ErrorCode::kUnavailable, "the sidecar is shutting down"));
        return;
      }
      if (!pool_) pool_ = std::make_unique<BlockingPool>(options_.workers, options_.max_queued);
      pool_->Detach([this, js, io, shared, done] {
        Finished finished = Execute(*js, *shared, io);
        queued_.fetch_sub(1, std::memory_order_relaxed);
        done->Complete(std::move(finished));
        Prewarm(*js);
      });
    };
    auto finished = co_await Suspend<Finished>(std::move(start));
    if (!finished) co_return Fail(finished.error());
    // COMMIT only after a clean finish, otherwise ROLLBACK: here on the I/O thread, which the
    // answer passes anyway. When the script's time is up the transaction's destructor rolls back
    // instead, with a deadline of its own.
    Result<ScriptOutcome> outcome = std::move(finished->outcome);
    if (auto transaction = std::move(finished->transaction)) {
      if (outcome) {
        if (auto done = co_await transaction->Commit(); !done) outcome = Fail(done.error());
      } else if (Clock::now() < finished->deadline) {
        (void)co_await transaction->Rollback();
      }
    }
    if (outcome) {
      outcome->queries_executed = finished->queries;
    } else {
      outcome.error().fields.emplace_back("queries_executed", std::to_string(finished->queries));
    }
    co_return outcome;
  }

 private:
  std::shared_ptr<CachedForm> Form(const std::string& source, Error* error) {
    {
      std::lock_guard lock(cache_mu_);
      if (auto it = cache_.find(source); it != cache_.end()) return it->second;
    }
    auto prepared = PrepareSource(source);
    if (!prepared) {
      *error = std::move(prepared.error());
      return nullptr;
    }
    auto form = std::make_shared<CachedForm>();
    form->source = std::move(*prepared);
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= kCacheEntries || cache_bytes_ + source.size() > kCacheBytes) {
      cache_.clear();
      cache_bytes_ = 0;
    }
    if (source.size() <= kCacheBytes / 16 && cache_.emplace(source, form).second)
      cache_bytes_ += source.size() + form->source.body.size();
    return form;
  }

  static WorkerVm& ThisThreadVm(const Jsc& js) {
    thread_local WorkerVm vm;
    if (!vm.group) {
      vm.group = js.JSContextGroupCreate();
      JSGlobalContextRef ctx = js.JSGlobalContextCreateInGroup(vm.group, nullptr);
      JsString body(js, "throw new Error()");
      JSValueRef exception = nullptr;
      JSObjectRef f =
          js.JSObjectMakeFunction(ctx, nullptr, 0, nullptr, body.get(), nullptr, 1, &exception);
      if (f) js.JSObjectCallAsFunction(ctx, f, nullptr, 0, nullptr, &exception);
      if (exception && js.JSValueIsObject(ctx, exception)) {
        JSObjectRef error = js.JSValueToObject(ctx, exception, nullptr);
        vm.body_line_offset =
            static_cast<int>(js.JSValueToNumber(ctx, Get(js, ctx, error, "line"), nullptr)) - 1;
      }
      js.JSGlobalContextRelease(ctx);
    }
    return vm;
  }

  // A global for one script: the forbidden globals gone, `sql` and `console` in (`input` is
  // added per request).
  static JSGlobalContextRef NewGlobal(const Jsc& js, WorkerVm& vm) {
    JSGlobalContextRef ctx = js.JSGlobalContextCreateInGroup(vm.group, nullptr);
    JSObjectRef global = js.JSContextGetGlobalObject(ctx);
    for (const char* name : kForbiddenGlobals) {
      JSStringRef n = js.JSStringCreateWithUTF8CString(name);
      js.JSObjectDeleteProperty(ctx, global, n, nullptr);
      js.JSStringRelease(n);
    }
    JSObjectRef sql = js.JSObjectMake(ctx, nullptr, nullptr);
    Set(js, ctx, sql, "query", Native(js, ctx, "query", SqlQuery));
    Set(js, ctx, sql, "execute", Native(js, ctx, "execute", SqlExecute));
    Set(js, ctx, sql, "queryOne", Native(js, ctx, "queryOne", SqlQueryOne));
    Set(js, ctx, global, "sql", sql);

    JSObjectRef console = js.JSObjectMake(ctx, nullptr, nullptr);
    JSObjectRef log = Native(js, ctx, "log", ConsoleLog);
    for (const char* name : {"log", "info", "warn", "error", "debug"})
      Set(js, ctx, console, name, log);
    Set(js, ctx, global, "console", console);

    JSValueRef bigint = Get(js, ctx, global, "BigInt");
    if (js.JSValueIsObject(ctx, bigint)) {
      JSValueRef proto = Get(js, ctx, js.JSValueToObject(ctx, bigint, nullptr), "prototype");
      if (js.JSValueIsObject(ctx, proto)) {
        Set(js, ctx, js.JSValueToObject(ctx, proto, nullptr), "toJSON",
            Native(js, ctx, "toJSON", BigIntToJson));
      }
    }
    return ctx;
  }

  static void Prewarm(const Jsc& js) {
    WorkerVm& vm = ThisThreadVm(js);
    if (!vm.spare) vm.spare = NewGlobal(js, vm);
  }

  // A thrown value as SCRIPT_ERROR: an Error's message (prefixed by its kind unless a plain
  // Error) and the line in the script as sent.
  static Error ThrownError(const Jsc& js, JSContextRef ctx, JSValueRef thrown, int line_offset) {
    Error error = ScriptError("");
    std::string line = "null";
    if (js.JSValueIsObject(ctx, thrown)) {
      JSObjectRef object = js.JSValueToObject(ctx, thrown, nullptr);
      JSValueRef message = Get(js, ctx, object, "message");
      JSValueRef name = Get(js, ctx, object, "name");
      JSValueRef where = Get(js, ctx, object, "line");
      // A getter of the thrown object may have been the script's last code: once the watchdog
      // stopped it, nothing else of the script may run (the caller reports the stop).
      if (Stopped()) return error;
      if (js.JSValueIsString(ctx, message)) {
        error.message = ValueText(js, ctx, message);
        std::string kind = js.JSValueIsString(ctx, name) ? ValueText(js, ctx, name) : "";
        if (!kind.empty() && kind != "Error") error.message = kind + ": " + error.message;
        if (kind == "RangeError" && ValueText(js, ctx, message) == "Out of memory")
          error.code = ErrorCode::kScriptMemory;
      } else if (JSStringRef text = js.JSValueCreateJSONString(ctx, thrown, 0, nullptr)) {
        JsString owned(js, text);
        error.message = Utf8(js, text);
      } else {
        error.message = ValueText(js, ctx, thrown);
      }
      if (js.JSValueGetType(ctx, where) == kJSTypeNumber) {
        double n = js.JSValueToNumber(ctx, where, nullptr) - line_offset;
        line = std::to_string(static_cast<long long>(std::max(1.0, n)));
      }
    } else {
      error.message = ValueText(js, ctx, thrown);
    }
    if (error.message.empty()) error.message = "the script threw an empty error";
    if (error.code == ErrorCode::kScriptError) error.fields.emplace_back("line", line);
    return error;
  }

  // Compiles and runs the script: the value it produced (before settling a promise), or null
  // with the thrown value in *exception and the line offset of its form in *line_offset. The
  // engine counts compiling a function body as code generation from a string, so the body is
  // compiled before eval is turned off for the script.
  JSValueRef Evaluate(const Jsc& js, JSGlobalContextRef ctx, CachedForm& form, JSValueRef input,
                      int body_offset, JSValueRef* exception, int* line_offset) {
    JsString body(js, form.source.body);
    int as = form.source.form == ScriptForm::kModule ? 2 : form.compiled_as.load();
    if (as == 0) {
      as = js.JSCheckScriptSyntax(ctx, body.get(), nullptr, 1, nullptr) ? 1 : 2;
      form.compiled_as.store(as);
    }
    JSObjectRef function = nullptr;
    *line_offset = as == 2 ? body_offset : 0;
    if (as == 2) {
      JsString parameter(js, "input");
      JSStringRef parameters[] = {parameter.get()};
      function =
          js.JSObjectMakeFunction(ctx, nullptr, 1, parameters, body.get(), nullptr, 1, exception);
      if (!function) return nullptr;
    }
    JsString no_eval(js, "code generation from strings is not available in a script");
    js.JSGlobalContextSetEvalEnabled(ctx, false, no_eval.get());
    if (!function) return js.JSEvaluateScript(ctx, body.get(), nullptr, nullptr, 1, exception);
    JSValueRef value = js.JSObjectCallAsFunction(ctx, function, nullptr, 1, &input, exception);
    if (!value || form.source.form != ScriptForm::kModule) return value;
    // The module's default export: a function is called with input, anything else is the result.
    if (js.JSValueIsObject(ctx, value)) {
      JSObjectRef exported = js.JSValueToObject(ctx, value, nullptr);
      if (js.JSObjectIsFunction(ctx, exported))
        return js.JSObjectCallAsFunction(ctx, exported, nullptr, 1, &input, exception);
    }
    return value;
  }

  Finished Execute(const Jsc& js, const ScriptJob& job, asio::any_io_executor io) {
    Error form_error;
    auto form = Form(job.source, &form_error);
    if (!form) return Finished{Fail(std::move(form_error)), nullptr, {}, 0};
    WorkerVm& vm = ThisThreadVm(js);
    ScriptRun run;
    run.js = &js;
    run.options = &options_;
    run.job = &job;
    run.backend = &backend_;
    run.io = std::move(io);
    run.vm = &vm;
    const auto script_deadline = Clock::now() + job.timeout;
    run.deadline = std::min(script_deadline, job.sql_limits.deadline);
    // What stops the script first, for its timeout message.
    const std::string limit =
        run.deadline < script_deadline
            ? "the request deadline (--timeout)"
            : "its time limit of " + std::to_string(job.timeout.count()) + " ms";
    current = &run;

    JSGlobalContextRef ctx = std::exchange(vm.spare, nullptr);
    if (!ctx) ctx = NewGlobal(js, vm);
    run.ctx = ctx;
    JsString input_text(js, job.input_json);
    JSValueRef input = js.JSValueMakeFromJSONString(ctx, input_text.get());
    if (!input) input = js.JSValueMakeNull(ctx);
    Set(js, ctx, js.JSContextGetGlobalObject(ctx), "input", input);

    js.JSContextGroupSetExecutionTimeLimit(vm.group, kSliceSeconds, ShouldTerminate, &run);
    JSValueRef exception = nullptr;
    int line_offset = 0;
    JSValueRef value =
        Evaluate(js, ctx, *form, input, vm.body_line_offset, &exception, &line_offset);
    // A promise (an async default export, or any thenable) runs to completion: the engine drains
    // its job queue when this call leaves the VM, so a promise that is still pending afterwards
    // waits for something that will never happen.
    if (value && !exception && js.JSValueIsObject(ctx, value) && run.stop == Stop::kNone) {
      JSObjectRef object = js.JSValueToObject(ctx, value, nullptr);
      JSValueRef then = js.JSObjectGetProperty(ctx, object, JsString(js, "then").get(), &exception);
      if (!exception && js.JSValueIsObject(ctx, then) &&
          js.JSObjectIsFunction(ctx, js.JSValueToObject(ctx, then, nullptr))) {
        JSValueRef handlers[] = {Native(js, ctx, "", Fulfilled), Native(js, ctx, "", Rejected)};
        js.JSObjectCallAsFunction(ctx, js.JSValueToObject(ctx, then, nullptr), object, 2, handlers,
                                  &exception);
        value = nullptr;
        if (!exception && run.settled) {
          if (run.rejected) {
            exception = run.settlement;
          } else {
            value = run.settlement;
          }
        } else if (!exception && run.stop == Stop::kNone) {
          exception = nullptr;
          run.sql_error = ScriptError(
              "the script's promise never settled (it awaits something that never happens)");
        }
      }
    }
    // Still under the time limit: turning the result or the thrown value into text may run the
    // script's own code (toJSON, getters, Proxy traps, toString).
    Result<ScriptOutcome> converted = ScriptOutcome{"null", 0};
    if (run.stop == Stop::kNone && !run.sql_error) {
      if (exception) {
        converted = Fail(ThrownError(js, ctx, exception, line_offset));
      } else if (value) {
        JSValueRef json_exception = nullptr;
        JSStringRef text = js.JSValueCreateJSONString(ctx, value, 0, &json_exception);
        if (json_exception && !Stopped()) {
          Error error = ThrownError(js, ctx, json_exception, 0);
          error.message = "the script's result is not JSON: " + error.message;
          error.fields.clear();
          converted = Fail(std::move(error));
        } else if (text) {
          JsString owned(js, text);
          converted = ScriptOutcome{Utf8(js, text), 0};
        }  // else undefined, a function or a symbol: null
      }
    }
    js.JSContextGroupClearExecutionTimeLimit(vm.group);

    Result<ScriptOutcome> outcome;
    if (run.stop == Stop::kTimeout) {
      outcome = Fail(ErrorCode::kScriptTimeout,
                     "the script ran longer than " + limit + " (transaction rolled back)");
    } else if (run.stop == Stop::kMemory) {
      outcome = Fail(ErrorCode::kScriptMemory, "the script's heap grew past its limit of " +
                                                   std::to_string(options_.heap_limit >> 20) +
                                                   " MiB (transaction rolled back)");
    } else if (run.sql_error) {
      outcome = Fail(*run.sql_error);
      if (outcome.error().code == ErrorCode::kSqlTimeout && Clock::now() >= run.deadline) {
        outcome.error() = Error{
            ErrorCode::kScriptTimeout,
            "the script ran longer than " + limit + " during an SQL call (transaction rolled back)",
            {}};
      }
    } else {
      outcome = std::move(converted);
    }
    if (run.settlement) js.JSValueUnprotect(ctx, run.settlement);
    js.JSGlobalContextRelease(ctx);
    current = nullptr;

    if (run.stop != Stop::kNone) {
      // A terminated script can leave the VM with a termination still pending (always when it
      // was stopped inside the job queue, after an await), and the next global created in it
      // aborts the process. A fresh VM costs 20–40 ms, once per stopped script, and also returns
      // the heap the script filled.
      js.JSContextGroupRelease(vm.group);
      vm.group = nullptr;
    } else if (run.heap_peak > options_.heap_limit / 2.0) {
      // The memory check counts from the heap's size at the start, so a script that left much
      // garbage would let the next one on this worker grow further: collect it now.
      JSGlobalContextRef scratch = js.JSGlobalContextCreateInGroup(vm.group, nullptr);
      js.JSSynchronousGarbageCollectForDebugging(scratch);
      js.JSGlobalContextRelease(scratch);
    }

    return Finished{std::move(outcome), std::move(*run.transaction), run.deadline, run.queries};
  }

  SqlBackend& backend_;
  ScriptOptions options_;
  std::atomic<size_t> queued_{0};
  std::mutex pool_mu_;  // guards pool_ (started by the first script) and stopped_
  std::unique_ptr<BlockingPool> pool_;
  bool stopped_ = false;
  std::mutex cache_mu_;
  std::unordered_map<std::string, std::shared_ptr<CachedForm>> cache_;
  size_t cache_bytes_ = 0;
};

}  // namespace

std::unique_ptr<ScriptRunner> MakeScriptRunner(SqlBackend& backend, ScriptOptions options) {
  return std::make_unique<JscScriptRunner>(backend, options);
}

}  // namespace mikcar::sql::script
