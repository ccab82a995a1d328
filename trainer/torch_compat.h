// The one place for differences between LibTorch versions and builds (1.13 CPU from Debian,
// 2.x CUDA from PyTorch's wheels): attention, autocast, seeded generators, device facts, and
// the c10d process groups of data-parallel training.
//
// Everything else in trainer/ is written against the API common to both and calls these
// functions where the two differ. CUDA-only calls sit behind PARCAE_WITH_CUDA (a CUDA LibTorch
// build) and a runtime check, so the same sources build and run on a CPU-only machine.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#if PARCAE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif
// Set by trainer/CMakeLists.txt with USE_C10D_GLOO / USE_C10D_NCCL, which the headers test, when
// the build found gloo's headers (Debian: libgloo-dev) or nccl.h.
#if PARCAE_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if PARCAE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

// True when the LibTorch headers are at least version major.minor.
#define PARCAE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||         \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#if PARCAE_TORCH_AT_LEAST(2, 0)
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
// The Kineto profiler's C++ entry points, as LibTorch 2.x declares them.
#if PARCAE_TORCH_AT_LEAST(2, 0) && PARCAE_WITH_CUDA
#define PARCAE_HAS_KINETO_PROFILER 1
#include <set>

#include <torch/csrc/autograd/profiler_kineto.h>
#else
#define PARCAE_HAS_KINETO_PROFILER 0
#endif

namespace parcae::trainer::compat {

// "1.13.0", "2.5.1": the headers this binary was built against.
inline std::string libtorch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

inline bool cuda_available() {
  return torch::cuda::is_available();
}

// The CUDA toolkit version LibTorch was built with ("12.4"), or "" on a CPU build or when no GPU
// is visible. PARCAE_CUDA_VERSION comes from CMake's view of the toolkit.
inline std::string cuda_version() {
#if PARCAE_WITH_CUDA && defined(PARCAE_CUDA_VERSION)
  return cuda_available() ? std::string(PARCAE_CUDA_VERSION) : std::string();
#else
  return "";
#endif
}

// "cpu", or the GPU's marketing name ("NVIDIA H100 80GB HBM3").
inline std::string device_name(const torch::Device& device) {
#if PARCAE_WITH_CUDA
  if (device.is_cuda()) {
    return at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0)->name;
  }
#endif
  return device.is_cuda() ? "cuda" : "cpu";
}

// Peak bytes held by tensors on `device` since the process started; 0 on the CPU.
inline int64_t peak_memory_bytes(const torch::Device& device) {
#if PARCAE_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[0].peak;  // StatType::AGGREGATE
  }
#endif
  (void)device;
  return 0;
}

// A private generator on `device`, seeded with `seed`, independent of the global one. On the GPU
// it is a clone of the default CUDA generator re-seeded, which needs no CUDA headers.
inline at::Generator make_generator(const torch::Device& device, uint64_t seed) {
  at::Generator generator = device.is_cuda() ? at::globalContext().defaultGenerator(device).clone()
                                             : at::detail::createCPUGenerator(seed);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(seed);
  return generator;
}

// Which kernel runs causal_attention on the GPU: PARCAE_ATTENTION=cudnn or flash forces one;
// unset or `auto` takes flash attention for small calls and ATen's own choice (cuDNN's on Hopper)
// for large ones. cuDNN's attention is the faster kernel, but each call costs ~0.3 ms (forward)
// and ~1 ms (backward) of host time, and every new batch size builds a new plan (tens of ms):
// with per-sequence depths the looping rows change size every iteration, so small models, whose
// kernels take microseconds, would wait on the host.
enum class AttentionKernel { kAuto, kCudnn, kFlash };
inline AttentionKernel attention_kernel_choice() {
  static const AttentionKernel choice = [] {
    const char* value = std::getenv("PARCAE_ATTENTION");
    const std::string name = value != nullptr ? value : "auto";
    if (name == "cudnn")
      return AttentionKernel::kCudnn;
    if (name == "flash")
      return AttentionKernel::kFlash;
    return AttentionKernel::kAuto;
  }();
  return choice;
}

