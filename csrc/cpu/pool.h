// Work buffers of the CPU engine, recycled across linearizations.
//
// Every product on a fresh linearization (hk.hvp, an optimizer step) allocates the caches and workspace
// of one pass, then frees them. With glibc's defaults those frees often return the top of the heap to
// the kernel, and the next pass page-faults its memory back in: measured on config S in float64, 160
// page faults and 2.4× the time of a fresh Hessian-vector product (557 against 227 µs), depending on the
// heap's history. Buffers from 4 KiB to 64 MiB therefore come from a process-wide cache of freed blocks
// (size classes of powers of two and their 1.5 multiples), holding at most kPoolBytes; smaller and larger
// ones go to malloc directly.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pyhessk::cpu {

class BufferPool {
 public:
  static constexpr size_t kMinBytes = size_t(1) << 12;
  static constexpr size_t kMaxBytes = size_t(1) << 26;
  static constexpr size_t kPoolBytes = size_t(1) << 27;

  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: buffers may be freed at exit
    return *pool;
  }

  // The size class of a request: bytes rounded up to 2^k or 1.5·2^k (0 if not pooled).
  static size_t size_class(size_t bytes) {
    if (bytes < kMinBytes || bytes > kMaxBytes) return 0;
    size_t p = kMinBytes;
    while (p < bytes) p <<= 1;
    return (p / 4) * 3 >= bytes ? (p / 4) * 3 : p;
  }

  void* take(size_t bytes) {
    const size_t c = size_class(bytes);
    if (c) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(c);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= c;
        return p;
      }
    }
    void* p = std::malloc(c ? c : bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }

  void give(void* p, size_t bytes) {
    const size_t c = size_class(bytes);
    if (c) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + c <= kPoolBytes) {
        free_[c].push_back(p);
        cached_ += c;
        return;
      }
    }
    std::free(p);
  }

 private:
  BufferPool() = default;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

template <typename T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <typename U>
  PoolAllocator(const PoolAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(BufferPool::instance().take(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { BufferPool::instance().give(p, n * sizeof(T)); }
  // resize(n) default-initializes: the numbers a buffer grows by are not zeroed, since every pass writes
  // its buffers before reading them (zeroing cost 3–5% of a linearization on config P). Code that needs
  // zeros says so: assign(n, 0) or resize(n, 0). Built with -DPYHESSK_POISON_BUFFERS (the sanitizer test's
  // driver, or CFLAGS for a whole test run), they are NaN instead, so a read before a write shows in the
  // results.
  template <typename U>
  void construct(U* p) noexcept {
#ifdef PYHESSK_POISON_BUFFERS
    if constexpr (std::is_floating_point_v<U>) {
      ::new (static_cast<void*>(p)) U(std::numeric_limits<U>::quiet_NaN());
      return;
    }
#endif
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
  template <typename U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const PoolAllocator<U>&) const { return false; }
};

// A work buffer of the CPU engine: a std::vector whose memory is recycled through BufferPool.
template <typename T>
using buffer = std::vector<T, PoolAllocator<T>>;

}  // namespace pyhessk::cpu
