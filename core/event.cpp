#include "bg_jobs/core/event.hpp"

#include <cstdio>

namespace bg_jobs {

const char* to_string(event_kind k) {
  switch (k) {
  case event_kind::job_absorbed:
    return "bg_jobs.job.absorbed";
  case event_kind::job_enqueued:
    return "bg_jobs.job.enqueue";
  case event_kind::job_reserved:
    return "bg_jobs.job.reserve";
  case event_kind::job_started:
    return "bg_jobs.job.start";
  case event_kind::job_succeeded:
    return "bg_jobs.job.stop";
  case event_kind::job_exception:
    return "bg_jobs.job.exception";
  case event_kind::job_failed:
    return "bg_jobs.job.discard";
  case event_kind::job_snoozed:
    return "bg_jobs.job.snooze";
  case event_kind::job_cancelled:
    return "bg_jobs.job.cancel";
  case event_kind::job_cancel_requested:
    return "bg_jobs.job.cancel_request";
  case event_kind::job_retried:
    return "bg_jobs.job.retried";
  case event_kind::job_deleted:
    return "bg_jobs.job.delete";
  case event_kind::job_released:
    return "bg_jobs.job.release";
  case event_kind::job_rescued:
    return "bg_jobs.job.rescue";
  case event_kind::no_worker_for_job:
    return "bg_jobs.job.no_worker";
  case event_kind::queue_polling_started:
    return "bg_jobs.queue.start";
  case event_kind::queue_polling_stopped:
    return "bg_jobs.queue.stop";
  case event_kind::queue_paused:
    return "bg_jobs.queue.pause";
  case event_kind::queue_resumed:
    return "bg_jobs.queue.resume";
  case event_kind::queue_scaled:
    return "bg_jobs.queue.scale";
  case event_kind::queue_limit_changed:
    return "bg_jobs.queue.limit";
  case event_kind::key_unblocked:
    return "bg_jobs.queue.unblock";
  case event_kind::rate_limit_changed:
    return "bg_jobs.rate.limit";
  case event_kind::schedule_paused:
    return "bg_jobs.schedule.pause";
  case event_kind::schedule_resumed:
    return "bg_jobs.schedule.resume";
  case event_kind::queue_error:
    return "bg_jobs.queue.error";
  case event_kind::db_error:
    return "bg_jobs.db.error";
  case event_kind::db_reconnected:
    return "bg_jobs.db.reconnected";
  case event_kind::migrate_up:
    return "bg_jobs.db.migrate_up";
  case event_kind::actor_down:
    return "bg_jobs.registry.down";
  case event_kind::supervisor_restart:
    return "bg_jobs.supervisor.restart";
  case event_kind::supervisor_gave_up:
    return "bg_jobs.supervisor.give_up";
  case event_kind::listener_error:
    return "bg_jobs.listener.error";
  case event_kind::shutdown_started:
    return "bg_jobs.shutdown.start";
  case event_kind::shutdown_complete:
    return "bg_jobs.shutdown.stop";
  case event_kind::maintenance_leader:
    return "bg_jobs.maintenance.leader";
  case event_kind::workflow_started:
    return "bg_jobs.workflow.start";
  case event_kind::workflow_cancelled:
    return "bg_jobs.workflow.cancel";
  case event_kind::workflow_retried:
    return "bg_jobs.workflow.retry";
  case event_kind::job_progress:
    return "bg_jobs.job.progress";
  case event_kind::workflow_finished:
    return "bg_jobs.workflow.stop";
  case event_kind::workflow_stuck:
    return "bg_jobs.workflow.stuck";
  case event_kind::schedule_changed:
    return "bg_jobs.schedule.change";
  case event_kind::schedule_removed:
    return "bg_jobs.schedule.remove";
  }
  return "bg_jobs.unknown";
}

std::optional<event_kind> event_kind_named(std::string_view name) {
  for (int k = 0; k <= static_cast<int>(event_kind::schedule_removed); ++k)
    if (name == to_string(static_cast<event_kind>(k)))
      return static_cast<event_kind>(k);
  return std::nullopt;
}

const char* to_string(log_level l) {
  switch (l) {
  case log_level::debug:
    return "debug";
  case log_level::info:
    return "info";
  case log_level::warning:
    return "warning";
  case log_level::error:
    return "error";
  }
  return "info";
}

const char* event::name() const {
  return to_string(kind);
}

log_level event::level() const {
  switch (kind) {
  case event_kind::job_reserved:
  case event_kind::job_started:
  case event_kind::job_snoozed:
  case event_kind::job_progress:
    return log_level::debug;
  case event_kind::job_exception:
  case event_kind::job_released:
  case event_kind::job_rescued:
  case event_kind::job_cancelled:
  case event_kind::actor_down:
  case event_kind::supervisor_restart:
  case event_kind::listener_error:
  case event_kind::workflow_stuck:
    return log_level::warning;
  case event_kind::job_failed:
  case event_kind::no_worker_for_job:
  case event_kind::queue_error:
  case event_kind::db_error:
  case event_kind::supervisor_gave_up:
    return log_level::error;
  default:
    return log_level::info;
  }
}

namespace {

/// `s` on one line: quotes, backslashes and control characters escaped.
std::string one_line(const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 0xf];
      } else {
        out += static_cast<char>(c);
      }
    }
  }
  return out;
}

} // namespace

std::string to_log_line(const event& e) {
  std::string line = to_iso8601(e.at);
  line += ' ';
  line += to_string(e.level());
  line += ' ';
  line += e.name();
  if (!e.queue.empty())
    line += " queue=" + one_line(e.queue);
  if (e.job) {
    line += " job_id=" + std::to_string(e.job->id);
    line += " job_name=" + one_line(e.job->name);
    line += " attempt=" + std::to_string(e.job->attempts);
    // Validated at enqueue (lowercase hex and '-'); printed as stored all
    // the same, escaped like any text.
    if (!e.job->trace.traceparent.empty())
      line += " traceparent=" + one_line(e.job->trace.traceparent);
    if (!e.job->tags.empty()) {
      std::string tags;
      for (auto& t : e.job->tags)
        tags += (tags.empty() ? "" : ",") + one_line(t);
      line += " tags=\"" + tags + '"';
    }
  }
  if (e.workflow_id != 0)
    line += " workflow_id=" + std::to_string(e.workflow_id);
  if (e.progress) {
    char fraction[32];
    std::snprintf(fraction, sizeof fraction, "%.3f", e.progress->fraction);
    line += std::string{" progress="} + fraction;
    if (!e.progress->text.empty())
      line += " progress_text=\"" + one_line(e.progress->text) + '"';
  }
  if (e.duration.count() > 0)
    line += " duration_us=" + std::to_string(e.duration.count());
  if (e.queue_time.count() > 0)
    line += " queue_time_ms=" + std::to_string(e.queue_time.count());
  if (!e.message.empty())
    line += " message=\"" + one_line(e.message) + '"';
  return line;
}

} // namespace bg_jobs
