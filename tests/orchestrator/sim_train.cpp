// parcae-sim-train: a stand-in for parcae-train whose final losses follow a known isoFLOP law, so
// that refinement can be tested end to end on the CPU in seconds (tests/orchestrator/
// refine_test.cpp). It follows the trainer's contract (sweeps/run_contract.h): it reads --job,
// appends a start event, two step events, an evaluation at T = mu_rec and a done event to
// <out>/events.jsonl, and exits 0. Nothing is trained.
//
// The law, in nats, for a cell of budget C at mean recurrence mu:
//   L(C, mu) = E(C) + curvature * (ln mu - ln mu*(C))^2 + noise,
//   mu*(C) = mu_ref * (C / c_ref)^a,   E(C) = 2 + 3 (C / c_ref)^-0.1,
// an exact parabola in ln mu around mu*(C), so that the isoFLOP fit recovers a up to the noise.
// The noise is Gaussian with SD `noise`, drawn from a generator seeded by the cell's name and seed,
// so a cell gets the same loss however often and wherever it runs. $PARCAE_SIM_LAW may hold a JSON
// object overriding a, mu_ref, c_ref, curvature and noise; their defaults are below.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/flop_model.h"
#include "sweeps/job_config.h"
#include "sweeps/run_contract.h"

namespace {

struct Law {
  double a = 0.5;
  double mu_ref = 2.0;  // mu* at c_ref
  double c_ref = 1e12;
  double curvature = 0.05;
  double noise = 0.001;

  double mu_star(double c) const { return mu_ref * std::pow(c / c_ref, a); }
  double floor_loss(double c) const { return 2.0 + 3.0 * std::pow(c / c_ref, -0.1); }
};

Law law_from_environment() {
  Law law;
  const char* text = std::getenv("PARCAE_SIM_LAW");
  if (text == nullptr || *text == '\0')
    return law;
  const nlohmann::json j = nlohmann::json::parse(text);
  law.a = j.value("a", law.a);
  law.mu_ref = j.value("mu_ref", law.mu_ref);
  law.c_ref = j.value("c_ref", law.c_ref);
  law.curvature = j.value("curvature", law.curvature);
  law.noise = j.value("noise", law.noise);
  return law;
}

// A standard normal draw from a generator seeded by FNV-1a of the cell's name and its seed (Box-
// Muller, so that the draw does not depend on the standard library's distribution). Not by the
// job id: that hashes the data paths too, and a test's scratch folder must not change the losses.
double normal_for(const std::string& cell, uint64_t seed) {
  uint64_t hash = 14695981039346656037ull ^ seed;
  for (unsigned char c : cell)
    hash = (hash ^ c) * 1099511628211ull;
  std::mt19937_64 generator(hash);
  const double u1 = (static_cast<double>(generator() >> 11) + 0.5) / 9007199254740992.0;
  const double u2 = (static_cast<double>(generator() >> 11) + 0.5) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string job_path, out_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--job")
      job_path = argv[i + 1];
    else if (flag == "--out")
      out_dir = argv[i + 1];
  }
  if (job_path.empty() || out_dir.empty()) {
    std::cerr << "parcae-sim-train: usage: parcae-sim-train --job JOB.json --out DIR\n";
    return parcae::sweeps::kExitBadInput;
  }
  try {
    const parcae::sweeps::JobConfig job = parcae::sweeps::read_job_file(job_path);
    const Law law = law_from_environment();
    const double c = job.budget_flops;
    const int mu = job.model.mean_recurrence;
    const double distance = std::log(mu) - std::log(law.mu_star(c));
    const double loss = law.floor_loss(c) + law.curvature * distance * distance +
                        law.noise * normal_for(job.cell, job.seed);
    const int64_t steps = job.max_steps();
    const int64_t tokens = steps * job.training.batch_tokens;
    const double flops =
        static_cast<double>(tokens) * parcae::sweeps::train_flops_per_token(job.model);
    const double now = static_cast<double>(std::time(nullptr));
    const parcae::sweeps::ParameterCounts counts = parcae::sweeps::count_parameters(job.model);
    std::filesystem::create_directories(out_dir);
    std::ofstream events(std::filesystem::path(out_dir) / parcae::sweeps::kEventsFileName,
                         std::ios::app);
    const auto emit = [&events](const nlohmann::json& event) { events << event.dump() << "\n"; };
    emit({{"event", parcae::sweeps::kEventStart},
          {"time", now},
          {"step", 0},
          {"events_version", parcae::sweeps::kEventsVersion},
          {"job_id", job.id()},
          {"resumed", false},
          {"versions", {{"parcae", "sim"}, {"libtorch", "none"}, {"cuda", "none"}}},
          {"device", "cpu"},
          {"world_size", 1},
          {"parameters",
           {{"total", counts.total},
            {"noncore", counts.noncore},
            {"core", counts.core},
            {"embedding", counts.embedding}}},
          {"flops_per_token", parcae::sweeps::train_flops_per_token(job.model)},
          {"max_steps", steps},
          {"train_tokens", tokens},
          {"budget_flops", c},
          {"seed", job.seed}});
    for (int64_t step : {int64_t{1}, steps}) {
      emit({{"event", parcae::sweeps::kEventStep},
            {"time", now},
            {"step", step},
            {"tokens", step * job.training.batch_tokens},
            {"flops", flops * static_cast<double>(step) / static_cast<double>(steps)},
            {"loss", loss + 1.0 / static_cast<double>(step)}});
    }
    emit({{"event", parcae::sweeps::kEventEval},
          {"time", now},
          {"step", steps},
          {"tokens", tokens},
          {"depth", mu},
          {"loss", loss}});
    emit({{"event", parcae::sweeps::kEventDone},
          {"time", now},
          {"step", steps},
          {"status", parcae::sweeps::kStatusDone},
          {"tokens", tokens},
          {"flops", flops},
          {"loss_train", loss},
          {"loss_val", loss},
          {"wall_time_s", 0.0}});
    return parcae::sweeps::kExitDone;
  } catch (const std::exception& e) {
    std::cerr << "parcae-sim-train: " << e.what() << "\n";
    return parcae::sweeps::kExitBadInput;
  }
}
