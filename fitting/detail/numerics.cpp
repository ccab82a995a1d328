// Percentiles, the seeded random stream, the parallel loop and number formatting of numerics.h.
#include "fitting/detail/numerics.h"

#include <atomic>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

namespace parcae::fitting::detail {

double quantile(std::vector<double> values, double q) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }),
               values.end());
  if (values.empty()) {
    return std::nan("");
  }
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return values[below] + fraction * (values[above] - values[below]);
}

double standard_deviation(const std::vector<double>& values) {
  double sum = 0.0;
  int count = 0;
  for (double v : values) {
    if (std::isfinite(v)) {
      sum += v;
      ++count;
    }
  }
  if (count < 2) {
    return std::nan("");
  }
  const double mean = sum / count;
  double squares = 0.0;
  for (double v : values) {
    if (std::isfinite(v)) {
      squares += (v - mean) * (v - mean);
    }
  }
  return std::sqrt(squares / (count - 1));
}

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

Random::Random(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t state = seed ^ (0xd1b54a32d192ed03ULL * (stream + 1));
  std::seed_seq sequence{static_cast<std::uint32_t>(splitmix64(state)),
                         static_cast<std::uint32_t>(splitmix64(state)),
                         static_cast<std::uint32_t>(splitmix64(state)),
                         static_cast<std::uint32_t>(splitmix64(state))};
  engine_.seed(sequence);
}

double Random::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double Random::uniform(double low, double high) {
  return low + (high - low) * uniform();
}

int Random::index(int size) {
  // Rejection keeps every index equally likely.
  const std::uint64_t range = static_cast<std::uint64_t>(size);
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
  std::uint64_t draw = engine_();
  while (draw >= limit) {
    draw = engine_();
  }
  return static_cast<int>(draw % range);
}

double Random::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u = 0.0, v = 0.0, s = 0.0;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double factor = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * factor;
  has_spare_ = true;
  return u * factor;
}

void parallel_for(int count, int threads, const std::function<void(int)>& body) {
  if (count <= 0) {
    return;
  }
  int workers = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  workers = std::max(1, std::min(workers, count));
  std::atomic<int> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&] {
    for (int i = next++; i < count; i = next++) {
      try {
        body(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) {
          failure = std::current_exception();
        }
        next = count;  // stop handing out work
      }
    }
  };
  if (workers == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (int t = 1; t < workers; ++t) {
      pool.emplace_back(work);
    }
    work();
    for (auto& thread : pool) {
      thread.join();
    }
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

}  // namespace parcae::fitting::detail
