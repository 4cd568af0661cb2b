// The SQLite adapter's nodes and leases: node names held by live
// processes, their heartbeats and announced queues, the leases of the
// store-wide upkeep, and the journal of operator actions.

#include "bg_jobs/adapters/sqlite/detail/sqlite_internal.hpp"

namespace bg_jobs {

using namespace detail::sqlite;

namespace {

const char sql_heartbeat[] =
    "INSERT INTO bg_jobs_nodes (node, heartbeat_at) VALUES (?1, ?2)"
    " ON CONFLICT (node) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";

const char sql_hold_lease[] =
    "INSERT INTO bg_jobs_leases (name, holder, expires_at) VALUES (?1, ?2, ?4)"
    " ON CONFLICT (name) DO UPDATE"
    " SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE bg_jobs_leases.holder = excluded.holder"
    "    OR bg_jobs_leases.expires_at < ?3"
    " RETURNING holder";

const char sql_release_lease[] =
    "DELETE FROM bg_jobs_leases WHERE name = ?1 AND holder = ?2";

const char sql_record_action[] =
    "INSERT INTO bg_jobs_actions (at, kind, queue, job_id, job_name, message)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const char sql_take_actions[] =
    "DELETE FROM bg_jobs_actions WHERE id IN"
    " (SELECT id FROM bg_jobs_actions ORDER BY id LIMIT ?1)"
    " RETURNING id, at, kind, queue, job_id, job_name, message";

const char sql_node_holder[] =
    "SELECT instance, host, pid, started_at, heartbeat_at FROM bg_jobs_nodes"
    " WHERE node = ?1";

const char sql_node_claim[] =
    "INSERT INTO bg_jobs_nodes (node, heartbeat_at, instance, host, pid,"
    " started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT (node) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
    " instance = excluded.instance, host = excluded.host,"
    " pid = excluded.pid, started_at = excluded.started_at";

const char sql_node_release[] =
    "DELETE FROM bg_jobs_nodes WHERE node = ?1 AND instance = ?2";

} // namespace

caf::expected<bool> sqlite_adapter::hold_lease(const std::string& name,
                                               const std::string& holder,
                                               std::chrono::milliseconds ttl) {
  auto s = prepare(sql_hold_lease);
  if (!s)
    return std::move(s.error());
  auto now = to_unix_ms(options_.clock->now());
  statement q{*s};
  q.bind(1, name).bind(2, holder).bind(3, now).bind(4, now + ttl.count());
  int rc = q.step();
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE)
    return false;
  return failure(rc, "holding a lease");
}

caf::expected<void> sqlite_adapter::release_lease(const std::string& name,
                                                  const std::string& holder) {
  auto s = prepare(sql_release_lease);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, name).bind(2, holder);
  if (int rc = q.step(); rc != SQLITE_DONE)
    return failure(rc, "releasing a lease");
  return caf::unit;
}

caf::expected<void>
sqlite_adapter::record_actions(const std::vector<event>& events) {
  auto now = to_unix_ms(options_.clock->now());
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  for (auto& e : events) {
    // Bound without a copy: alive until the statement ran.
    std::string kind = e.name();
    std::string job_name = e.job ? e.job->name : std::string{};
    auto r = execute(
        sql_record_action,
        [&](statement& q) {
          q.bind(1, now)
              .bind(2, kind)
              .bind(3, e.queue)
              .bind(4, e.job ? e.job->id : int64_t{0})
              .bind(5, job_name)
              .bind(6, e.message);
        },
        "recording an action");
    if (!r)
      return std::move(r.error());
  }
  return tx.commit();
}

caf::expected<std::vector<recorded_action>>
sqlite_adapter::take_actions(int limit) {
  auto s = prepare(sql_take_actions);
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, int64_t{limit});
  std::vector<recorded_action> result;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    recorded_action a;
    a.id = sqlite3_column_int64(q.get(), 0);
    a.at = column_time(q.get(), 1);
    a.kind = column_text(q.get(), 2);
    a.queue = column_text(q.get(), 3);
    a.job_id = sqlite3_column_int64(q.get(), 4);
    a.job_name = column_text(q.get(), 5);
    a.message = column_text(q.get(), 6);
    result.push_back(std::move(a));
  }
  if (rc != SQLITE_DONE)
    return failure(rc, "taking recorded actions");
  std::sort(result.begin(), result.end(),
            [](auto& a, auto& b) { return a.id < b.id; });
  return result;
}

caf::expected<void> sqlite_adapter::heartbeat(const std::string& node) {
  auto r = execute(
      sql_heartbeat,
      [&](statement& q) {
        q.bind(1, node).bind(2, to_unix_ms(options_.clock->now()));
      },
      "recording a heartbeat");
  if (!r)
    return std::move(r.error());
  return caf::unit;
}

