#include "bg_jobs/core/workflow.hpp"

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs {

namespace {

template <class Enum, size_t N>
std::optional<Enum> parse_of(const char* const (&names)[N],
                             std::string_view text) {
  for (size_t i = 0; i < N; ++i)
    if (text == names[i])
      return static_cast<Enum>(i);
  return std::nullopt;
}

const char* const parent_failure_names[] = {"cancel", "ignore", "hold"};
const char* const workflow_state_names[] = {"running", "succeeded", "failed",
                                            "cancelled"};
const char* const task_state_names[] = {"blocked",   "held",   "ready",
                                        "succeeded", "failed", "cancelled"};

caf::error refuse(std::string what) {
  return make_error(errc::invalid_argument, std::move(what));
}

/// The indices of `w`'s tasks in an order with parents first (Kahn's
/// algorithm over the dependencies among them); `pending` ends with the
/// number of unordered parents of each task (non-zero: on or behind a
/// cycle).
std::vector<size_t>
topological(const workflow& w,
            const std::unordered_map<std::string_view, size_t>& index,
            std::vector<int>& pending) {
  auto& tasks = w.tasks();
  pending.assign(tasks.size(), 0);
  std::vector<std::vector<size_t>> children(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i)
    for (auto& d : tasks[i].after)
      if (auto it = index.find(d.parent); it != index.end()) {
        ++pending[i];
        children[it->second].push_back(i);
      }
  std::vector<size_t> order;
  order.reserve(tasks.size());
  std::deque<size_t> ready;
  for (size_t i = 0; i < tasks.size(); ++i)
    if (pending[i] == 0)
      ready.push_back(i);
  while (!ready.empty()) {
    auto i = ready.front();
    ready.pop_front();
    order.push_back(i);
    for (auto c : children[i])
      if (--pending[c] == 0)
        ready.push_back(c);
  }
  return order;
}

} // namespace

const char* to_string(parent_failure p) {
  return parent_failure_names[static_cast<int>(p)];
}

std::optional<parent_failure> parse_parent_failure(std::string_view text) {
  return parse_of<parent_failure>(parent_failure_names, text);
}

const char* to_string(workflow_state s) {
  return workflow_state_names[static_cast<int>(s)];
}

std::optional<workflow_state> parse_workflow_state(std::string_view text) {
  return parse_of<workflow_state>(workflow_state_names, text);
}

const char* to_string(task_state s) {
  return task_state_names[static_cast<int>(s)];
}

std::optional<task_state> parse_task_state(std::string_view text) {
  return parse_of<task_state>(task_state_names, text);
}

workflow& workflow::add(std::string task, job_request request,
                        std::vector<std::string> after,
                        parent_failure on_failure) {
  std::vector<task_dependency> deps;
  deps.reserve(after.size());
  for (auto& parent : after)
    deps.push_back({std::move(parent), on_failure});
  return add(std::move(task), std::move(request), std::move(deps));
}

workflow& workflow::add(std::string task, job_request request,
                        std::vector<task_dependency> after) {
  tasks_.push_back({std::move(task), std::move(request), std::move(after)});
  return *this;
}

const char* callback_task_name(size_t role) {
  static const char* const names[] = {"@on_success", "@on_finish",
                                      "@on_failure"};
  return names[role];
}

caf::error check_workflow(const workflow& w,
                          const std::vector<std::string>& existing) {
  if (auto problem = name_problem(w.name()); !problem.empty())
    return refuse("workflow name: " + problem);
  auto& tasks = w.tasks();
  if (tasks.empty() && !w.open() && existing.empty())
    return refuse("a workflow needs at least one task (or to be kept open)");
  for (size_t role = 0; role < 3; ++role)
    if (auto& c = w.callback(role); c && c->unique())
      return refuse(std::string{callback_task_name(role)} +
                    ": a callback cannot be a unique job");
  if (tasks.size() > max_workflow_tasks)
    return refuse("a workflow may insert at most " +
                  std::to_string(max_workflow_tasks) + " tasks, not " +
                  std::to_string(tasks.size()));
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto& t = tasks[i];
    if (auto problem = name_problem(t.name); !problem.empty())
      return refuse("task name: " + problem);
    if (t.name.front() == '@')
      return refuse("task name '" + printable(t.name) +
                    "': names starting with @ are the callbacks'");
    if (!index.emplace(t.name, i).second ||
        std::find(existing.begin(), existing.end(), t.name) != existing.end())
      return refuse("the task name '" + printable(t.name) +
                    "' is used twice");
    if (t.request.unique())
      return refuse("task '" + printable(t.name) +
                    "': a task cannot be a unique job");
  }
  for (auto& t : tasks) {
    std::set<std::string_view> seen;
    for (auto& d : t.after) {
      if (d.parent == t.name)
        return refuse("task '" + printable(t.name) + "' depends on itself");
      if (!seen.insert(d.parent).second)
        return refuse("task '" + printable(t.name) + "' names the parent '" +
                      printable(d.parent) + "' twice");
      if (!index.count(d.parent) &&
          std::find(existing.begin(), existing.end(), d.parent) ==
              existing.end())
        return refuse("task '" + printable(t.name) +
                      "' depends on an unknown task '" + printable(d.parent) +
                      "'");
    }
  }
  // Existing tasks are finished or already ordered; what cannot be ordered
  // among the new ones lies on or behind a cycle.
  std::vector<int> pending;
  if (topological(w, index, pending).size() == tasks.size())
    return caf::none;
  // Walk parents among the unordered tasks until one repeats: a cycle.
  size_t at = 0;
  while (pending[at] == 0)
    ++at;
  std::vector<size_t> path;
  std::vector<int> on_path(tasks.size(), -1);
  while (on_path[at] < 0) {
    on_path[at] = static_cast<int>(path.size());
    path.push_back(at);
    for (auto& d : tasks[at].after)
      if (auto it = index.find(d.parent);
          it != index.end() && pending[it->second] > 0) {
        at = it->second;
        break;
      }
  }
  std::string cycle;
  for (size_t k = static_cast<size_t>(on_path[at]); k < path.size(); ++k)
    cycle = printable(tasks[path[k]].name) + (cycle.empty() ? "" : " -> ") +
            cycle;
  return refuse("the tasks form a cycle: " + printable(tasks[at].name) +
                " -> " + cycle);
}

std::vector<size_t> workflow_order(const workflow& w) {
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < w.tasks().size(); ++i)
    index.emplace(w.tasks()[i].name, i);
  std::vector<int> pending;
  return topological(w, index, pending);
}

} // namespace bg_jobs
