// GPU discovery and the slot pool of the local launcher.
#include "orchestrator/detail/resources.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>

namespace parcae::orchestrator::detail {

std::vector<GpuInfo> discover_gpus() {
  std::vector<GpuInfo> gpus;
  if (FILE* pipe =
          ::popen("nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      std::string text(line);
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
      const size_t comma = text.find(',');
      if (comma == std::string::npos)
        continue;
      try {
        const int index = std::stoi(text.substr(0, comma));
        std::string name = text.substr(comma + 1);
        while (!name.empty() && name.front() == ' ')
          name.erase(0, 1);
        gpus.push_back({index, name});
      } catch (const std::exception&) {
      }
    }
    ::pclose(pipe);
  }
  if (!gpus.empty())
    return gpus;
  std::error_code ec;
  int index = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    (void)entry;
    gpus.push_back({index++, "NVIDIA GPU"});
  }
  return gpus;
}

SlotPool::SlotPool(std::vector<int> gpus, int jobs_per_gpu, int max_parallel)
    : gpus_(std::move(gpus)),
      load_(gpus_.size(), 0),
      jobs_per_gpu_(std::max(jobs_per_gpu, 1)),
      max_parallel_(std::max(max_parallel, 0)) {}

int SlotPool::capacity() const {
  if (cpu())
    return std::max(max_parallel_, 1);
  const int slots = static_cast<int>(gpus_.size()) * jobs_per_gpu_;
  return max_parallel_ > 0 ? std::min(slots, max_parallel_) : slots;
}

std::optional<std::vector<int>> SlotPool::acquire(int gpus_per_job) {
  if (running_ >= capacity())
    return std::nullopt;
  if (cpu()) {
    ++running_;
    return std::vector<int>{};
  }
  std::vector<int> picked;
  if (gpus_per_job <= 1) {
    size_t best = gpus_.size();
    for (size_t i = 0; i < gpus_.size(); ++i) {
      if (load_[i] < jobs_per_gpu_ && (best == gpus_.size() || load_[i] < load_[best]))
        best = i;
    }
    if (best == gpus_.size())
      return std::nullopt;
    ++load_[best];
    picked.push_back(gpus_[best]);
  } else {
    std::vector<size_t> idle;
    for (size_t i = 0; i < gpus_.size() && static_cast<int>(idle.size()) < gpus_per_job; ++i) {
      if (load_[i] == 0)
        idle.push_back(i);
    }
    if (static_cast<int>(idle.size()) < gpus_per_job)
      return std::nullopt;
    for (size_t i : idle) {
      load_[i] = jobs_per_gpu_;  // a multi-GPU job owns its GPUs
      picked.push_back(gpus_[i]);
    }
  }
  ++running_;
  return picked;
}

void SlotPool::occupy(const std::vector<int>& gpus) {
  ++running_;
  for (int g : gpus) {
    for (size_t i = 0; i < gpus_.size(); ++i) {
      if (gpus_[i] == g)
        load_[i] = gpus.size() > 1 ? jobs_per_gpu_ : load_[i] + 1;
    }
  }
}

void SlotPool::release(const std::vector<int>& gpus) {
  if (running_ > 0)
    --running_;
  for (int g : gpus) {
    for (size_t i = 0; i < gpus_.size(); ++i) {
      if (gpus_[i] == g)
        load_[i] = gpus.size() > 1 ? 0 : std::max(load_[i] - 1, 0);
    }
  }
}

std::vector<int> parse_device_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used == item.size())
        out.push_back(v);
    } catch (const std::exception&) {
    }
  }
  return out;
}

}  // namespace parcae::orchestrator::detail
