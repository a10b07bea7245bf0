// Registers the SQL backends of this build (SQLite and PostgreSQL per CMake options).
#pragma once

#include "mikcar/registry.h"
#include "mikcar/sql/backend.h"

namespace mikcar::sql {

void RegisterBuiltinBackends(BackendRegistry<SqlBackend>& registry);

}  // namespace mikcar::sql
