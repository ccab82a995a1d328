// libFuzzer target: the job-file reader that parcae-train starts from, on arbitrary bytes; an
// accepted job is written back and read again, which must give the same job.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "sweeps/error.h"
#include "sweeps/job_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace parcae::sweeps;
  const std::string path = parcae::fuzz::write_input("job.json", data, size);
  JobConfig job;
  try {
    job = read_job_file(path);
  } catch (const parcae::Error&) {
    return 0;
  }
  // What the orchestrator writes, the trainer must read back unchanged.
  const std::string again = (parcae::fuzz::scratch_dir() / "job-again.json").string();
  write_job_file(job, again);
  if (to_json(read_job_file(again)) != to_json(job))
    std::abort();
  return 0;
}
