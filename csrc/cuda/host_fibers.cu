// run_fibers (host_fibers.h): fibers run round-robin on the calling thread. On x86-64 a switch is
// six register pushes and a stack change (edgellama_fiber_switch below); ucontext's swapcontext, used on other
// hosts, also makes a sigprocmask system call each time, and the host-run engine switches millions
// of times a step (a barrier a shuffle, 32 lanes each).
#include "csrc/cuda/host_fibers.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>
#include <vector>

namespace edgellama::cuda {

namespace {

// The kernels' host code keeps small arrays on its stack (a warp's values, a tile's sums); 256 KiB
// is many times their need. Pages are committed only where touched.
constexpr size_t kStackBytes = 256 * 1024;

// A fiber's stack with a guard page below it, so an overflow faults instead of writing into the
// next stack.
class FiberStack {
public:
    FiberStack() {
        const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        bytes_ = kStackBytes + page;
        void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        if (mprotect(p, page, PROT_NONE) != 0) {
            munmap(p, bytes_);
            throw std::bad_alloc();
        }
        base_ = static_cast<char*>(p);
        usable_ = base_ + page;
    }
    ~FiberStack() { munmap(base_, bytes_); }
    FiberStack(const FiberStack&) = delete;
    FiberStack& operator=(const FiberStack&) = delete;

    char* usable() const { return usable_; }

private:
    char* base_ = nullptr;
    char* usable_ = nullptr;
    size_t bytes_ = 0;
};

// Stacks are kept for the thread's next launches: a forward step makes thousands of them.
std::vector<FiberStack*>& stack_pool() {
    thread_local struct Pool {
        std::vector<FiberStack*> stacks;
        ~Pool() {
            for (FiberStack* s : stacks) delete s;
        }
    } pool;
    return pool.stacks;
}

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores its pointer in *save, and
// continues on the stack `next` (one it saved, or one make_context prepared). The
// control words (MXCSR, x87) are not switched: no fiber changes them, and all share one thread.
extern "C" void edgellama_fiber_switch(void** save, void* next);
asm(R"(
    .text
    .p2align 4
    .globl edgellama_fiber_switch
    .hidden edgellama_fiber_switch
    .type edgellama_fiber_switch, @function
edgellama_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size edgellama_fiber_switch, .-edgellama_fiber_switch
)");

struct Context {
    void* sp = nullptr;
};

// A stack whose first switch "returns" into entry with the stack aligned as after a call: the
// return slot 16-aligned, under it six zero registers for the pops.
void make_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
    auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
    auto* slot = reinterpret_cast<void**>(top - 16);
    *slot = reinterpret_cast<void*>(entry);
    for (int i = 1; i <= 6; ++i) slot[-i] = nullptr;
    c.sp = slot - 6;
}

void switch_context(Context& from, Context& to) { edgellama_fiber_switch(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc{};
};

void make_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
    if (getcontext(&c.uc) != 0) throw std::runtime_error("getcontext failed");
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;  // fiber_entry never returns
    makecontext(&c.uc, entry, 0);
}

void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

struct Fiber {
    Context context;
    bool done = false;
};

struct Scheduler {
    Context main;
    std::vector<Fiber> fibers;
    const std::function<void(int)>* body = nullptr;
    int current = -1;
    std::exception_ptr error;
};

thread_local Scheduler* t_scheduler = nullptr;

void fiber_entry() {
    Scheduler* s = t_scheduler;
    const int index = s->current;
    try {
        (*s->body)(index);
    } catch (...) {
        if (!s->error) s->error = std::current_exception();
    }
    s->fibers[index].done = true;
    switch_context(s->fibers[index].context, s->main);  // never resumed
    std::abort();
}

}  // namespace

void run_fibers(int n, const std::function<void(int)>& body) {
    if (t_scheduler != nullptr) throw std::logic_error("run_fibers: launches do not nest");
    std::vector<FiberStack*>& pool = stack_pool();
    while (static_cast<int>(pool.size()) < n) pool.push_back(new FiberStack());

    Scheduler s;
    s.fibers.resize(n);
    s.body = &body;
    for (int i = 0; i < n; ++i) make_context(s.fibers[i].context, pool[i]->usable(), kStackBytes, fiber_entry);
    t_scheduler = &s;
    int live = n;
    // Round-robin until all have returned. A fiber that threw leaves the others waiting at a
    // barrier it will never reach: they are abandoned (their stacks are reused, never resumed).
    while (live > 0 && !s.error) {
        for (int i = 0; i < n; ++i) {
            if (s.fibers[i].done) continue;
            s.current = i;
            switch_context(s.main, s.fibers[i].context);
            if (s.fibers[i].done) --live;
            if (s.error) break;
        }
    }
    t_scheduler = nullptr;
    if (s.error) std::rethrow_exception(s.error);
}

void fiber_yield() {
    Scheduler* s = t_scheduler;
    // Outside run_fibers no other party could ever arrive: a wait there would never end.
    if (s == nullptr) throw std::logic_error("a host barrier outside run_fibers");
    switch_context(s->fibers[s->current].context, s->main);
}

}  // namespace edgellama::cuda
