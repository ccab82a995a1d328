// The local machine's job slots: which GPUs this process may use, and which of them each running
// job holds. On a GPU machine a slot is a share of one GPU (jobs_per_gpu shares each) or, for a
// job of several GPUs, whole idle GPUs; on the CPU it is one of max_parallel places.
//
// Which GPUs are ours follows the conventions of CUDA and Slurm, so that a shared node is shared:
// CUDA_VISIBLE_DEVICES when it is set (indices or GPU-/MIG- UUIDs; an empty value, -1 or
// NoDevFiles means none), else inside a Slurm allocation the GPUs Slurm gave it
// (SLURM_STEP_GPUS or SLURM_JOB_GPUS; none when it gave none), else every GPU nvidia-smi lists.
// Indices are nvidia-smi's, which CUDA shares when CUDA_DEVICE_ORDER=PCI_BUS_ID (set for every
// trainer).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace parcae::orchestrator::detail {

struct GpuInfo {
  int index = 0;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  std::string uuid;  // e.g. "GPU-5f0e...", empty when unknown
};

// GPUs of this machine from nvidia-smi, else /proc/driver/nvidia/gpus; empty when there are none.
std::vector<GpuInfo> discover_gpus();

// The GPUs this process may use and why, for the slot pool and for `sweep run --dry-run`.
struct VisibleGpus {
  std::vector<GpuInfo> gpus;
  std::string source;  // "nvidia-smi", "CUDA_VISIBLE_DEVICES=2,3", "Slurm (SLURM_JOB_GPUS=1)"
};

// Applies the rules of the file comment to the machine's GPUs. `environment` holds the values of
// CUDA_VISIBLE_DEVICES, SLURM_JOB_ID, SLURM_STEP_GPUS and SLURM_JOB_GPUS that are set. An entry
// of CUDA_VISIBLE_DEVICES that names no GPU ends the list there, as it does for CUDA.
VisibleGpus visible_gpus(const std::vector<GpuInfo>& machine,
                         const std::map<std::string, std::string>& environment);

// Those four variables of this process's environment, for visible_gpus().
std::map<std::string, std::string> gpu_environment();

// Cores this process may run on (its CPU affinity, which Slurm and cgroups narrow), at least 1.
int usable_cores();

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

// The slots of one `sweep run`: its GPUs, how many jobs share each, how many run at once, and the
// OMP_NUM_THREADS each trainer gets.
struct SlotPlan {
  std::vector<GpuInfo> gpus;  // empty: jobs run on the CPU
  std::string source;         // where the GPUs came from, for messages
  int jobs_per_gpu = 1;
  int max_parallel = 0;     // as SlotPool takes it
  int threads_per_job = 1;  // usable cores / trainers at once, at least 1
  SlotPool pool() const;
  std::vector<int> indices() const;
};

// `gpus_flag` is --gpus: "auto" or "all" (the visible GPUs), "none" (the CPU), or a list of
// indices, each of which must be visible (InputError naming --gpus and the environment
// otherwise). jobs_per_gpu >= 1; max_parallel as RunOptions::max_parallel (0: every GPU slot, or
// 1 on the CPU).
SlotPlan plan_slots(const std::string& gpus_flag,
                    const std::vector<int>& listed,
                    int jobs_per_gpu,
                    int max_parallel,
                    const VisibleGpus& visible,
                    int cores);

// "0,1,3" from a CUDA_VISIBLE_DEVICES value; ignores what is not a number.
std::vector<int> parse_device_list(const std::string& text);

}  // namespace parcae::orchestrator::detail
