#include "grid_cap.h"

#include <atomic>

namespace skipgan {
namespace {

std::atomic<int> g_grid_cap{0};

}  // namespace

int grid_cap() { return g_grid_cap.load(std::memory_order_relaxed); }

int set_grid_cap(int cap) { return g_grid_cap.exchange(cap < 0 ? 0 : cap, std::memory_order_relaxed); }

}  // namespace skipgan
