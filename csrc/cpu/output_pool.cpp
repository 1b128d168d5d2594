// The pool of large CPU output blocks (see cpu/alloc.h).
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cpu/alloc.h"

namespace detseg::cpu {
namespace {

constexpr size_t kHuge = size_t(2) << 20;

// DETSEG_CPU_CACHE_MB: a whole number of MiB (default 1024; too large for size_t: no cap);
// anything else keeps nothing.
size_t cap_from_env() {
  const char* v = std::getenv("DETSEG_CPU_CACHE_MB");
  if (!v || !*v) return size_t(1) << 30;
  char* end = nullptr;
  errno = 0;
  const unsigned long long mb = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0' || v[0] == '-') return 0;
  return errno == ERANGE || mb >= (SIZE_MAX >> 20) ? SIZE_MAX : static_cast<size_t>(mb) << 20;
}

class OutputPool final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kPoolMinBytes) return c10::GetCPUAllocator()->allocate(n);
    const size_t size = (n + kHuge - 1) / kHuge * kHuge;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
      }
    }
    if (!p) {
      p = std::aligned_alloc(kHuge, size);
      if (!p) throw std::bad_alloc();
      // Advisory only: without THP the block keeps 4 KiB pages.
      (void)madvise(p, size, MADV_HUGEPAGE);
      try {
        std::lock_guard<std::mutex> lock(mu_);
        sizes_[p] = size;
      } catch (...) {
        std::free(p);
        throw;
      }
    }
    return {p, p, &OutputPool::release, c10::Device(c10::DeviceType::CPU)};
  }
  // Small sizes come from torch's allocator with its deleter: no single raw deleter fits all.
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  static OutputPool& get() {
    static OutputPool* pool = new OutputPool();  // never destroyed: blocks may die after static teardown
    return *pool;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

  void empty() {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [size, list] : free_)
        for (void* p : list) drop.push_back(p), sizes_.erase(p);
      free_.clear();
      cached_ = 0;
    }
    for (void* p : drop) std::free(p);
  }

 private:
  static void release(void* p) { get().give_back(p); }

  // Runs in tensor destructors: never throws (a block that cannot be listed is freed).
  void give_back(void* p) noexcept {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = sizes_.find(p);
      const size_t size = it == sizes_.end() ? 0 : it->second;
      if (size && cached_ + size <= cap_) {
        try {
          free_[size].push_back(p);
          cached_ += size;
          return;
        } catch (...) {
        }
      }
      if (it != sizes_.end()) sizes_.erase(it);
    }
    std::free(p);
  }

  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // rounded size -> free blocks
  std::unordered_map<void*, size_t> sizes_;              // every live or cached block
  size_t cached_ = 0;
  const size_t cap_ = cap_from_env();
};

}  // namespace

at::Tensor empty_pooled(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::detail::empty_generic(sizes, &OutputPool::get(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), options.memory_format_opt());
}

size_t pool_cached_bytes() { return OutputPool::get().cached(); }

void pool_empty() { OutputPool::get().empty(); }

}  // namespace detseg::cpu
