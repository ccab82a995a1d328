// libFuzzer target: the sweep-file reader (comments, JSON, every field's validation, generators)
// on arbitrary bytes. Data patterns are not matched against files: the reader's own work is the
// target, not the file system's.
#include <cstddef>
#include <cstdint>

#include "sweeps/error.h"
#include "sweeps/sweep_spec.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = parcae::fuzz::write_input("sweep.json", data, size);
  parcae::sweeps::SweepReadOptions options;
  options.require_data = false;
  try {
    const parcae::sweeps::SweepSpec spec = parcae::sweeps::read_sweep_file(path, options);
    (void)spec;
  } catch (const parcae::Error&) {
  }
  return 0;
}
