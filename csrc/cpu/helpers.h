// Opportunistic helper threads for the CPU engine's entry loops (GNH entries and the sampler).
//
// An OpenMP team waits at its start for every one of its threads. Beside OpenBLAS's workers, which spin
// for about 0.1 s after every GEMM, a team's second thread waited one to four scheduler ticks (4 ms each)
// for a core: measured on 2 cores right after a linearization, 200 sampled entries at n = 1,000 took
// 8–16 ms with a team against 0.6 ms on one thread. Here the calling thread starts at once and claims
// chunks of the loop from an atomic counter; sleeping helper threads are woken and claim chunks too, if
// they get a core in time. The caller never waits for a helper that has not started: when the counter
// runs out it withdraws the job and waits only for the chunks that helpers are inside. Every item runs
// on one thread alone, so the results do not depend on which thread ran it.
//
// The number of threads is OpenMP's (OMP_NUM_THREADS; one thread without OpenMP). One job is shared at a
// time: a second caller meanwhile runs its loop alone. A forked child starts with a fresh, empty set of
// helpers (the parent's threads do not exist there).
#pragma once
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <new>
#include <thread>
#include <type_traits>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace pyhessk::cpu {

class Helpers {
  struct Job;

 public:
  // Loops of fewer numbers of work run on the calling thread alone: waking a helper costs microseconds.
  static constexpr double kShareWork = double(1 << 16);
  // Each chunk holds about this much work (and the loop at least 4 chunks per thread), so that a late
  // helper still finds chunks and the caller's wait for a helper's last chunk stays short.
  static constexpr double kChunkWork = double(1 << 15);

  // What a thread's body calls for its next chunk [begin, end) of the loop; false when none is left.
  class Claim {
   public:
    bool operator()(int64_t& begin, int64_t& end) {
      const int64_t b = job_->next.fetch_add(job_->chunk, std::memory_order_relaxed);
      if (b >= job_->m) return false;
      begin = b, end = b + std::min(job_->chunk, job_->m - b);
      if (helped_) helped_->fetch_add(end - begin, std::memory_order_relaxed);
      return true;
    }

   private:
    friend class Helpers;
    Claim(Job* job, std::atomic<int64_t>* helped) : job_(job), helped_(helped) {}
    Job* job_;
    std::atomic<int64_t>* helped_;  // counts a helper's items; null on the caller
  };

  // The loop over [0, m), `work` being the cost of one item in numbers streamed. body(claim) runs once on
  // each thread that takes part (the caller, and helpers that get a core), so it can make its scratch once
  // and then run chunks while claim(begin, end) gives one.
  template <typename Body>
  static void run(int64_t m, double work, Body&& body) {
    if (m <= 0) return;
    const int threads = max_threads();
    Job job;
    job.m = m;
    job.fn = [](void* ctx, Claim& claim) { (*static_cast<std::remove_reference_t<Body>*>(ctx))(claim); };
    job.ctx = &body;
    if (threads <= 1 || double(m) * work < kShareWork) {
      job.chunk = m;
      Claim claim(&job, nullptr);
      body(claim);
      return;
    }
    const int64_t by_work = std::max<int64_t>(1, int64_t(kChunkWork / std::max(work, 1.0)));
    const int64_t by_count = std::max<int64_t>(1, m / (4 * int64_t(threads)));
    job.chunk = std::min(by_work, by_count);
    job.helpers = threads - 1;
    instance().share(job);
  }

  static int max_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  // Items run by helper threads since the process started (tests check that the shared path ran).
  static int64_t helped() { return instance().helped_.load(std::memory_order_relaxed); }

 private:
  using Fn = void (*)(void*, Claim&);
  struct Job {
    std::atomic<int64_t> next{0};
    int64_t m = 0, chunk = 1;
    int helpers = 0;  // at most this many helpers inside the job at once
    int busy = 0;     // helpers inside the job (under the mutex)
    std::exception_ptr error;  // the first exception of a body (under the mutex), rethrown by the caller
    Fn fn = nullptr;
    void* ctx = nullptr;
  };

  static Helpers& instance() {
    static std::atomic<Helpers*>& current = make();
    return *current.load(std::memory_order_acquire);
  }
  static std::atomic<Helpers*>& make() {
    static std::atomic<Helpers*> current{new Helpers()};  // never destroyed: helpers sleep until exit
    // A forked child gets a fresh object in static storage (no allocation between fork and exec); the
    // parent's, copied with whatever state its mutex had, is left alone.
    alignas(Helpers) static unsigned char child[sizeof(Helpers)];
    pthread_atfork(nullptr, nullptr, [] { current.store(new (child) Helpers(), std::memory_order_release); });
    return current;
  }

  void share(Job& job) {
    bool shared = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (job_ == nullptr) {
        while (started_ < job.helpers && !spawn_failed_) {
          try {
            std::thread(&Helpers::serve, this, seq_).detach();
            ++started_;
          } catch (const std::system_error&) {  // no more threads allowed: share with those there are
            spawn_failed_ = true;
          }
        }
        if (started_ > 0) {
          job_ = &job;
          ++seq_;
          shared = true;
        }
      }
    }
    if (!shared) {
      Claim claim(&job, nullptr);
      job.fn(job.ctx, claim);
      return;
    }
    wake_.notify_all();
    work(job, false);
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ = nullptr;  // helpers that wake from now on find nothing to join
      idle_.wait(lock, [&] { return job.busy == 0; });
      error = job.error;
    }
    if (error) std::rethrow_exception(error);
  }

  // One thread's part of a shared job. An exception (an allocation that failed) stops the job: it is kept
  // for the caller to rethrow once every helper has left, and never escapes a helper thread.
  void work(Job& job, bool helper) {
    try {
      Claim claim(&job, helper ? &helped_ : nullptr);
      job.fn(job.ctx, claim);
    } catch (...) {
      job.next.store(job.m, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(mutex_);
      if (!job.error) job.error = std::current_exception();
    }
  }

  // A helper's life: sleep until a job it has not seen is shared, join it while it lasts and has room.
  void serve(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return job_ != nullptr && seq_ != seen; });
      seen = seq_;
      Job* job = job_;
      if (job->busy >= job->helpers) continue;
      ++job->busy;
      lock.unlock();
      work(*job, true);
      lock.lock();
      if (--job->busy == 0) idle_.notify_all();
    }
  }

  Helpers() = default;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  Job* job_ = nullptr;  // the shared job, while its caller works on it
  uint64_t seq_ = 0;    // jobs shared so far
  int started_ = 0;     // helper threads started
  bool spawn_failed_ = false;  // the system refused a thread: no more attempts
  std::atomic<int64_t> helped_{0};
};

}  // namespace pyhessk::cpu
