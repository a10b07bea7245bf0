// postgres:// and postgresql:// — libpq driven asynchronously on the I/O threads (non-blocking
// connections, no thread per query), with a bounded connection pool. See README.md here.
#pragma once

#include <memory>

#include "mikcar/sql/backend.h"
#include "mikcar/uri.h"

namespace mikcar::sql {

Result<std::unique_ptr<SqlBackend>> OpenPostgresSqlBackend(const Uri& uri);

}  // namespace mikcar::sql
