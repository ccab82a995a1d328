// The local machine's job slots: which GPUs exist, and which of them each running job holds.
// On a GPU machine a slot is a share of one GPU (jobs_per_gpu shares each) or, for a job of
// several GPUs, whole idle GPUs; on the CPU it is one of max_parallel places.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace parcae::orchestrator::detail {

struct GpuInfo {
  int index = 0;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
};

// GPUs of this machine from nvidia-smi, else /proc/driver/nvidia/gpus; empty when there are none.
std::vector<GpuInfo> discover_gpus();

class SlotPool {
 public:
  // `gpus` empty = CPU mode with max_parallel places. Otherwise each GPU takes jobs_per_gpu jobs
  // and at most max_parallel (0 = no limit) run at once.
  SlotPool(std::vector<int> gpus, int jobs_per_gpu, int max_parallel);

  bool cpu() const { return gpus_.empty(); }
  // GPUs for a job of `gpus_per_job` GPUs (empty in CPU mode), or nullopt when none is free now.
  // Single-GPU jobs go to the least loaded GPU; multi-GPU jobs take idle GPUs only.
  std::optional<std::vector<int>> acquire(int gpus_per_job);
  // Marks GPUs held by a job that was adopted (may exceed the capacity for a while).
  void occupy(const std::vector<int>& gpus);
  void release(const std::vector<int>& gpus);
  int running() const { return running_; }
  int capacity() const;
  int gpu_count() const { return static_cast<int>(gpus_.size()); }

 private:
  std::vector<int> gpus_;
  std::vector<int> load_;  // jobs on each GPU, by position in gpus_
  int jobs_per_gpu_ = 1;
  int max_parallel_ = 0;
  int running_ = 0;
};

// "0,1,3" from a CUDA_VISIBLE_DEVICES value; ignores what is not a number.
std::vector<int> parse_device_list(const std::string& text);

}  // namespace parcae::orchestrator::detail
