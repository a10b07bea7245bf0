// The SQL service (/sql): SPEC §5.2 routes over one `SqlBackend`.
//
//   auto sql = mikcar::SqlService::FromUrl("postgres://app:pw@db/app?pool_max=16");
//   builder.add(std::move(*sql));
//
// URLs: postgres:// and postgresql:// (libpq syntax; pool_max, pool_min, statement_timeout),
// sqlite://PATH and sqlite::memory:.
#pragma once

#include <memory>
#include <string_view>

#include "mikcar/error.h"
#include "mikcar/registry.h"
#include "mikcar/sidecar.h"
#include "mikcar/sql/backend.h"

namespace mikcar {

class SqlService {
 public:
  // The backend registry for DATABASE_URL schemes, with the built-in backends registered.
  static BackendRegistry<sql::SqlBackend>& Registry();
  // The /sql sidecar on the backend named by `url`.
  static Result<std::unique_ptr<Sidecar>> FromUrl(std::string_view url);
  // The /sql sidecar on an existing backend.
  static std::unique_ptr<Sidecar> FromBackend(std::unique_ptr<sql::SqlBackend> backend);
};

}  // namespace mikcar
