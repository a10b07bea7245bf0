// libpq, loaded at run time: mikcar links no PostgreSQL library, so a binary that never opens a
// postgres:// URL does not map libpq and the ~20 libraries it pulls in (Kerberos, LDAP, GnuTLS…),
// which cost 3.5 MiB of RSS and 5 ms of start-up. The ABI of libpq.so.5 is stable; the
// declarations come from libpq-fe.h.
#pragma once

#include <libpq-fe.h>

#include "mikcar/error.h"

namespace mikcar::sql {

struct LibPq {
  // One function per line; clang-format reflows this list differently on every run.
  // clang-format off
#define MIKCAR_PQ_FUNCTIONS(X) \
  X(PQconnectStartParams) \
  X(PQconnectPoll) \
  X(PQconndefaults) \
  X(PQconninfoFree) \
  X(PQfinish) \
  X(PQstatus) \
  X(PQsocket) \
  X(PQsetnonblocking) \
  X(PQtransactionStatus) \
  X(PQerrorMessage) \
  X(PQsendQueryParams) \
  X(PQsendPrepare) \
  X(PQsendQueryPrepared) \
  X(PQflush) \
  X(PQisBusy) \
  X(PQconsumeInput) \
  X(PQgetResult) \
  X(PQclear) \
  X(PQresultStatus) \
  X(PQresStatus) \
  X(PQresultErrorField) \
  X(PQresultErrorMessage) \
  X(PQnfields) \
  X(PQntuples) \
  X(PQfname) \
  X(PQftype) \
  X(PQgetisnull) \
  X(PQgetvalue) \
  X(PQgetlength) \
  X(PQcmdTuples) \
  X(PQcmdStatus)
  // clang-format on
#define MIKCAR_PQ_MEMBER(name) decltype(&::name) name = nullptr;
  MIKCAR_PQ_FUNCTIONS(MIKCAR_PQ_MEMBER)
#undef MIKCAR_PQ_MEMBER
};

// The loaded library (once per process; thread-safe). UNAVAILABLE naming the package when
// libpq.so.5 or one of its functions is missing.
Result<const LibPq*> LoadLibPq();

}  // namespace mikcar::sql
