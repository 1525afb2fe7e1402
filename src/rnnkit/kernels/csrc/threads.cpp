// How many threads the step kernels may use (common.h: step_threads): the loader
// (rnnkit/kernels/cpu.py) sets 1 through rnnkit_set_thread_limit unless the OpenMP runtime this
// library linked is the one torch runs on (two thread pools would fight over the cores).
#include <atomic>
#include <cstdint>

namespace {
std::atomic<int64_t> limit{INT64_MAX};
}  // namespace

int64_t rnnkit_thread_limit() { return limit.load(std::memory_order_relaxed); }

extern "C" {
void rnnkit_set_thread_limit(int64_t n) { limit.store(n < 1 ? 1 : n, std::memory_order_relaxed); }
}
