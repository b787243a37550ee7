// A small persistent thread pool for the forward step.
//
// run(job) executes job(thread_index, n_threads) on every thread (the caller is thread 0) and
// returns when all have finished. Workers spin up to 300 µs between jobs (a decode step issues a
// few hundred jobs back to back) and then sleep on a condition variable, so an idle model costs no
// CPU; the caller spins 30 µs for stragglers, then yields its core to them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace edgellama {

class ThreadPool {
public:
    using Job = std::function<void(int thread_index, int n_threads)>;

    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    void run(const Job& job);

private:
    void worker_loop(int thread_index);

    int n_threads_;
    std::vector<std::thread> workers_;
    const Job* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
};

// Splits [0, n) into n_parts nearly equal contiguous ranges; returns part `index`.
inline void split_range(int64_t n, int index, int n_parts, int64_t& begin, int64_t& end) {
    const int64_t base = n / n_parts, extra = n % n_parts;
    begin = index * base + (index < extra ? index : extra);
    end = begin + base + (index < extra ? 1 : 0);
}

}  // namespace edgellama