caf::expected<std::optional<node_holder>> sqlite_adapter::claim_node(
    const node_identity& me, std::chrono::milliseconds lease,
    const std::function<bool(const node_holder&)>& alive) {
  auto now = options_.clock->now();
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return std::move(r.error());
  {
    auto s = prepare(sql_node_holder);
    if (!s)
      return std::move(s.error());
    statement q{*s};
    q.bind(1, me.node);
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      node_holder h;
      h.who.node = me.node;
      h.who.instance = column_text(q.get(), 0);
      h.who.host = column_text(q.get(), 1);
      h.who.pid = sqlite3_column_int64(q.get(), 2);
      h.who.started_at = column_time(q.get(), 3);
      h.heartbeat_at = column_time(q.get(), 4);
      // A row with no instance was left by a heartbeat that landed after
      // its node gave the name up: it holds nothing.
      if (!h.who.instance.empty() && h.who.instance != me.instance &&
          h.heartbeat_at >= now - lease && alive(h))
        return std::optional<node_holder>{std::move(h)};
    } else if (rc != SQLITE_DONE) {
      return failure(rc, "reading the holder of a node name");
    }
  }
  auto r = execute(
      sql_node_claim,
      [&](statement& q) {
        q.bind(1, me.node).bind(2, to_unix_ms(now)).bind(3, me.instance);
        q.bind(4, me.host).bind(5, me.pid).bind(6, to_unix_ms(me.started_at));
      },
      "claiming a node name");
  if (!r)
    return std::move(r.error());
  if (auto c = tx.commit(); !c)
    return std::move(c.error());
  return std::optional<node_holder>{};
}

caf::expected<void> sqlite_adapter::release_node(const std::string& node,
                                                 const std::string& instance) {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  auto r = execute(
      sql_node_release,
      [&](statement& q) { q.bind(1, node).bind(2, instance); },
      "giving up a node name");
  if (!r)
    return std::move(r.error());
  if (*r > 0) {
    // Its queues stay known, with no node ('').
    for (auto sql : {"INSERT OR IGNORE INTO bg_jobs_queues (queue, job_name,"
                     " node, concurrency, announced_at)"
                     " SELECT queue, job_name, '', 0, announced_at"
                     " FROM bg_jobs_queues WHERE node = ?1",
                     "DELETE FROM bg_jobs_queues WHERE node = ?1"}) {
      auto gone = execute(
          sql, [&](statement& q) { q.bind(1, node); }, "giving up a node name");
      if (!gone)
        return std::move(gone.error());
    }
  }
  return tx.commit();
}

caf::expected<void>
sqlite_adapter::announce_queues(const std::string& node,
                                const std::vector<queue_announcement>& queues) {
  transaction tx{*this};
  if (auto r = tx.begin(); !r)
    return r;
  auto now = to_unix_ms(options_.clock->now());
  auto gone = execute(
      "DELETE FROM bg_jobs_queues WHERE node = ?1",
      [&](statement& q) { q.bind(1, node); }, "announcing queues");
  if (!gone)
    return std::move(gone.error());
  for (auto& a : queues)
    for (auto& name : a.job_names) {
      auto r = execute(
          "INSERT OR REPLACE INTO bg_jobs_queues (queue, job_name, node,"
          " concurrency, announced_at) VALUES (?1, ?2, ?3, ?4, ?5)",
          [&](statement& q) {
            q.bind(1, a.queue).bind(2, name).bind(3, node);
            q.bind(4, int64_t{a.concurrency}).bind(5, now);
          },
          "announcing queues");
      if (!r)
        return std::move(r.error());
    }
  return tx.commit();
}

caf::expected<std::vector<known_queue>>
sqlite_adapter::known_queues(std::chrono::milliseconds silent_after) {
  // A node silent since the cutoff reads as '' (none).
  auto s = prepare("SELECT q.queue, q.job_name, CASE WHEN n.heartbeat_at"
                   "   IS NULL OR n.heartbeat_at >= ?1 THEN q.node ELSE ''"
                   "   END, q.concurrency"
                   " FROM bg_jobs_queues q LEFT JOIN bg_jobs_nodes n"
                   "   ON n.node = q.node ORDER BY 1, 2, 3");
  if (!s)
    return std::move(s.error());
  statement q{*s};
  q.bind(1, to_unix_ms(options_.clock->now()) - silent_after.count());
  std::vector<std::tuple<std::string, std::string, std::string, int>> rows;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    rows.emplace_back(column_text(q.get(), 0), column_text(q.get(), 1),
                      column_text(q.get(), 2), sqlite3_column_int(q.get(), 3));
  if (rc != SQLITE_DONE)
    return failure(rc, "reading queues");
  return merge_announcements(rows);
}

} // namespace bg_jobs
