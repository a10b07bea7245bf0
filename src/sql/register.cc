#include "sql/register.h"

#ifdef MIKCAR_WITH_SQL_SQLITE
#include "sql/sqlite/sqlite_sql_backend.h"
#endif
#ifdef MIKCAR_WITH_SQL_POSTGRES
#include "sql/postgres/postgres_sql_backend.h"
#endif

namespace mikcar::sql {

std::unique_ptr<script::ScriptRunner> MakeBuiltinScriptRunner(
    [[maybe_unused]] SqlBackend& backend, [[maybe_unused]] const script::ScriptOptions& options) {
#ifdef MIKCAR_WITH_SQL_SCRIPT
  return script::MakeScriptRunner(backend, options);
#else
  return nullptr;
#endif
}

void RegisterBuiltinBackends(BackendRegistry<SqlBackend>& registry) {
  BackendRegistry<SqlBackend>::Factory sqlite;
#ifdef MIKCAR_WITH_SQL_SQLITE
  sqlite = [](const Uri& uri) { return OpenSqliteSqlBackend(uri); };
#endif
  (void)registry.Register({"sqlite",
                           {"sqlite"},
                           "sqlite:///path/db.sqlite3 or sqlite::memory: embedded, WAL",
                           sqlite,
                           "MIKCAR_WITH_SQL_SQLITE"});
  BackendRegistry<SqlBackend>::Factory postgres;
#ifdef MIKCAR_WITH_SQL_POSTGRES
  postgres = [](const Uri& uri) { return OpenPostgresSqlBackend(uri); };
#endif
  (void)registry.Register({"postgres",
                           {"postgres", "postgresql"},
                           "postgres://user:pw@host:5432/db?pool_max=16 asynchronous libpq pool",
                           postgres,
                           "MIKCAR_WITH_SQL_POSTGRES"});
}

}  // namespace mikcar::sql
