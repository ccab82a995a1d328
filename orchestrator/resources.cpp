// GPU discovery, the GPUs this process may use, and the slot pool of the local launcher.
#include "orchestrator/detail/resources.h"

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "sweeps/error.h"

namespace parcae::orchestrator::detail {
namespace {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  while (!text.empty() && text.front() == ' ')
    text.erase(0, 1);
  return text;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    out.push_back(trimmed(item));
  return out;
}

std::optional<int> whole_number(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 6)
    return std::nullopt;
  return std::stoi(text);
}

// The machine's GPUs whose indices `text` lists ("0,2" or Slurm's "0-1,3"), in that order.
std::vector<GpuInfo> by_indices(const std::vector<GpuInfo>& machine, const std::string& text) {
  std::vector<GpuInfo> out;
  for (const std::string& item : split_commas(text)) {
    const size_t dash = item.find('-');
    const auto first = whole_number(item.substr(0, dash));
    const auto last = dash == std::string::npos ? first : whole_number(item.substr(dash + 1));
    if (!first || !last)
      continue;
    for (int i = *first; i <= *last; ++i) {
      for (const GpuInfo& gpu : machine) {
        if (gpu.index == i)
          out.push_back(gpu);
      }
    }
  }
  return out;
}

}  // namespace

std::vector<GpuInfo> discover_gpus() {
  std::vector<GpuInfo> gpus;
  if (FILE* pipe = ::popen(
          "nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader 2>/dev/null", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      const std::vector<std::string> fields = split_commas(line);
      if (fields.size() < 2)
        continue;
      const auto index = whole_number(fields[0]);
      if (!index)
        continue;
      gpus.push_back({*index, fields[1], fields.size() > 2 ? fields[2] : std::string()});
    }
    ::pclose(pipe);
  }
  if (!gpus.empty())
    return gpus;
  std::error_code ec;
  int index = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    (void)entry;
    gpus.push_back({index++, "NVIDIA GPU", ""});
  }
  return gpus;
}

VisibleGpus visible_gpus(const std::vector<GpuInfo>& machine,
                         const std::map<std::string, std::string>& environment) {
  VisibleGpus out;
  const auto value = [&](const char* name) -> std::optional<std::string> {
    const auto it = environment.find(name);
    return it == environment.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  if (const auto visible = value("CUDA_VISIBLE_DEVICES")) {
    out.source = "CUDA_VISIBLE_DEVICES=" + *visible;
    for (const std::string& entry : split_commas(*visible)) {
      const GpuInfo* found = nullptr;
      if (const auto index = whole_number(entry)) {
        for (const GpuInfo& gpu : machine)
          found = gpu.index == *index ? &gpu : found;
      } else if (!entry.empty() && entry != "NoDevFiles") {
        // A UUID, or its unique prefix as CUDA accepts ("GPU-5f0e").
        for (const GpuInfo& gpu : machine)
          found = !gpu.uuid.empty() && gpu.uuid.rfind(entry, 0) == 0 ? &gpu : found;
      }
      if (found == nullptr)
        break;  // CUDA stops at the first entry that names no device (-1 hides them all)
      out.gpus.push_back(*found);
    }
    return out;
  }
  if (value("SLURM_JOB_ID")) {
    const auto step = value("SLURM_STEP_GPUS");
    const auto job = value("SLURM_JOB_GPUS");
    if (step || job) {
      out.source =
          step ? "Slurm (SLURM_STEP_GPUS=" + *step + ")" : "Slurm (SLURM_JOB_GPUS=" + *job + ")";
      out.gpus = by_indices(machine, step ? *step : *job);
    } else {
      out.source = "Slurm (this allocation has no GPUs)";
    }
    return out;
  }
  out.source = "nvidia-smi";
  out.gpus = machine;
  return out;
}

std::map<std::string, std::string> gpu_environment() {
  std::map<std::string, std::string> out;
  for (const char* name :
       {"CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"}) {
    if (const char* v = std::getenv(name))
      out[name] = v;
  }
  return out;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

SlotPlan plan_slots(const std::string& gpus_flag,
                    const std::vector<int>& listed,
                    int jobs_per_gpu,
                    int max_parallel,
                    const VisibleGpus& visible,
                    int cores) {
  SlotPlan plan;
  plan.jobs_per_gpu = std::max(1, jobs_per_gpu);
  if (gpus_flag == "auto" || gpus_flag == "all") {
    plan.gpus = visible.gpus;
    plan.source = visible.source;
  } else if (gpus_flag == "none") {
    plan.source = "--gpus none";
  } else {
    plan.source = "--gpus " + gpus_flag;
    for (int index : listed) {
      const auto it = std::find_if(visible.gpus.begin(),
                                   visible.gpus.end(),
                                   [&](const GpuInfo& gpu) { return gpu.index == index; });
      if (it == visible.gpus.end()) {
        std::string usable;
        for (const GpuInfo& gpu : visible.gpus)
          usable += (usable.empty() ? "" : ",") + std::to_string(gpu.index);
        throw InputError("",
                         "--gpus",
                         gpus_flag,
                         "GPU " + std::to_string(index) + " is not one this process may use (" +
                             visible.source + " gives " + (usable.empty() ? "none" : usable) + ")",
                         "choose among those, or change the environment that sets them");
      }
      plan.gpus.push_back(*it);
    }
  }
  plan.max_parallel = plan.gpus.empty() && max_parallel <= 0 ? 1 : max_parallel;
  plan.threads_per_job = std::max(1, cores / std::max(1, plan.pool().capacity()));
  return plan;
}

SlotPool SlotPlan::pool() const {
  return SlotPool(indices(), jobs_per_gpu, max_parallel);
}

std::vector<int> SlotPlan::indices() const {
  std::vector<int> out;
  for (const GpuInfo& gpu : gpus)
    out.push_back(gpu.index);
  return out;
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
