// Built against an installed bg_jobs: enqueue, reserve, complete, read back.
#include <iostream>

#include <bg_jobs/adapters/sqlite/sqlite_adapter.hpp>
#include <bg_jobs/core/errc.hpp>

int main(int argc, char** argv) {
  if (argc != 2)
    return 2;
  auto db = bg_jobs::sqlite_adapter::open({argv[1]});
  if (!db || !(*db)->migrate_up()) {
    std::cerr << "cannot open " << argv[1] << '\n';
    return 1;
  }
  auto j = (*db)->enqueue_job(bg_jobs::job_request{"hello", {{"n", 1}}});
  auto r = (*db)->reserve_jobs({{"hello"}, 1, "consumer"});
  if (!j || !r || r->size() != 1 || !(*db)->move_job_to_succeeded(r->front()))
    return 1;
  auto done = (*db)->get_job(j->id);
  if (!done || done->state != bg_jobs::job_state::succeeded ||
      done->payload["n"] != 1)
    return 1;
  std::cout << "consumer ok: job " << done->id << " succeeded\n";
  return 0;
}
