// train(): job file -> model, data, optimizer -> steps, evaluations, checkpoints, events.
//
// One optimizer step (parcae.md §6, §8): draw every micro-batch's depth plan of the global batch
// from the seeded streams, optionally sort the rows by depth (bucketing), take this rank's
// micro-batches (global micro-batch j belongs to rank j mod world_size), read their rows, run
// forward and backward per micro-batch with the loss scaled by 1/(global micro-batches), sum the
// gradients over ranks during the last backward, clip the global gradient norm, skip the update
// when that norm is not finite, and stop the run when the loss is not finite. Every draw is keyed
// by the global micro-batch or row, so any world size trains what one rank trains.
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

#include "sweeps/error.h"
#include "sweeps/flop_model.h"
#include "sweeps/job_config.h"
#include "sweeps/run_contract.h"
#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "trainer/distributed.h"
#include "trainer/events.h"
#include "trainer/injection_diagnostics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/sampling.h"
#include "trainer/torch_compat.h"
#include "trainer/trainer.h"

#ifndef PARCAE_VERSION
#define PARCAE_VERSION "unknown"
#endif

namespace parcae::trainer {
namespace {

// log rho(A-bar), the mean decay and the RMS of h_T go into every N-th step event (and the
// first), which [P] (appendix `stability.tex`) reads to diagnose divergence.
constexpr int64_t kStabilityIntervalSteps = 10;

bool reports_stability(const sweeps::ModelConfig& config, int64_t number) {
  return config.is_looped() && (number == 1 || number % kStabilityIntervalSteps == 0);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string printf_string(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

// The job's device; on CUDA, GPU `local_rank` when several are visible (srun with every GPU of
// the node visible to every task), else the only one (the launcher gives each rank one GPU).
torch::Device choose_device(const sweeps::JobConfig& job,
                            const std::string& job_file,
                            int local_rank) {
  if (job.device == "cpu")
    return torch::Device(torch::kCPU);
  if (compat::cuda_available()) {
    const int count = compat::cuda_device_count();
    const int index = count == 1 ? 0 : local_rank;
    if (index >= count) {
      throw InputError("(environment)",
                       "LOCAL_RANK",
                       std::to_string(local_rank),
                       "expected a GPU index below the " + std::to_string(count) + " visible GPUs");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  if (job.device == "cuda") {
    throw InputError(job_file,
                     "device",
                     "\"cuda\"",
                     "no CUDA device is visible to this build of parcae-train (LibTorch " +
                         compat::libtorch_version() + ")",
                     "use \"auto\" or \"cpu\"");
  }
  return torch::Device(torch::kCPU);
}

struct StepOutcome {
  double loss = 0.0;       // mean over the step's rows
  double grad_norm = 0.0;  // before clipping
  bool skipped = false;    // non-finite grad norm: no update
  double mean_depth = 1.0;
  double seconds = 0.0;
  double h_rms = std::numeric_limits<double>::quiet_NaN();  // of h_T, last global micro-batch
  // Loop iterations this rank computed per row, all and graded (the plan's, unless masked).
  double executed_depth = 0.0;
  double executed_graded_depth = 0.0;
  bool stop = false;  // a stop was requested on some rank: every rank checkpoints and stops
  // Of the injection's decay after the update, on the steps that report stability.
  bool decay_reported = false;
  double log_rho = 0.0;
  double mean_decay = 0.0;
};

// What the device sums for a step, read back once, in this order.
enum StepFigure : int64_t {
  kLossSum,        // loss over this step's micro-batches, summed over ranks
  kStateSquares,   // sum of h_T^2, last global micro-batch
  kStateElements,  // elements of h_T summed there
  kStopRequests,   // ranks asked to stop
  kGradNorm,       // before clipping
  kLogRho,         // these two only where the step reports stability
  kMeanDecay,
};

// A step whose work is queued on the device: what the host knew when it queued it, and where the
// device's figures for it arrive.
struct LaunchedStep {
  int64_t step = 0;
  Clock::time_point start;
  double mean_depth = 1.0;
  double executed_depth = 0.0;
  double executed_graded_depth = 0.0;
  torch::Tensor figures;        // StepFigure, on the host (pinned memory for a GPU)
  compat::DeviceFence arrived;  // passed once `figures` hold the step's values
};

// The rank of a process that trains alone.
RankOptions single_rank() {
  return RankOptions{};
}

class Trainer {
 public:
  Trainer(const TrainOptions& options, EventLog* events, int64_t& current_step)
      : options_(options),
        ranks_(options.ranks.value_or(single_rank())),
        events_(events),
        current_step_(current_step),
        job_(sweeps::read_job_file(options.job_path)),
        device_(choose_device(job_, options.job_path, ranks_.local_rank)) {}

  TrainResult run() {
    const Clock::time_point session_start = Clock::now();
    setup();
    TrainResult result;
    result.steps = step_;
    result.tokens = tokens_;
    result.flops = flops_;
    result.loss_train = loss_train_;
    emit_start();

    // A step's figures are read back while the next step runs: the host queues step s + 1 before
    // it waits for step s, so that the GPU never waits for the host between steps. Evaluations,
    // checkpoints, stops and the last step wait for the step before them instead.
    std::optional<LaunchedStep> queued;
    for (; step_ < max_steps_; ++step_) {
      profile(step_, /*before_step=*/true);
      LaunchedStep current = launch_step(step_);
      profile(step_, /*before_step=*/false);
      bool stop = false;
      if (queued) {
        const StepOutcome previous = finish_step(*queued);
        queued.reset();
        if (!std::isfinite(previous.loss)) {
          result.status = TrainStatus::kDiverged;  // the step queued after it is dropped
          break;
        }
        stop = previous.stop;
      }
      const int64_t done_steps = step_ + 1;
      const bool last = done_steps == max_steps_;
      const int64_t eval_every = job_.eval.interval_steps;
      const bool evaluate_now = !last && eval_every > 0 && done_steps % eval_every == 0;
      const int64_t checkpoint_every = job_.checkpoint_interval_steps;
      const bool checkpoint_now =
          last || (checkpoint_every > 0 && done_steps % checkpoint_every == 0);
      // The linear adapter's spectral radius is measured on the host, from weights that the
      // next step must not have updated yet.
      const bool measure_adapter = reports_stability(job_.model, done_steps) &&
                                   model_->injection->kind == sweeps::Injection::kLinear;
      if (!stop && !evaluate_now && !checkpoint_now && !measure_adapter) {
        queued = std::move(current);
        continue;
      }
      const StepOutcome outcome = finish_step(current);
      if (!std::isfinite(outcome.loss)) {
        result.status = TrainStatus::kDiverged;
        break;
      }
      stop = stop || outcome.stop;
      if (evaluate_now) {
        evaluate(done_steps, false);
        step_clock_.reset();
      }
      if (stop || checkpoint_now) {
        result.checkpoint = checkpoint(done_steps, session_start);
        step_clock_.reset();
      }
      if (stop && !last) {
        ++step_;
        result.status = TrainStatus::kPreempted;
        emit(sweeps::kEventPreempted, done_steps, nlohmann::json::object());
        say(printf_string("preempted after step %lld; checkpoint %s",
                          static_cast<long long>(done_steps),
                          result.checkpoint.c_str()));
        break;
      }
    }
    result.steps = current_step_;
    result.tokens = tokens_;
    result.flops = flops_;
    result.loss_train = loss_train_;
    result.wall_time_s = previous_wall_time_s_ + seconds_since(session_start);
    if (result.status == TrainStatus::kPreempted)
      return result;
    if (result.status == TrainStatus::kDone) {
      if (step_ == start_step_ && result.checkpoint.empty()) {
        // Resumed from the final checkpoint: nothing left to train, only to evaluate again.
        result.checkpoint = latest_checkpoint(options_.out_dir).value_or("");
      }
      result.loss_val = evaluate(max_steps_, true);
    }
    emit(sweeps::kEventDone,
         current_step_,
         {{"status", to_string(result.status)},
          {"tokens", result.tokens},
          {"flops", result.flops},
          {"loss_train", result.loss_train},
          {"loss_val", result.loss_val},
          {"wall_time_s", result.wall_time_s},
          {"data_epochs", windows_->epochs_drawn()},
          {"peak_memory_bytes", compat::peak_memory_bytes(device_)}});
    return result;
  }

 private:
  void say(const std::string& line) {
    if (options_.progress != nullptr && ranks_.rank == 0)
      *options_.progress << "parcae-train: " << line << std::endl;
  }

  // Starts the profiler before step profile_first_step and writes its trace after the last
  // profiled step, when a trace was asked for.
  void profile(int64_t step, bool before_step) {
    if (options_.profile_path.empty() || ranks_.rank != 0)
      return;
    const int64_t first = options_.profile_first_step;
    if (before_step && step == first) {
      profiling_ = compat::start_profiler();
      if (!profiling_)
        say("--profile: this build of LibTorch has no Kineto profiler; no trace written");
    } else if (!before_step && profiling_ &&
               (step + 1 == first + options_.profile_steps || step + 1 == max_steps_)) {
      if (device_.is_cuda())
        torch::cuda::synchronize();  // the traced steps' optimizer kernels end in the trace
      compat::stop_profiler(options_.profile_path);
      step_clock_.reset();
      profiling_ = false;
      say("profile of steps " + std::to_string(first + 1) + "-" + std::to_string(step + 1) +
          " written to " + options_.profile_path);
    }
  }

  // Rank 0 writes the events; the other ranks have no EventLog.
  void emit(const std::string& type, int64_t step, const nlohmann::json& fields) {
    if (events_ != nullptr)
      events_->write(type, step, fields);
  }

  void setup() {
    const sweeps::ModelConfig& config = job_.model;
    if (!options_.ranks && job_.gpus != 1) {
      throw InputError(options_.job_path,
                       "gpus",
                       std::to_string(job_.gpus),
                       "expected 1 for a run without rank variables",
                       "start it with parcae-train, which launches the ranks, or set RANK, "
                       "WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
    }
    if (options_.ranks && job_.gpus != ranks_.world_size) {
      throw InputError(options_.job_path,
                       "gpus",
                       std::to_string(job_.gpus),
                       "expected the world size " + std::to_string(ranks_.world_size) + " set by " +
                           (ranks_.source.empty() ? std::string("the caller") : ranks_.source));
    }
    seq_ = config.context_length;
    rows_per_step_ = job_.training.batch_tokens / seq_;
    micro_rows_ = job_.training.micro_batch_size;
    global_micro_ = rows_per_step_ / micro_rows_;
    local_micro_ = global_micro_ / ranks_.world_size;
    max_steps_ = job_.max_steps();
    flops_per_token_ = sweeps::train_flops_per_token(config, job_.flop_convention);
    autocast_ = device_.is_cuda() && job_.training.precision == "bf16";

    // Data first: a bad shard is bad input and must be reported before any compute.
    windows_.emplace(job_.data, config.vocab_size, seq_, job_.seed, options_.job_path);
    validation_ = validation_rows(
        job_.data, config.vocab_size, seq_, job_.eval.val_sequences, options_.job_path);

    // After the input checks, so that bad input fails every rank before any rank waits.
    compat::set_current_device(device_);
    if (options_.ranks)
      communicator_ = std::make_unique<Communicator>(*options_.ranks, device_);
    else
      communicator_ = std::make_unique<Communicator>();

    torch::manual_seed(job_.seed);
    ModelOptions model_options;
    model_options.unconstrained_decay = job_.training.unconstrained_decay;
    if (options_.aten_kernels)
      model_options.kernels = KernelPath::kAten;
    model_ = LanguageModel(config, model_options);
    model_->to(device_);
    std::vector<NamedParameter> parameters;
    for (const auto& item : model_->named_parameters()) {
      parameters.push_back({item.key(), item.value()});
    }
    optimizer_.emplace(parameters,
                       job_.training,
                       max_steps_,
                       device_.is_cuda() ? torch::kBFloat16 : torch::kFloat,
                       model_options.kernels.value_or(KernelPath::kFused));

    if (const auto path = latest_checkpoint(options_.out_dir)) {
      const CheckpointMeta meta =
          load_checkpoint(*path, job_.id(), options_.job_path, *model_, *optimizer_, device_);
      step_ = meta.step;
      tokens_ = meta.tokens;
      flops_ = meta.flops;
      loss_train_ = meta.loss_train;
      previous_wall_time_s_ = meta.wall_time_s;
      windows_->set_cursor(meta.data_cursor);
      resumed_ = true;
      say(printf_string(
          "resuming from %s (step %lld)", path->c_str(), static_cast<long long>(step_)));
    }
    start_step_ = step_;
    current_step_ = step_;
    if (communicator_->has_group())
      synchronize_ranks(parameters);
  }

  // Every rank starts from rank 0's weights, and all must have resumed from the same checkpoint.
  void synchronize_ranks(const std::vector<NamedParameter>& parameters) {
    torch::NoGradGuard no_grad;
    torch::Tensor position =
        torch::tensor({step_, windows_->cursor()}, torch::TensorOptions().dtype(torch::kLong))
            .to(device_);
    communicator_->broadcast(position, 0);
    const int64_t root_step = position[0].item<int64_t>();
    if (root_step != step_ || position[1].item<int64_t>() != windows_->cursor()) {
      throw Error("rank " + std::to_string(ranks_.rank) + " starts at step " +
                  std::to_string(step_) + " but rank 0 at step " + std::to_string(root_step) +
                  ": the ranks see different checkpoints in " + options_.out_dir);
    }
    std::vector<torch::Tensor> tensors;
    for (const auto& parameter : parameters) {
      torch::Tensor data = parameter.tensor.detach();
      communicator_->broadcast(data, 0);
      tensors.push_back(parameter.tensor);
    }
    reducer_ = std::make_unique<GradientReducer>(tensors, *communicator_);
  }

  void emit_start() {
    const sweeps::ParameterCounts counts = sweeps::count_parameters(job_.model);
    emit(sweeps::kEventStart,
         step_,
         {{"job_id", job_.id()},
          {"resumed", resumed_},
          {"versions",
           {{"parcae", PARCAE_VERSION},
            {"libtorch", compat::libtorch_version()},
            {"cuda", compat::cuda_version()}}},
          {"device", compat::device_name(device_)},
          {"world_size", ranks_.world_size},
          {"parameters",
           {{"total", model_->parameter_count()},
            {"noncore", counts.noncore},
            {"core", counts.core},
            {"embedding", counts.embedding}}},
          {"flops_per_token", flops_per_token_},
          {"model_flops_per_token", sweeps::model_flops_per_token(job_.model)},
          {"max_steps", max_steps_},
          {"train_tokens", job_.train_tokens},
          {"seed", job_.seed},
          {"budget_flops", job_.budget_flops},
          {"data", windows_->summary()},
          {"events_version", kEventsVersion}});
    say(printf_string("%s job %s on %s: %lld parameters, %lld steps of %lld tokens, F = %lld",
                      resumed_ ? "resumed" : "started",
                      job_.id().c_str(),
                      compat::device_name(device_).c_str(),
                      static_cast<long long>(model_->parameter_count()),
                      static_cast<long long>(max_steps_),
                      static_cast<long long>(job_.training.batch_tokens),
                      static_cast<long long>(flops_per_token_)));
  }

  // Queues step `step` on the device: forward, backward, clipping, and the update unless the loss
  // or the gradient norm is not finite (decided there), then the copy of its figures to the host.
  LaunchedStep launch_step(int64_t step) {
    const Clock::time_point start = Clock::now();
    const sweeps::ModelConfig& config = job_.model;
    const int rank = ranks_.rank;
    const int world = ranks_.world_size;
    // Every rank draws the plans of the whole global batch (a few integers a row), so that the
    // bucketing order and the mean depth are global without communication.
    std::vector<DepthPlan> plans;
    for (int64_t j = 0; j < global_micro_; ++j) {
      plans.push_back(draw_depth_plan(config,
                                      static_cast<int>(micro_rows_),
                                      step_stream_seed(job_.seed, Stream::kDepth, step, j)));
    }
    const DepthPlan all = concatenate(plans);
    std::vector<int> order(static_cast<size_t>(rows_per_step_));
    std::iota(order.begin(), order.end(), 0);
    if (job_.training.depth_bucketing && config.is_looped() &&
        config.depth_granularity == sweeps::DepthGranularity::kPerSequence) {
      order = bucketing_order(all);
      for (int64_t j = 0; j < global_micro_; ++j) {
        DepthPlan& plan = plans[static_cast<size_t>(j)];
        for (int64_t i = 0; i < micro_rows_; ++i) {
          const auto row = static_cast<size_t>(order[static_cast<size_t>(j * micro_rows_ + i)]);
          plan.no_grad[static_cast<size_t>(i)] = all.no_grad[row];
          plan.graded[static_cast<size_t>(i)] = all.graded[row];
        }
      }
    }
    // This rank's rows: those of global micro-batches rank, rank + world, ... in that order.
    const int64_t first_row = windows_->cursor();
    std::vector<int64_t> mine;
    for (int64_t l = 0; l < local_micro_; ++l) {
      const int64_t j = l * world + rank;
      for (int64_t i = 0; i < micro_rows_; ++i)
        mine.push_back(first_row + order[static_cast<size_t>(j * micro_rows_ + i)]);
    }
    // (local rows, seq + 1), copied to the device once for the whole step, without waiting.
    // Read straight into page-locked memory: staging 32 x 2049 tokens through pin_memory() took
    // 6-7 ms of host time a step (H100 trace), while the GPU waited for the step's first kernel.
    const torch::Tensor rows =
        compat::to_device(windows_->at(mine, /*pinned=*/device_.is_cuda()), device_);
    windows_->set_cursor(first_row + rows_per_step_);

    LaunchedStep launched;
    launched.step = step;
    launched.start = start;
    launched.mean_depth = config.is_looped() ? all.mean_depth() : 1.0;
    model_->reset_loop_work();
    // The figures up to the stop requests are summed over ranks in one call; then the gradient
    // norm, the same on every rank. The step's one copy back to the host, read a step later.
    torch::Tensor stats =
        torch::zeros({kLogRho}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
    torch::Tensor loss_sum = stats[kLossSum];  // a view: adds land in stats
    for (int64_t l = 0; l < local_micro_; ++l) {
      const int64_t j = l * world + rank;
      const torch::Tensor batch = rows.narrow(0, l * micro_rows_, micro_rows_);
      const torch::Tensor inputs = batch.narrow(1, 0, seq_);
      const torch::Tensor targets = batch.narrow(1, 1, seq_);
      torch::Tensor h0;
      if (config.is_looped()) {
        at::Generator generator = compat::make_generator(
            device_, step_stream_seed(job_.seed, Stream::kInitialState, step, j));
        h0 = model_->sample_initial_state(micro_rows_, seq_, generator);
      }
      ModelLoss output;
      {
        compat::AutocastGuard autocast(device_.type(), torch::kBFloat16, autocast_);
        output = model_->loss(inputs, targets, plans[static_cast<size_t>(j)], h0);
      }
      const torch::Tensor& loss = output.loss;
      if (reducer_ != nullptr && l + 1 == local_micro_)
        reducer_->arm();
      (loss / static_cast<double>(global_micro_)).backward();
      loss_sum += loss.detach().to(torch::kDouble);
      if (j + 1 == global_micro_ && output.state.defined()) {
        torch::NoGradGuard no_grad;
        stats[kStateSquares].add_(output.state.detach().to(torch::kDouble).square().sum());
        stats[kStateElements].add_(static_cast<double>(output.state.numel()));
      }
    }
    if (reducer_ != nullptr)
      reducer_->finish();
    const LanguageModelImpl::LoopWork work = model_->loop_work();
    if (work.rows > 0) {
      launched.executed_depth =
          static_cast<double>(work.iterations) / static_cast<double>(work.rows);
      launched.executed_graded_depth =
          static_cast<double>(work.graded_iterations) / static_cast<double>(work.rows);
    }
    if (options_.stop_requested != nullptr && options_.stop_requested->load())
      stats[kStopRequests].fill_(1.0);
    communicator_->all_reduce_sum(stats);
    stats[kGradNorm].copy_(clip_gradient_norm(model_->parameters(), job_.training.grad_clip));
    {
      torch::NoGradGuard no_grad;
      const torch::Tensor apply = torch::isfinite(stats[kLossSum])
                                      .logical_and(torch::isfinite(stats[kGradNorm]))
                                      .to(torch::kFloat);
      optimizer_->step(step, apply);
    }
    model_->zero_grad(/*set_to_none=*/true);
    torch::Tensor figures = stats;
    if (reports_stability(config, step + 1)) {
      torch::NoGradGuard no_grad;
      const torch::Tensor log_decay = model_->injection->log_decay();
      if (log_decay.defined()) {
        const torch::Tensor decay = log_decay.to(stats.device());
        figures = torch::cat({stats, decay.max().reshape({1}), decay.exp().mean().reshape({1})});
      }
    }
    launched.figures = torch::empty(
        figures.sizes(), figures.options().device(torch::kCPU).pinned_memory(device_.is_cuda()));
    launched.figures.copy_(figures, /*non_blocking=*/true);
    launched.arrived.record(device_);
    return launched;
  }

  // Waits for a launched step's figures, then counts and emits the step. A step's time runs from
  // the arrival of the previous step's figures (or this step's launch, after other work) to the
  // arrival of its own.
  StepOutcome finish_step(LaunchedStep& launched) {
    launched.arrived.wait();
    const Clock::time_point arrived = Clock::now();
    StepOutcome outcome;
    outcome.seconds =
        std::chrono::duration<double>(arrived - step_clock_.value_or(launched.start)).count();
    step_clock_ = arrived;
    outcome.mean_depth = launched.mean_depth;
    outcome.executed_depth = launched.executed_depth;
    outcome.executed_graded_depth = launched.executed_graded_depth;
    const auto* figure = launched.figures.data_ptr<double>();
    outcome.loss = figure[kLossSum] / static_cast<double>(global_micro_);
    if (figure[kStateElements] > 0.0)
      outcome.h_rms = std::sqrt(figure[kStateSquares] / figure[kStateElements]);
    outcome.stop = figure[kStopRequests] > 0.0;
    outcome.grad_norm = figure[kGradNorm];
    outcome.skipped = std::isfinite(outcome.loss) && !std::isfinite(outcome.grad_norm);
    if (launched.figures.numel() > kMeanDecay) {
      outcome.decay_reported = true;
      outcome.log_rho = figure[kLogRho];
      outcome.mean_decay = figure[kMeanDecay];
    }
    tokens_ += job_.training.batch_tokens;
    flops_ = static_cast<double>(tokens_) * static_cast<double>(flops_per_token_);
    current_step_ = launched.step + 1;
    loss_train_ = outcome.loss;
    emit_step(launched.step, outcome);
    return outcome;
  }

  void emit_step(int64_t step, const StepOutcome& outcome) {
    if (!communicator_->is_root())
      return;
    const StepHyperparameters hp = optimizer_->hyperparameters(step);
    const int64_t number = step + 1;
    nlohmann::json fields = {
        {"tokens", tokens_},
        {"flops", flops_},
        {"loss", outcome.loss},
        {"lr_adamw", hp.lr_adamw},
        {"lr_muon", hp.lr_muon},
        {"grad_norm", outcome.grad_norm},
        {"tokens_per_s", static_cast<double>(job_.training.batch_tokens) / outcome.seconds},
        {"skipped", outcome.skipped},
        {"mean_depth", outcome.mean_depth}};
    if (reports_stability(job_.model, number)) {
      if (model_->injection->kind == sweeps::Injection::kLinear) {
        torch::NoGradGuard no_grad;
        fields["log_rho"] = adapter_log_spectral_radius(*model_->injection, job_.seed);
      } else if (outcome.decay_reported) {
        fields["log_rho"] = outcome.log_rho;
        fields["mean_decay"] = outcome.mean_decay;
      }
      if (std::isfinite(outcome.h_rms))
        fields["h_rms"] = outcome.h_rms;
    }
    if (job_.model.is_looped()) {
      fields["executed_depth"] = outcome.executed_depth;
      fields["executed_model_flops_per_token"] = sweeps::model_flops_per_token_at(
          job_.model, outcome.executed_depth, outcome.executed_graded_depth);
    }
    emit(sweeps::kEventStep, number, fields);
    const int64_t every = std::max<int64_t>(1, max_steps_ / 100);
    if (number == 1 || number % every == 0 || number == max_steps_ ||
        !std::isfinite(outcome.loss)) {
      say(printf_string("step %lld/%lld loss %.4f lr %.2e grad norm %.3f%s tokens/s %.0f",
                        static_cast<long long>(number),
                        static_cast<long long>(max_steps_),
                        outcome.loss,
                        hp.lr_adamw,
                        outcome.grad_norm,
                        outcome.skipped ? " (skipped)" : "",
                        static_cast<double>(job_.training.batch_tokens) / outcome.seconds));
    }
  }

  // Validation loss at each test-time depth; emits one eval event per depth. With `final`, also
  // evaluates T = mu_rec when the grid lacks it, and returns the loss at mu_rec (the only depth
  // of a Transformer). Otherwise returns NaN.
  double evaluate(int64_t done_steps, bool final) {
    const sweeps::ModelConfig& config = job_.model;
    std::vector<int> depths = config.is_looped() ? job_.eval.depths : std::vector<int>{1};
    const bool fixed = config.depth_sampler == sweeps::DepthSampler::kFixed;
    const int reference = config.is_looped() && !fixed ? config.mean_recurrence : 1;
    if (final && std::find(depths.begin(), depths.end(), reference) == depths.end()) {
      depths.push_back(reference);
    }
    torch::NoGradGuard no_grad;
    const int64_t rows = validation_.size(0);
    double reference_loss = std::numeric_limits<double>::quiet_NaN();
    for (const int depth : depths) {
      torch::Tensor total =
          torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
      // Validation micro-batch `index` belongs to rank index mod world_size.
      int64_t index = ranks_.rank;
      for (int64_t first = index * micro_rows_; first < rows;
           first += micro_rows_ * ranks_.world_size, index += ranks_.world_size) {
        const int64_t n = std::min<int64_t>(micro_rows_, rows - first);
        const torch::Tensor batch = compat::to_device(validation_.narrow(0, first, n), device_);
        torch::Tensor h0;
        if (config.is_looped())
          h0 = evaluation_initial_state(*model_, job_.eval.eval_seed, first, n, seq_, device_);
        ModelLoss output;
        {
          compat::AutocastGuard autocast(device_.type(), torch::kBFloat16, autocast_);
          output = model_->loss(batch.narrow(1, 0, seq_),
                                batch.narrow(1, 1, seq_),
                                DepthPlan::uniform(static_cast<int>(n), depth, 0),
                                h0,
                                LossReduction::kSum);
        }
        total += output.loss.to(torch::kDouble);
      }
      communicator_->all_reduce_sum(total);
      const double loss = total.item<double>() / static_cast<double>(rows * seq_);
      emit(sweeps::kEventEval, done_steps, {{"tokens", tokens_}, {"depth", depth}, {"loss", loss}});
      say(printf_string(
          "eval step %lld depth %d loss %.4f", static_cast<long long>(done_steps), depth, loss));
      if (depth == reference)
        reference_loss = loss;
    }
    return final ? reference_loss : std::numeric_limits<double>::quiet_NaN();
  }

  std::string checkpoint(int64_t done_steps, Clock::time_point session_start) {
    CheckpointMeta meta;
    meta.job_id = job_.id();
    meta.step = done_steps;
    meta.data_cursor = windows_->cursor();
    meta.tokens = tokens_;
    meta.flops = flops_;
    meta.loss_train = loss_train_;
    meta.wall_time_s = previous_wall_time_s_ + seconds_since(session_start);
    meta.seed = job_.seed;
    meta.rank = ranks_.rank;
    meta.world_size = ranks_.world_size;
    meta.job = sweeps::to_json(job_);
    std::string path;
    if (communicator_->is_root()) {
      path = save_checkpoint(options_.out_dir, *model_, *optimizer_, meta);
      emit(sweeps::kEventCheckpoint, done_steps, {{"path", path}});
    }
    // The other ranks go on (or exit, when preempted) only once the checkpoint exists.
    communicator_->barrier();
    return path;
  }

  const TrainOptions& options_;
  RankOptions ranks_;
  EventLog* events_;       // null on ranks other than 0
  int64_t& current_step_;  // for the error event
  sweeps::JobConfig job_;
  torch::Device device_;
  bool autocast_ = false;
  int64_t seq_ = 0;
  int64_t rows_per_step_ = 0;  // global batch, all ranks
  int64_t micro_rows_ = 0;
  int64_t global_micro_ = 0;  // micro-batches per step over all ranks
  int64_t local_micro_ = 0;   // on this rank
  int64_t max_steps_ = 0;
  int64_t flops_per_token_ = 0;

  std::optional<TrainRows> windows_;
  torch::Tensor validation_;
  LanguageModel model_{nullptr};
  std::optional<MuonAdamW> optimizer_;
  std::unique_ptr<Communicator> communicator_;
  std::unique_ptr<GradientReducer> reducer_;  // only with a process group

  int64_t step_ = 0;  // optimizer steps completed
  // When the last step's read back returned, unless other work (evaluation, a checkpoint, a
  // trace written) came since: the start of the next step's time.
  std::optional<Clock::time_point> step_clock_;
  int64_t start_step_ = 0;
  int64_t tokens_ = 0;
  double flops_ = 0.0;
  double loss_train_ = std::numeric_limits<double>::quiet_NaN();
  double previous_wall_time_s_ = 0.0;
  bool resumed_ = false;
  bool profiling_ = false;
};

std::string error_message(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) {
    return torch_error->what_without_backtrace();
  }
  return e.what();
}

}  // namespace

std::string to_string(TrainStatus status) {
  switch (status) {
    case TrainStatus::kDone:
      return sweeps::kStatusDone;
    case TrainStatus::kDiverged:
      return sweeps::kStatusDiverged;
    case TrainStatus::kPreempted:
      return "preempted";
  }
  return "?";
}

std::string TrainResult::summary() const {
  return printf_string(
      "%s after %lld steps: %lld tokens, %.4g FLOPs, train loss %.4f, val loss %.4f, %.1f s",
      to_string(status).c_str(),
      static_cast<long long>(steps),
      static_cast<long long>(tokens),
      flops,
      loss_train,
      loss_val,
      wall_time_s);
}

TrainResult train(const TrainOptions& options) {
  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) {
    throw InputError("", "--out", options.out_dir, "cannot be created: " + error.message());
  }
  std::optional<EventLog> events;
  if (!options.ranks || options.ranks->rank == 0) {
    remove_temporaries(options.out_dir);
    events.emplace((std::filesystem::path(options.out_dir) / sweeps::kEventsFileName).string());
  }
  int64_t current_step = 0;
  try {
    Trainer trainer(options, events ? &*events : nullptr, current_step);
    return trainer.run();
  } catch (const std::exception& e) {
    try {
      if (events)
        events->write(sweeps::kEventError, current_step, {{"message", error_message(e)}});
    } catch (const std::exception&) {
      // The original error matters more than a failure to log it.
    }
    if (dynamic_cast<const Error*>(&e) != nullptr)
      throw;
    throw Error(error_message(e));
  }
}

}  // namespace parcae::trainer