// Causal softmax attention with scale 1/sqrt(hd). q, k, v: (batch, heads, seq, hd), one dtype.
// LibTorch 2.x has fused kernels (flash / cuDNN / memory-efficient on CUDA) behind
// at::scaled_dot_product_attention; 1.13 has none, so it gets the plain math, with the softmax
// in fp32 (or fp64 for fp64 inputs).
inline torch::Tensor causal_attention(const torch::Tensor& q,
                                      const torch::Tensor& k,
                                      const torch::Tensor& v) {
#if PARCAE_TORCH_AT_LEAST(2, 0)
#if PARCAE_WITH_CUDA
  // Below about 2^33 multiply-adds of q k^T a call is short enough that host time dominates.
  constexpr double kSmallAttention = 8.6e9;
  const AttentionKernel choice = attention_kernel_choice();
  const double work =
      static_cast<double>(q.size(0)) * q.size(1) * q.size(2) * k.size(2) * q.size(3);
  const bool flash_dtype = q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf;
  if (q.is_cuda() && flash_dtype && q.size(3) <= 256 &&
      (choice == AttentionKernel::kFlash ||
       (choice == AttentionKernel::kAuto && work < kSmallAttention))) {
    return std::get<0>(
        at::_scaled_dot_product_flash_attention(q, k, v, /*dropout_p=*/0.0, /*is_causal=*/true));
  }
#endif
  return at::scaled_dot_product_attention(q,
                                          k,
                                          v,
                                          /*attn_mask=*/{},
                                          /*dropout_p=*/0.0,
                                          /*is_causal=*/true);
#else
  const int64_t seq = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const auto softmax_dtype = q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)).to(softmax_dtype) * scale;
  const torch::Tensor future =
      torch::ones({seq, seq}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
          .triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  const torch::Tensor weights = torch::softmax(scores, -1).to(v.scalar_type());
  return torch::matmul(weights, v);
#endif
}

// Empties autocast's cache of low-precision weight casts. Casts made under NoGradGuard are cached
// without autograd history and would be reused by later graded iterations, so that no gradient
// reaches the core weights (PyTorch issue 112583); the looped forward calls this between its
// no-grad and graded phases.
inline void clear_autocast_cache() {
  at::autocast::clear_cache();
}

// Whether autocast is on for `device_type` (kCUDA or kCPU) in this thread, and its dtype.
inline bool autocast_enabled(torch::DeviceType device_type) {
#if PARCAE_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device_type);
#else
  return device_type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}
inline at::ScalarType autocast_dtype(torch::DeviceType device_type) {
#if PARCAE_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device_type);
#else
  return device_type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                                     : at::autocast::get_autocast_cpu_dtype();
#endif
}

