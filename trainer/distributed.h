// The collectives of a data-parallel job and the gradient reducer that overlaps them with the
// backward pass (trainer.h has the scheme, docs/trainer.md the launch modes).
//
// Communicator wraps one c10d process group: ranks meet at a TCP store served by rank 0, then
// sum through NCCL when the model lives on a GPU and through Gloo on the CPU. A default
// Communicator is one rank with no group, where every collective is the identity.
//
// GradientReducer sums the gradients of a step across ranks as DDP does. Parameters are packed
// into buckets of about kBucketBytes in reverse registration order, which is roughly the order
// in which backward finishes them. A hook on each parameter copies its finished gradient into
// its bucket during the last backward pass of the step; a full bucket is all-reduced at once,
// asynchronously, while backward goes on with the layers below. Buckets are launched in index
// order on every rank, whatever order the hooks fire in, because collectives must be issued in
// the same order everywhere. finish() launches what is left, waits, and writes the sums back.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "trainer/torch_compat.h"
#include "trainer/trainer.h"

namespace parcae::trainer {

inline constexpr int64_t kBucketBytes = 25 << 20;  // DDP's default bucket_cap_mb

class Communicator {
 public:
  Communicator() = default;  // one rank, no process group
  // Joins the group of `ranks` for tensors on `device`. Throws parcae::Error when this build has
  // no backend for the device (NCCL needs nccl.h at build time, Gloo its headers) or the
  // rendezvous fails; every rank must call it, in the same order as every other collective.
  Communicator(const RankOptions& ranks, const torch::Device& device);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_root() const { return rank_ == 0; }
  bool has_group() const { return group_.defined(); }
  const std::string& backend() const { return backend_; }  // "none", "gloo" or "nccl"

  // Sums `tensor` over ranks in place. The blocking form returns once the sum may be used on
  // the current stream; the async one returns the work to wait on (null without a group).
  void all_reduce_sum(torch::Tensor& tensor);
  compat::CollectiveWork all_reduce_sum_async(torch::Tensor& tensor);
  // Copies rank `root`'s tensor into every rank's.
  void broadcast(torch::Tensor& tensor, int root);
  // Returns on each rank once every rank has called it.
  void barrier();

 private:
  int rank_ = 0;
  int world_size_ = 1;
  std::string backend_ = "none";
  torch::Device device_ = torch::Device(torch::kCPU);
  compat::StorePointer store_;
  compat::GroupPointer group_;
};

class GradientReducer {
 public:
  // `parameters` in registration order, all on one device; gradients are summed, not averaged
  // (the loop scales each micro-batch's loss by 1 / global micro-batches). Hooks stay on the
  // parameters for the reducer's lifetime and act only between arm() and finish().
  GradientReducer(const std::vector<torch::Tensor>& parameters,
                  Communicator& communicator,
                  int64_t bucket_bytes = kBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before the backward pass that completes this rank's gradient for the step.
  void arm();
  // Call after that backward pass: launches the buckets the hooks left (parameters that got no
  // gradient contribute their accumulated .grad, or zeros), waits for every all-reduce, and
  // writes the sums into each parameter's .grad (defining it where it was undefined).
  void finish();

  int buckets() const { return static_cast<int>(buckets_.size()); }
  // Buckets the hooks launched before the last finish(), while backward ran: the overlap. A
  // bucket waits for every bucket before it, so a parameter without gradient (finished only by
  // finish()) holds back the buckets after its own.
  int buckets_launched_during_backward() const { return launched_during_backward_; }

 private:
  struct Slot {
    int bucket = 0;
    int64_t offset = 0;  // in elements, inside the bucket
    int64_t numel = 0;
    bool ready = false;
  };
  struct Bucket {
    torch::Tensor flat;        // (elements,), the parameters' dtype and device
    std::vector<int> members;  // parameter indices
    int pending = 0;           // members whose gradient has not arrived
    compat::CollectiveWork work;
    bool launched = false;
  };

  void on_gradient(int index, const torch::Tensor& grad);
  torch::Tensor view_of(int index);
  void launch_ready_buckets();  // holds mutex_

  std::vector<torch::Tensor> parameters_;
  std::vector<unsigned> hook_handles_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  Communicator& communicator_;
  std::mutex mutex_;
  bool armed_ = false;
  int next_launch_ = 0;
  int launched_during_backward_ = 0;
};

}  // namespace parcae::trainer
