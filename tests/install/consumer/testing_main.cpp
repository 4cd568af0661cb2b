// Built against an installed bg_jobs::testing: a worker drained on a store
// of its own.
#include <iostream>

#include <bg_jobs/testing/testing.hpp>

int main() {
  auto store = bg_jobs::testing::test_store::sqlite();
  if (!store)
    return 1;
  if (!store->db().enqueue_job(bg_jobs::job_request{"hello"}))
    return 1;
  int ran = 0;
  auto q = bg_jobs::queue_spec{"q"}.with_worker(
      bg_jobs::worker{"hello", [&](const bg_jobs::job&) { ++ran; }});
  auto r = bg_jobs::testing::drain_queue(store->db(), q);
  if (!r || r->succeeded != 1 || ran != 1)
    return 1;
  std::cout << "testing consumer ok: drained " << r->ran() << " job\n";
  return 0;
}
