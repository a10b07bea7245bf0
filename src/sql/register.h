// Registers the SQL backends of this build (SQLite and PostgreSQL per CMake options) and the
// script engine (MIKCAR_WITH_SQL_SCRIPT).
#pragma once

#include "mikcar/registry.h"
#include "mikcar/sql/backend.h"
#include "sql/script/script_runner.h"

namespace mikcar::sql {

void RegisterBuiltinBackends(BackendRegistry<SqlBackend>& registry);

// The /sql/script runner over `backend`, or null in a build without MIKCAR_WITH_SQL_SCRIPT.
std::unique_ptr<script::ScriptRunner> MakeBuiltinScriptRunner(SqlBackend& backend,
                                                              const script::ScriptOptions& options);

}  // namespace mikcar::sql
