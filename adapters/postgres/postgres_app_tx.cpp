// A job's completion inside the application's own transaction on
// PostgreSQL (`postgres_adapter::complete_in`).

#include "bg_jobs/adapters/postgres/detail/postgres_internal.hpp"

namespace bg_jobs {

namespace {

constexpr char lost_marker[] = "bg_jobs: job ";

// The job's row moves to jobs_succeeded only while $2 still holds it and no
// cancel was asked for. Otherwise the statement fails, with a message that
// says why, and the failure aborts the caller's transaction: its writes
// cannot commit without the completion. (A text that is not a boolean,
// cast to one, is the error.)
// clang-format off
const char pg_complete_in[] =
    "WITH m AS (DELETE FROM jobs WHERE id = $1 AND reserved_by = $2"
    "   AND cancel_reason IS NULL RETURNING *),"
    " s AS (INSERT INTO jobs_succeeded (id, name, payload, attempts,"
    "   created_at, available_at, succeeded_at, priority, errors, attrs)"
    "   SELECT id, name, payload, attempts, created_at, available_at,"
    "   clock_timestamp(), priority, errors, attrs FROM m RETURNING id)"
    " SELECT CASE WHEN (SELECT count(*) FROM s) = 1 THEN true"
    "   ELSE ('bg_jobs: job ' || $1::bigint || CASE WHEN EXISTS (SELECT 1"
    "     FROM jobs WHERE id = $1 AND reserved_by = $2)"
    "     THEN ' was asked to cancel'"
    "     ELSE ' is no longer reserved by ' || $2 END"
    "   || ': the transaction was aborted, with the handler''s writes')"
    "   ::boolean END";
// clang-format on

} // namespace

caf::expected<void> postgres_adapter::complete_in(pqxx::transaction_base& tx,
                                                  const job& j,
                                                  const std::string& schema) {
  if (auto err = check_identifier("schema", schema, 50))
    return err;
  if (!j.reserved_by || j.reserved_by->empty())
    return make_error(errc::invalid_argument,
                      "job " + std::to_string(j.id) +
                          " is not reserved: complete_in takes the job its "
                          "handler runs");
  auto sql =
      prefixed_sql(pg_complete_in, schema.empty() ? schema : schema + ".");
  try {
    tx.exec_params(sql, j.id, *j.reserved_by);
  } catch (const pqxx::data_exception& e) {
    std::string what = e.what();
    auto at = what.find(lost_marker);
    if (at == std::string::npos)
      return make_error(errc::database_error,
                        "completing a job in the caller's transaction: " +
                            what);
    auto end = what.find('"', at);
    return make_error(errc::reservation_lost,
                      what.substr(at + 9, end == std::string::npos
                                              ? std::string::npos
                                              : end - at - 9));
  } catch (const pqxx::broken_connection& e) {
    return make_error(errc::connection_lost,
                      std::string{"completing a job in the caller's "
                                  "transaction: "} +
                          e.what());
  } catch (const std::exception& e) {
    return make_error(errc::database_error,
                      std::string{"completing a job in the caller's "
                                  "transaction: "} +
                          e.what());
  }
  return caf::unit;
}

} // namespace bg_jobs
