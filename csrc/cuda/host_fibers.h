// The host backend's threads of a launch (a warp's 32 lanes, a block's threads), run as fibers on
// the calling thread: each lane has its own stack and runs until it waits at a barrier, then hands
// the core to the next one. A launch used to start one OS thread a lane, whose barriers spun on
// sched_yield among hundreds of threads on a few cores; the test suite's host-run engines spent
// most of their time there. Lanes communicate only through barriers, so the order in which they
// run between two barriers changes no result.
#pragma once

#include <functional>

namespace edgellama::cuda {

// Runs body(i) for i in [0, n) as fibers of the calling thread and returns once all have returned.
// An exception thrown by a fiber is rethrown here (the first one; the others' are dropped) after
// every fiber has finished or been abandoned at a barrier it can no longer pass.
void run_fibers(int n, const std::function<void(int)>& body);

// Inside run_fibers: lets the other fibers run, and returns when this one is resumed. Outside it
// throws std::logic_error (a barrier there has no other party to wait for).
void fiber_yield();

}  // namespace edgellama::cuda
