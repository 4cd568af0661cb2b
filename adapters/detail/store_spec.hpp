#pragma once

#include <string>

#include "bg_jobs/adapters/db_adapter.hpp"

namespace bg_jobs {

/// Whether `spec` names a PostgreSQL database (a `postgres://` or
/// `postgresql://` URL, or a conninfo with `host=` or `dbname=`) rather
/// than a SQLite file.
bool is_postgres_spec(const std::string& spec);

/// A factory for the store `spec` names, as the command line takes it: a
/// PostgreSQL URL or conninfo, or a SQLite path (`sqlite:PATH` or a plain
/// path). `prefix` is the SQLite table prefix or the PostgreSQL schema;
/// `succeeded_history` the adapters' option of that name.
adapter_factory factory_for(const std::string& spec,
                            const std::string& prefix = {},
                            const std::string& application_name = "bg_jobs",
                            bool succeeded_history = true);

} // namespace bg_jobs
