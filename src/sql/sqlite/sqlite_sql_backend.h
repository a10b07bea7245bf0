// sqlite://PATH and sqlite::memory: — SQLite through a bounded pool of worker threads, WAL mode,
// one writer at a time and readers in parallel. See README.md in this directory.
#pragma once

#include <memory>

#include "mikcar/sql/backend.h"
#include "mikcar/uri.h"

namespace mikcar::sql {

Result<std::unique_ptr<SqlBackend>> OpenSqliteSqlBackend(const Uri& uri);

}  // namespace mikcar::sql
