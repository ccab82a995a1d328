// The process group of a data-parallel job, and bucketed gradient all-reduce during backward.
#include "trainer/distributed.h"

#include <algorithm>

#include "sweeps/error.h"

namespace parcae::trainer {
namespace {

// How long rank 0 waits for the others at the store (they may start seconds apart under srun).
constexpr auto kRendezvousTimeout = std::chrono::minutes(10);

std::string where(const RankOptions& ranks) {
  return ranks.master_addr + ":" + std::to_string(ranks.master_port);
}

}  // namespace

Communicator::Communicator(const RankOptions& ranks, const torch::Device& device)
    : rank_(ranks.rank), world_size_(ranks.world_size), device_(device) {
  if (device.is_cuda()) {
    if (!compat::kHasNccl) {
      throw Error("this parcae-train was built without NCCL (nccl.h was not found), so ranks on " +
                  std::string("GPUs cannot meet; rebuild with -DPARCAE_NCCL_ROOT=DIR"));
    }
    backend_ = "nccl";
  } else {
    if (!compat::kHasGloo) {
      throw Error(
          "this parcae-train was built without Gloo (gloo/algorithm.h was not found), so ranks on "
          "the CPU cannot meet; install libgloo-dev and rebuild");
    }
    backend_ = "gloo";
  }
  try {
    store_ = compat::make_tcp_store(
        ranks.master_addr, ranks.master_port, rank_ == 0, world_size_, kRendezvousTimeout);
    group_ = device.is_cuda()
                 ? compat::make_nccl_group(store_, rank_, world_size_)
                 : compat::make_gloo_group(store_, rank_, world_size_, ranks.master_addr);
  } catch (const c10::Error& e) {
    throw Error("rank " + std::to_string(rank_) + " of " + std::to_string(world_size_) +
                " cannot join the " + backend_ + " group at " + where(ranks) + ": " +
                e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(rank_) + " of " + std::to_string(world_size_) +
                " cannot join the " + backend_ + " group at " + where(ranks) + ": " + e.what());
  }
}

Communicator::~Communicator() = default;

compat::CollectiveWork Communicator::all_reduce_sum_async(torch::Tensor& tensor) {
  if (!group_.defined())
    return {};
  std::vector<torch::Tensor> tensors = {tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  return group_->allreduce(tensors, options);
}

void Communicator::all_reduce_sum(torch::Tensor& tensor) {
  const compat::CollectiveWork work = all_reduce_sum_async(tensor);
  if (work.defined())
    work->wait();
}

void Communicator::broadcast(torch::Tensor& tensor, int root) {
  if (!group_.defined())
    return;
  std::vector<torch::Tensor> tensors = {tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  group_->broadcast(tensors, options)->wait();
}

void Communicator::barrier() {
  if (!group_.defined())
    return;
  // An all-reduce rather than c10d's barrier, which on NCCL has to guess the device.
  torch::Tensor token = torch::ones({1}, torch::TensorOptions().device(device_));
  all_reduce_sum(token);
  (void)token.item<float>();  // waits for the GPU too
}

GradientReducer::GradientReducer(const std::vector<torch::Tensor>& parameters,
                                 Communicator& communicator,
                                 int64_t bucket_bytes)
    : parameters_(parameters), slots_(parameters.size()), communicator_(communicator) {
  // Reverse order: the head and the last layers finish their gradients first.
  int64_t filled_bytes = 0;
  for (int i = static_cast<int>(parameters_.size()) - 1; i >= 0; --i) {
    const torch::Tensor& p = parameters_[static_cast<size_t>(i)];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits =
        !buckets_.empty() && filled_bytes + bytes <= bucket_bytes &&
        parameters_[static_cast<size_t>(buckets_.back().members.front())].dtype() == p.dtype();
    if (!fits) {
      buckets_.emplace_back();
      filled_bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    Slot& slot = slots_[static_cast<size_t>(i)];
    slot.bucket = static_cast<int>(buckets_.size()) - 1;
    slot.numel = p.numel();
    slot.offset = 0;
    for (const int member : bucket.members)
      slot.offset += slots_[static_cast<size_t>(member)].numel;
    bucket.members.push_back(i);
    filled_bytes += bytes;
  }
  for (Bucket& bucket : buckets_) {
    int64_t elements = 0;
    for (const int member : bucket.members)
      elements += slots_[static_cast<size_t>(member)].numel;
    const torch::Tensor& first = parameters_[static_cast<size_t>(bucket.members.front())];
    bucket.flat = torch::zeros({elements}, first.options().requires_grad(false));
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const int index = static_cast<int>(i);
    hook_handles_.push_back(parameters_[i].register_hook(
        [this, index](const torch::Tensor& grad) { on_gradient(index, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < parameters_.size(); ++i)
    parameters_[i].remove_hook(hook_handles_[i]);
}

torch::Tensor GradientReducer::view_of(int index) {
  const Slot& slot = slots_[static_cast<size_t>(index)];
  return buckets_[static_cast<size_t>(slot.bucket)]
      .flat.narrow(0, slot.offset, slot.numel)
      .view(parameters_[static_cast<size_t>(index)].sizes());
}

void GradientReducer::arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& slot : slots_)
    slot.ready = false;
  for (Bucket& bucket : buckets_) {
    bucket.pending = static_cast<int>(bucket.members.size());
    bucket.launched = false;
    bucket.work = {};
  }
  next_launch_ = 0;
  armed_ = true;
}

void GradientReducer::on_gradient(int index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_)
    return;
  Slot& slot = slots_[static_cast<size_t>(index)];
  if (slot.ready)
    return;
  // The hook runs before autograd adds `grad` to .grad, so the step's gradient on this rank is
  // what earlier micro-batches accumulated plus `grad`.
  torch::NoGradGuard no_grad;
  torch::Tensor view = view_of(index);
  const torch::Tensor& accumulated = parameters_[static_cast<size_t>(index)].grad();
  if (accumulated.defined()) {
    torch::add_out(view, accumulated, grad);
  } else {
    view.copy_(grad);
  }
  slot.ready = true;
  if (--buckets_[static_cast<size_t>(slot.bucket)].pending == 0)
    launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < static_cast<int>(buckets_.size()) &&
         buckets_[static_cast<size_t>(next_launch_)].pending == 0) {
    Bucket& bucket = buckets_[static_cast<size_t>(next_launch_)];
    bucket.work = communicator_.all_reduce_sum_async(bucket.flat);
    bucket.launched = true;
    ++next_launch_;
  }
}

void GradientReducer::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  TORCH_CHECK(armed_, "GradientReducer::finish() without arm()");
  torch::NoGradGuard no_grad;
  launched_during_backward_ = next_launch_;
  for (Bucket& bucket : buckets_) {
    if (bucket.pending == 0)
      continue;
    for (const int member : bucket.members) {
      Slot& slot = slots_[static_cast<size_t>(member)];
      if (slot.ready)
        continue;
      const torch::Tensor& accumulated = parameters_[static_cast<size_t>(member)].grad();
      torch::Tensor view = view_of(member);
      if (accumulated.defined()) {
        view.copy_(accumulated);
      } else {
        view.zero_();
      }
      slot.ready = true;
    }
    bucket.pending = 0;
  }
  launch_ready_buckets();
  for (Bucket& bucket : buckets_) {
    if (bucket.work.defined())
      bucket.work->wait();
    bucket.work = {};
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    torch::Tensor& p = parameters_[i];
    const torch::Tensor sum = view_of(static_cast<int>(i));
    if (p.grad().defined()) {
      p.mutable_grad().copy_(sum);
    } else {
      p.mutable_grad() = sum.clone();
    }
  }
  armed_ = false;
}

}  // namespace parcae::trainer
