#include "csrc/core/thread_pool.h"

#include <chrono>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EDGELLAMA_CPU_RELAX() _mm_pause()
#else
#define EDGELLAMA_CPU_RELAX() std::this_thread::yield()
#endif

namespace edgellama {

namespace {

using Clock = std::chrono::steady_clock;

// Spin budgets by time, not by iteration count (a pause instruction takes from ~10 to ~140 cycles
// depending on the CPU). Workers wait through the short serial stretches between the jobs of one
// forward step (norms, RoPE: tens of microseconds) without sleeping, then sleep so an idle model
// costs no CPU. The caller waits for stragglers only briefly before yielding: on a busy machine
// the straggler is usually a worker waiting for a core, and spinning would keep it off one.
constexpr auto kWorkerSpin = std::chrono::microseconds(300);
constexpr auto kCallerSpin = std::chrono::microseconds(30);
constexpr int kClockEvery = 64;  // read the clock once per this many pauses

// Spins while `waiting()` holds, up to `budget`; returns whether it still holds.
template <class Pred>
bool spin_while(Pred waiting, Clock::duration budget) {
    const Clock::time_point deadline = Clock::now() + budget;
    for (int i = 1; waiting(); ++i) {
        EDGELLAMA_CPU_RELAX();
        if (i % kClockEvery == 0 && Clock::now() >= deadline) return waiting();
    }
    return false;
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
    if (n_threads < 1 || n_threads > 1024) {
        throw std::invalid_argument("n_threads must be in [1, 1024], got " + std::to_string(n_threads));
    }
    workers_.reserve(n_threads - 1);
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
}

void ThreadPool::run(const Job& job) {
    if (n_threads_ == 1) {
        job(0, 1);
        return;
    }
    job_ = &job;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    job(0, n_threads_);
    // Spin first (workers finish within microseconds of each other), then yield the core: on an
    // oversubscribed machine a descheduled worker needs it more than this spinning caller does.
    auto pending = [&] { return pending_.load(std::memory_order_acquire) != 0; };
    if (spin_while(pending, kCallerSpin)) {
        while (pending()) std::this_thread::yield();
    }
    job_ = nullptr;
}

void ThreadPool::worker_loop(int thread_index) {
    uint64_t seen = 0;
    for (;;) {
        auto idle = [&] { return generation_.load(std::memory_order_acquire) == seen; };
        if (spin_while(idle, kWorkerSpin)) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stopping_.load()) return;
        (*job_)(thread_index, n_threads_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace edgellama
