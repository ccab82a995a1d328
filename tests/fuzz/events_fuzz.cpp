// libFuzzer target: ingesting a trainer's events.jsonl into the results database. Each input is
// the whole file of one job of a small planned sweep; the job's stored offset is first reset by
// ingesting an empty file (a file shorter than the offset is read again from the start), so every
// input is read from its first byte. Bad lines must come back as reported lines, never as an
// exception, and the database must stay consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "results/results.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/results/store_fixture.h"

namespace {

struct Fixture {
  std::optional<parcae::results::Store> store;
  std::string job_id;
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture made;
    const auto dir = parcae::fuzz::scratch_dir();
    std::filesystem::remove(dir / "events.sqlite");
    made.store.emplace(parcae::results::Store::open((dir / "events.sqlite").string()));
    parcae::test_support::record(
        *made.store, parcae::test_support::tiny_sweep_json({2}), dir.string());
    made.job_id = made.store->jobs("tiny").at(0).id;
    return made;
  }();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = fixture();
  const std::string path = parcae::fuzz::write_input("events.jsonl", data, 0);
  f.store->ingest_events(f.job_id, path);
  parcae::fuzz::write_input("events.jsonl", data, size);
  const parcae::results::IngestReport report = f.store->ingest_events(f.job_id, path);
  if (report.bytes + report.pending_bytes != static_cast<int64_t>(size))
    std::abort();
  return 0;
}