// Enables autocast to `dtype` on `device_type` (kCUDA or kCPU) for its lifetime, when `enabled`.
// Restores the previous state on exit and, like Python's torch.autocast, clears the cast cache
// when the outermost guard ends, so casts never outlive the graph they belong to.
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device_type, at::ScalarType dtype, bool enabled)
      : device_type_(device_type), active_(enabled) {
    if (!active_)
      return;
    previous_enabled_ = is_enabled();
    previous_dtype_ = get_dtype();
    set_enabled(true);
    set_dtype(dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_)
      return;
    if (at::autocast::decrement_nesting() == 0)
      at::autocast::clear_cache();
    set_enabled(previous_enabled_);
    set_dtype(previous_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
#if PARCAE_TORCH_AT_LEAST(2, 4)
  bool is_enabled() const {
    return at::autocast::is_autocast_enabled(device_type_);
  }
  at::ScalarType get_dtype() const {
    return at::autocast::get_autocast_dtype(device_type_);
  }
  void set_enabled(bool on) const {
    at::autocast::set_autocast_enabled(device_type_, on);
  }
  void set_dtype(at::ScalarType dtype) const {
    at::autocast::set_autocast_dtype(device_type_, dtype);
  }
#else
  bool is_enabled() const {
    return device_type_ == torch::kCUDA ? at::autocast::is_enabled()
                                        : at::autocast::is_cpu_enabled();
  }
  at::ScalarType get_dtype() const {
    return device_type_ == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                                        : at::autocast::get_autocast_cpu_dtype();
  }
  void set_enabled(bool on) const {
    if (device_type_ == torch::kCUDA) {
      at::autocast::set_enabled(on);
    } else {
      at::autocast::set_cpu_enabled(on);
    }
  }
  void set_dtype(at::ScalarType dtype) const {
    if (device_type_ == torch::kCUDA) {
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
  }
#endif

  torch::DeviceType device_type_;
  bool active_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Process groups. 1.13's ProcessGroupGloo derives from c10d::ProcessGroup; from 2.0 the
// backends (ProcessGroupGloo, ProcessGroupNCCL) derive from c10d::Backend, and ProcessGroup
// became a dispatcher over them. Both bases have the same virtual allreduce and broadcast, so
// the trainer holds a backend directly, through this alias.
#if PARCAE_TORCH_AT_LEAST(2, 0)
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif
using GroupPointer = c10::intrusive_ptr<CollectiveGroup>;
using StorePointer = c10::intrusive_ptr<c10d::Store>;
using CollectiveWork = c10::intrusive_ptr<c10d::Work>;

inline constexpr bool kHasGloo = PARCAE_WITH_GLOO != 0;
inline constexpr bool kHasNccl = PARCAE_WITH_NCCL != 0;

// The TCP store of a job: rank 0 serves it (and waits for world_size clients, itself included),
// the others connect; each side waits up to `timeout` for the rest.
inline StorePointer make_tcp_store(const std::string& host,
                                   int port,
                                   bool is_server,
                                   int world_size,
                                   std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = is_server;
  options.numWorkers = static_cast<std::size_t>(world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(host, options);
}

// A Gloo group over `store`, talking through the interface that resolves `host` (127.0.0.1 for
// ranks on one machine); null when this build has no Gloo.
inline GroupPointer make_gloo_group(const StorePointer& store,
                                    int rank,
                                    int world_size,
                                    const std::string& host) {
#if PARCAE_WITH_GLOO
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->devices.push_back(host == "127.0.0.1" || host == "localhost"
                                 ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                 : c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
#else
  (void)store, (void)rank, (void)world_size, (void)host;
  return {};
#endif
}

// An NCCL group over `store` on the current CUDA device; null when this build has no NCCL.
inline GroupPointer make_nccl_group(const StorePointer& store, int rank, int world_size) {
#if PARCAE_WITH_NCCL
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(
      store, rank, world_size, c10d::ProcessGroupNCCL::Options::create());
#else
  (void)store, (void)rank, (void)world_size;
  return {};
#endif
}

// Makes `device` the current CUDA device of this thread (NCCL and new allocations use it).
inline void set_current_device(const torch::Device& device) {
#if PARCAE_WITH_CUDA
  if (device.is_cuda() && device.has_index())
    c10::cuda::set_device(device.index());
#else
  (void)device;
#endif
}

// `t`, a CPU tensor, on `device`. A GPU gets it through pinned memory without waiting: a copy
// from ordinary host memory first waits for all the work queued on the GPU.
inline torch::Tensor to_device(const torch::Tensor& t, const torch::Device& device) {
  if (!device.is_cuda())
    return t.to(device);
  return (t.is_pinned() ? t : t.pin_memory()).to(device, /*non_blocking=*/true);
}

// `values` as an int64 tensor on `device`, written straight into pinned memory for a GPU (a
// pin_memory() of a small tensor cost about 0.1 ms of host time a call in H100 traces).
inline torch::Tensor to_device(const std::vector<int64_t>& values, const torch::Device& device) {
  torch::Tensor host =
      torch::empty({static_cast<int64_t>(values.size())},
                   torch::TensorOptions().dtype(torch::kLong).pinned_memory(device.is_cuda()));
  std::copy(values.begin(), values.end(), host.data_ptr<int64_t>());
  return device.is_cuda() ? host.to(device, /*non_blocking=*/true) : host;
}

// A point in the current GPU stream's work that the host can wait for, without waiting for what
// was queued after it; on the CPU, where work is done when queued, a no-op.
class DeviceFence {
 public:
  void record(const torch::Device& device) {
#if PARCAE_WITH_CUDA
    if (device.is_cuda()) {
      event_.emplace();
      event_->record();
    }
#else
    (void)device;
#endif
  }
  void wait() {
#if PARCAE_WITH_CUDA
    if (event_)
      event_->synchronize();
#endif
  }

 private:
#if PARCAE_WITH_CUDA
  std::optional<at::cuda::CUDAEvent> event_;
#endif
};

// Multiplies every tensor of `tensors` in place by `factor`, a one-element tensor on their
// device, without reading it back: one multi-tensor launch where LibTorch has the overload (2.1
// and later), one multiply a tensor otherwise.
inline void foreach_mul_(const std::vector<torch::Tensor>& tensors, const torch::Tensor& factor) {
#if PARCAE_TORCH_AT_LEAST(2, 1)
  at::_foreach_mul_(tensors, factor);
#else
  for (const torch::Tensor& t : tensors)
    t.mul_(factor);
#endif
}

// Whether fused_adamw() updates tensors like `param` (CUDA tensors, LibTorch 2.1 and later).
inline bool has_fused_adamw(const torch::Tensor& param) {
#if PARCAE_TORCH_AT_LEAST(2, 1) && PARCAE_WITH_CUDA
  return param.is_cuda();
#else
  (void)param;
  return false;
#endif
}

// One bias-corrected AdamW step (decoupled weight decay) over every tensor of `params` with
// ATen's fused multi-tensor kernel, where this LibTorch has one for them (2.1 and later, CUDA
// tensors). state_steps hold each tensor's step count t after this step, as fp32 on its device.
// Returns false, having done nothing, where there is no such kernel; the caller then applies
// the same formulas itself. A `found_inf` of 1 (a one-element fp32 tensor) skips the update on
// the GPU.
inline bool fused_adamw(const std::vector<torch::Tensor>& params,
                        const std::vector<torch::Tensor>& grads,
                        const std::vector<torch::Tensor>& exp_avgs,
                        const std::vector<torch::Tensor>& exp_avg_sqs,
                        const std::vector<torch::Tensor>& state_steps,
                        double lr,
                        double beta1,
                        double beta2,
                        double weight_decay,
                        double eps,
                        const torch::Tensor& found_inf = {}) {
#if PARCAE_TORCH_AT_LEAST(2, 1) && PARCAE_WITH_CUDA
  if (params.empty() || !has_fused_adamw(params.front()))
    return false;
  at::_fused_adamw_(params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    /*max_exp_avg_sqs=*/{},
                    state_steps,
                    lr,
                    beta1,
                    beta2,
                    weight_decay,
                    eps,
                    /*amsgrad=*/false,
                    /*maximize=*/false,
                    /*grad_scale=*/std::nullopt,
                    found_inf.defined() ? std::optional<at::Tensor>(found_inf) : std::nullopt);
  return true;
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)state_steps, (void)found_inf;
  (void)lr, (void)beta1, (void)beta2, (void)weight_decay, (void)eps;
  return false;
#endif
}

// Kineto traces of CPU operators and GPU kernels (a Chrome trace, as torch.profiler writes), in
// CUDA builds of LibTorch 2.x. start_profiler() returns false where this build has none.
inline bool start_profiler() {
#if PARCAE_HAS_KINETO_PROFILER
  namespace impl = torch::profiler::impl;
  // Input shapes let a trace tell apart, say, a residual-stream add from a weight's.
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
  const std::set<impl::ActivityType> activities{impl::ActivityType::CPU, impl::ActivityType::CUDA};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  return true;
#else
  return false;
#endif
}

// Stops the profiler that start_profiler() started and writes its trace to `path`.
inline void stop_profiler(const std::string& path) {
#if PARCAE_HAS_KINETO_PROFILER
  torch::autograd::profiler::disableProfiler()->save(path);
#else
  (void)path;
#endif
}

inline int cuda_device_count() {
  return static_cast<int>(torch::cuda::device_count());
}

}  // namespace parcae::trainer::compat
