#include "bg_jobs/adapters/detail/store_spec.hpp"

#include "bg_jobs/adapters/postgres/postgres_adapter.hpp"
#include "bg_jobs/adapters/sqlite/sqlite_adapter.hpp"

namespace bg_jobs {

bool is_postgres_spec(const std::string& spec) {
  return spec.rfind("postgres://", 0) == 0 ||
         spec.rfind("postgresql://", 0) == 0 ||
         spec.find("host=") != std::string::npos ||
         spec.find("dbname=") != std::string::npos;
}

adapter_factory factory_for(const std::string& spec, const std::string& prefix,
                            const std::string& application_name,
                            bool succeeded_history) {
  if (is_postgres_spec(spec)) {
    postgres_options o{spec};
    o.schema = prefix;
    o.application_name = application_name;
    o.succeeded_history = succeeded_history;
    return postgres_adapter::factory(o);
  }
  sqlite_options o{spec.rfind("sqlite:", 0) == 0 ? spec.substr(7) : spec};
  o.table_prefix = prefix;
  o.succeeded_history = succeeded_history;
  return sqlite_adapter::factory(o);
}

} // namespace bg_jobs
