// libFuzzer target: the CSV reader that `fit --csv` uses (RFC 4180 quoting, a header, rows of the
// header's width), then the numeric columns a law reads, both strict and with bad rows skipped.
#include <cstddef>
#include <cstdint>

#include "analysis/run_table.h"
#include "sweeps/error.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace parcae::analysis;
  const std::string path = parcae::fuzz::write_input("runs.csv", data, size);
  RunTable table;
  try {
    table = read_csv(path);
  } catch (const parcae::Error&) {
    return 0;
  }
  const std::vector<NumericColumnSpec> specs = {
      {"budget_flops", true, false}, {"loss", false, false}, {"mean_recurrence", true, true}};
  for (const bool skip_bad_rows : {false, true}) {
    try {
      read_numeric_columns(table, specs, skip_bad_rows);
    } catch (const parcae::Error&) {
    }
  }
  return 0;
}
