// JavaScriptCore's C API, loaded at run time: mikcar links no JavaScript engine, so a binary that
// never runs a /sql/script does not map libjavascriptcoregtk-4.1 and the libraries it pulls in
// (glib, gio, ICU, libsystemd …). Only the header types are needed to build. Include this file
// only from src/sql/script/.
#pragma once

#include <JavaScriptCore/JavaScript.h>

#include "mikcar/error.h"

// Private but exported API (JSContextRefPrivate.h, JSBasePrivate.h, JSObjectRefPrivate.h are not
// shipped); WebKit itself uses these and they have been stable for a decade.
extern "C" {
typedef bool (*JSShouldTerminateCallback)(JSContextRef ctx, void* context);
JS_EXPORT void JSContextGroupSetExecutionTimeLimit(JSContextGroupRef group, double limit,
                                                   JSShouldTerminateCallback callback,
                                                   void* context);
JS_EXPORT void JSContextGroupClearExecutionTimeLimit(JSContextGroupRef group);
// {heapSize, heapCapacity, extraMemorySize, objectCount, …} of the context's VM.
JS_EXPORT JSObjectRef JSGetMemoryUsageStatistics(JSContextRef ctx);
// Turns off eval() and the Function constructors on strings: they throw EvalError(message).
JS_EXPORT void JSGlobalContextSetEvalEnabled(JSGlobalContextRef ctx, bool enabled,
                                             JSStringRef message);
JS_EXPORT void JSSynchronousGarbageCollectForDebugging(JSContextRef ctx);
// From the GLib API of the same library (gboolean is int).
int jsc_options_set_boolean(const char* option, int value);
}

namespace mikcar::sql::script {

struct Jsc {
#define MIKCAR_JSC_FUNCTIONS(X)              \
  X(JSContextGroupCreate)                    \
  X(JSContextGroupRelease)                   \
  X(JSGlobalContextCreateInGroup)            \
  X(JSGlobalContextRelease)                  \
  X(JSContextGetGlobalObject)                \
  X(JSStringCreateWithUTF8CString)           \
  X(JSStringCreateWithCharacters)            \
  X(JSStringRelease)                         \
  X(JSStringGetLength)                       \
  X(JSStringGetCharactersPtr)                \
  X(JSStringGetMaximumUTF8CStringSize)       \
  X(JSStringGetUTF8CString)                  \
  X(JSEvaluateScript)                        \
  X(JSCheckScriptSyntax)                     \
  X(JSObjectMake)                            \
  X(JSObjectMakeFunction)                    \
  X(JSObjectMakeFunctionWithCallback)        \
  X(JSObjectMakeError)                       \
  X(JSObjectCallAsFunction)                  \
  X(JSObjectIsFunction)                      \
  X(JSObjectGetProperty)                     \
  X(JSObjectSetProperty)                     \
  X(JSObjectDeleteProperty)                  \
  X(JSValueGetType)                          \
  X(JSValueIsObject)                         \
  X(JSValueIsString)                         \
  X(JSValueIsUndefined)                      \
  X(JSValueIsNull)                           \
  X(JSValueIsArray)                          \
  X(JSValueToObject)                         \
  X(JSValueToNumber)                         \
  X(JSValueToStringCopy)                     \
  X(JSValueMakeUndefined)                    \
  X(JSValueMakeNull)                         \
  X(JSValueMakeNumber)                       \
  X(JSValueMakeString)                       \
  X(JSValueMakeFromJSONString)               \
  X(JSValueCreateJSONString)                 \
  X(JSValueProtect)                          \
  X(JSValueUnprotect)                        \
  X(JSContextGroupSetExecutionTimeLimit)     \
  X(JSContextGroupClearExecutionTimeLimit)   \
  X(JSGetMemoryUsageStatistics)              \
  X(JSGlobalContextSetEvalEnabled)           \
  X(JSSynchronousGarbageCollectForDebugging) \
  X(jsc_options_set_boolean)
#define MIKCAR_JSC_MEMBER(name) decltype(&::name) name = nullptr;
  MIKCAR_JSC_FUNCTIONS(MIKCAR_JSC_MEMBER)
#undef MIKCAR_JSC_MEMBER
};

// The loaded library, with WebAssembly turned off before any VM exists (once per process;
// thread-safe). UNAVAILABLE naming the package when the library or a function is missing.
Result<const Jsc*> LoadJsc();

}  // namespace mikcar::sql::script
