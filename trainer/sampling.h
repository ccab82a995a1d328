// Seeded randomness of a run that must replay exactly on resume: the per-sequence depth draws of
// parcae.md §6 and the seeds of every stream (depths, h0, data windows, evaluation).
//
// DECISION (parcae.md §6): every draw comes from a counter-based stream keyed by (run seed,
// optimizer step, micro-batch index in the global batch, purpose), so a run resumed at step s
// draws exactly what an uninterrupted run draws at step s, with no generator state to save, and
// the ranks of a data-parallel run draw for their micro-batches what one rank would. The generator
// is splitmix64 and the Poisson sampler is written here, so draws are the same on every platform
// and standard library. Nothing here depends on LibTorch.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "sweeps/flop_model.h"

namespace parcae::trainer {

// What a seeded stream is used for; part of every stream key, so streams never coincide.
enum class Stream : uint64_t {
  kDepth = 1,         // (n_i, k_i) draws of a training micro-batch
  kInitialState = 2,  // h0 of a training micro-batch
  kData = 3,          // training window positions
  kEvalState = 4,     // h0 of a validation micro-batch
};

// Mixes the key words into one 64-bit seed (splitmix64 finalizer applied word by word).
uint64_t stream_seed(std::initializer_list<uint64_t> key);

// The seed of a stream of training step `step` (0-based) and micro-batch `micro`, counted over
// the global batch of every rank.
uint64_t step_stream_seed(uint64_t run_seed, Stream stream, int64_t step, int64_t micro);

// splitmix64 (Steele, Lea, Flood 2014): 64 bits per call, passes BigCrush, trivially seekable.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // in [0, 1), 53 random bits
 private:
  uint64_t state_;
};

// One Poisson(mean) draw by Knuth's product-of-uniforms method: exact, and fast for the means
// used here (mu_rec <= ~32 needs about mu_rec + 1 uniforms). Needs 0 <= mean <= 700.
int sample_poisson(double mean, SplitMix64& rng);

// The loop schedule of one micro-batch: row i runs no_grad[i] iterations without autograd, then
// graded[i] iterations with it (T_i = n_i + k_i). Evaluation uses n_i = T, k_i = 0.
struct DepthPlan {
  std::vector<int> no_grad;  // n_i
  std::vector<int> graded;   // k_i

  int rows() const { return static_cast<int>(no_grad.size()); }
  int max_no_grad() const;    // n_max
  int max_graded() const;     // k_max
  double mean_depth() const;  // mean of T_i

  // Every row runs `depth` iterations: as no-grad ones (evaluation) or as graded ones.
  static DepthPlan uniform(int rows, int no_grad, int graded);
};

// Draws one micro-batch's plan for `config` (parcae.md §6):
//   poisson, per-sequence: T_i = max(Poisson(mu_rec), 1) per row; k_i = min(T_i, mu_bwd);
//                          n_i = T_i - k_i
//   poisson, per-batch:    one T for the whole micro-batch, same formulas
//   fixed:                 T = 1 exactly (n = 0, k = 1), the `mu_rec=1 fixed` control
// A Transformer gets n = 0, k = 1 (the plan is ignored by its forward).
DepthPlan draw_depth_plan(const sweeps::ModelConfig& config, int rows, uint64_t seed);

// Concatenates the plans of an accumulation batch, in order.
DepthPlan concatenate(const std::vector<DepthPlan>& plans);

// DECISION (parcae.md §6, optional depth bucketing): the order that sorts rows by n_i (stable),
// so that cutting the sorted rows into micro-batches groups similar depths and wastes less
// masked work. The step's gradient is a sum over rows, so this changes no result.
std::vector<int> bucketing_order(const DepthPlan& plan);

}  // namespace parcae::trainer
