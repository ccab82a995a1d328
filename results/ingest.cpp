// Ingest of a job's events.jsonl: the trainer's stream of JSON lines turned into rows.
//
// The job row remembers how many bytes (and lines) of the file are already in the database. Each
// call reads from there to the last complete line, applies every line, and stores the new offset,
// all in one transaction: a SIGKILL in the middle leaves either none or all of a batch, and the
// next call starts where the last commit ended. Rows are keyed by (job, step) and (job, step,
// depth) and written with upserts, so the steps a resumed trainer replays after its checkpoint
// replace the earlier ones, and reading a line twice changes nothing.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <future>
#include <string_view>
#include <thread>
#include <vector>

#include "results/detail/sqlite.h"
#include "results/detail/store_impl.h"
#include "results/results.h"
#include "sweeps/error.h"
#include "sweeps/run_contract.h"

namespace parcae::results {
namespace {

using detail::Connection;
using detail::Statement;
using detail::Transaction;

// Most bytes read in one transaction; a longer backlog is taken in several.
constexpr int64_t kBatchBytes = 64 << 20;

// A line that is JSON but not a usable event.
struct BadEvent {
  std::string message;
};

const nlohmann::json* member(const nlohmann::json& event, const char* key) {
  const auto it = event.find(key);
  return it == event.end() || it->is_null() ? nullptr : &*it;
}

// "\"key\" is missing" or "\"key\" = VALUE", for messages.
std::string found(const nlohmann::json* v, const char* key) {
  return std::string("\"") + key + "\"" + (v == nullptr ? " is missing" : " = " + v->dump());
}

double required_number(const nlohmann::json& event, const char* key) {
  const nlohmann::json* v = member(event, key);
  if (v == nullptr || !v->is_number())
    throw BadEvent{found(v, key) + ": expected a number"};
  return v->get<double>();
}

int64_t required_integer(const nlohmann::json& event, const char* key) {
  const nlohmann::json* v = member(event, key);
  if (v == nullptr || !v->is_number())
    throw BadEvent{found(v, key) + ": expected an integer"};
  if (v->is_number_integer())
    return v->get<int64_t>();
  const double d = v->get<double>();
  if (std::floor(d) != d || std::fabs(d) > 9e18)
    throw BadEvent{found(v, key) + ": expected an integer"};
  return static_cast<int64_t>(d);
}

// True for the spellings other writers use for a value that is not finite: "nan", "inf",
// "-Infinity" and the like, in any case.
bool is_non_finite_spelling(const std::string& text) {
  std::string lower;
  for (char c : text)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!lower.empty() && (lower[0] == '-' || lower[0] == '+'))
    lower.erase(0, 1);
  return lower == "nan" || lower == "inf" || lower == "infinity";
}

// A number, or nullopt for a missing key, null or a non-finite spelling ("nan", "inf"). Any
// other text is a bad event: stored as NULL it would overwrite a good row of a replay.
std::optional<double> optional_number(const nlohmann::json& event, const char* key) {
  const nlohmann::json* v = member(event, key);
  if (v == nullptr)
    return std::nullopt;
  if (v->is_string()) {
    if (is_non_finite_spelling(v->get<std::string>()))
      return std::nullopt;
    throw BadEvent{std::string("\"") + key + "\" = " + v->dump() + ": expected a number"};
  }
  if (v->is_boolean())
    return v->get<bool>() ? 1.0 : 0.0;
  if (!v->is_number())
    throw BadEvent{found(v, key) + ": expected a number"};
  return v->get<double>();
}

std::optional<int64_t> optional_integer(const nlohmann::json& event, const char* key) {
  const nlohmann::json* v = member(event, key);
  if (v == nullptr)
    return std::nullopt;
  if (v->is_boolean())
    return v->get<bool>() ? 1 : 0;
  return required_integer(event, key);
}

std::optional<std::string> optional_text(const nlohmann::json& event, const char* key) {
  const nlohmann::json* v = member(event, key);
  if (v == nullptr)
    return std::nullopt;
  if (!v->is_string())
    throw BadEvent{found(v, key) + ": expected a string"};
  return v->get<std::string>();
}

// The statements of one ingest call, prepared once.
struct Statements {
  explicit Statements(const Connection& db)
      : curve(db,
              "INSERT INTO curve (job, step, time, tokens, flops, loss, lr_adamw, lr_muon, "
              "grad_norm, tokens_per_s, skipped, mean_depth, log_rho, mean_decay, h_rms) VALUES "
              "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT "
              "(job, step) DO UPDATE SET time = excluded.time, tokens = excluded.tokens, flops = "
              "excluded.flops, loss = excluded.loss, lr_adamw = excluded.lr_adamw, lr_muon = "
              "excluded.lr_muon, grad_norm = excluded.grad_norm, tokens_per_s = "
              "excluded.tokens_per_s, skipped = excluded.skipped, mean_depth = "
              "excluded.mean_depth, log_rho = excluded.log_rho, mean_decay = excluded.mean_decay, "
              "h_rms = excluded.h_rms"),
        evaluation(db,
                   "INSERT INTO evaluations (job, step, depth, time, tokens, loss) VALUES (?1, ?2, "
                   "?3, ?4, ?5, ?6) ON CONFLICT (job, step, depth) DO UPDATE SET time = "
                   "excluded.time, tokens = excluded.tokens, loss = excluded.loss"),
        provenance(db,
                   "INSERT OR REPLACE INTO provenance (job, events_offset, time, resumed, "
                   "parcae_version, git_commit, libtorch_version, cuda_version, versions, device, "
                   "world_size, seed, parameters_total, parameters_noncore, parameters_core, "
                   "parameters_embedding, flops_per_token, max_steps, train_tokens, budget_flops, "
                   "config) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                   "?15, ?16, ?17, ?18, ?19, ?20, config FROM jobs WHERE id = ?1"),
        started(db,
                "UPDATE jobs SET final_status = NULL, loss_train = NULL, loss_val = NULL, "
                "wall_time_s = NULL WHERE id = ?1"),
        progress(db,
                 "UPDATE jobs SET steps_done = ?2, tokens_done = ?3, flops_done = ?4, last_loss = "
                 "?5 WHERE id = ?1"),
        checkpoint(db, "UPDATE jobs SET checkpoint_step = ?2, checkpoint_path = ?3 WHERE id = ?1"),
        done(db,
             "UPDATE jobs SET final_status = ?2, tokens_done = coalesce(?3, tokens_done), "
             "flops_done = coalesce(?4, flops_done), loss_train = ?5, loss_val = ?6, wall_time_s "
             "= ?7 WHERE id = ?1"),
        error(db, "UPDATE jobs SET last_error = ?2 WHERE id = ?1"),
        offset(db,
               "UPDATE jobs SET events_offset = ?2, events_lines = ?3, updated_at = ?4 WHERE id = "
               "?1") {}

  Statement curve, evaluation, provenance, started, progress, checkpoint, done, error, offset;
};

// The last step event of a batch: the job row's progress columns are written once per batch,
// not once per step.
struct Progress {
  bool seen = false;
  int64_t step = 0;
  int64_t tokens = 0;
  double flops = 0.0;
  std::optional<double> loss;
};

// Applies one parsed event; throws BadEvent when it is not a usable event.
void apply(const std::string& job,
           const nlohmann::json& event,
           int64_t line_offset,
           Statements& s,
           Progress& progress,
           IngestReport& report) {
  if (!event.is_object())
    throw BadEvent{"expected a JSON object"};
  const auto type = optional_text(event, "event");
  if (!type)
    throw BadEvent{"\"event\" is missing"};
  const double time = required_number(event, "time");
  const int64_t step = required_integer(event, "step");
  if (*type == sweeps::kEventStep) {
    Statement& q = s.curve;
    q.reset();
    const int64_t tokens = required_integer(event, "tokens");
    const double flops = required_number(event, "flops");
    const std::optional<double> loss = optional_number(event, "loss");
    q.bind(1, job)
        .bind(2, step)
        .bind(3, time)
        .bind(4, tokens)
        .bind(5, flops)
        .bind(6, loss)
        .bind(7, optional_number(event, "lr_adamw"))
        .bind(8, optional_number(event, "lr_muon"))
        .bind(9, optional_number(event, "grad_norm"))
        .bind(10, optional_number(event, "tokens_per_s"))
        .bind(11, optional_integer(event, "skipped"))
        .bind(12, optional_number(event, "mean_depth"))
        .bind(13, optional_number(event, "log_rho"))
        .bind(14, optional_number(event, "mean_decay"))
        .bind(15, optional_number(event, "h_rms"))
        .run();
    progress = {true, step, tokens, flops, loss};
  } else if (*type == sweeps::kEventEval) {
    const int64_t depth = required_integer(event, "depth");
    if (depth < 1)
      throw BadEvent{"\"depth\" = " + std::to_string(depth) + ": expected >= 1"};
    s.evaluation.reset();
    s.evaluation.bind(1, job)
        .bind(2, step)
        .bind(3, depth)
        .bind(4, time)
        .bind(5, required_integer(event, "tokens"))
        .bind(6, optional_number(event, "loss"))
        .run();
  } else if (*type == sweeps::kEventStart) {
    // A start event names the version of the events that follow; another version may mean other
    // fields, so its lines are refused rather than read by the wrong rules.
    const auto version = optional_integer(event, "events_version");
    if (version && *version != sweeps::kEventsVersion) {
      throw BadEvent{"\"events_version\" = " + std::to_string(*version) + ": expected " +
                     std::to_string(sweeps::kEventsVersion) + " (this parcae-scale reads version " +
                     std::to_string(sweeps::kEventsVersion) + "; rebuild it with the trainer)"};
    }
    const nlohmann::json* versions = member(event, "versions");
    const nlohmann::json no_versions = nlohmann::json::object();
    const nlohmann::json& v =
        versions != nullptr && versions->is_object() ? *versions : no_versions;
    const nlohmann::json* parameters = member(event, "parameters");
    const nlohmann::json no_parameters = nlohmann::json::object();
    const nlohmann::json& p =
        parameters != nullptr && parameters->is_object() ? *parameters : no_parameters;
    auto version_text = [&](const char* key) -> std::optional<std::string> {
      const nlohmann::json* x = member(v, key);
      if (x == nullptr)
        return std::nullopt;
      return x->is_string() ? x->get<std::string>() : x->dump();
    };
    const auto resumed = member(event, "resumed");
    s.provenance.reset();
    s.provenance.bind(1, job)
        .bind(2, line_offset)
        .bind(3, time)
        .bind(4, resumed != nullptr && resumed->is_boolean() && resumed->get<bool>() ? 1 : 0)
        .bind(5, version_text("parcae"))
        .bind(6, version_text("git_commit"))
        .bind(7, version_text("libtorch"))
        .bind(8, version_text("cuda"))
        .bind(9, v.dump())
        .bind(10, optional_text(event, "device"))
        .bind(11, optional_integer(event, "world_size"))
        .bind(12, optional_integer(event, "seed"))
        .bind(13, optional_integer(p, "total"))
        .bind(14, optional_integer(p, "noncore"))
        .bind(15, optional_integer(p, "core"))
        .bind(16, optional_integer(p, "embedding"))
        .bind(17, optional_integer(event, "flops_per_token"))
        .bind(18, optional_integer(event, "max_steps"))
        .bind(19, optional_integer(event, "train_tokens"))
        .bind(20, optional_number(event, "budget_flops"))
        .run();
    s.started.reset();
    s.started.bind(1, job).run();
  } else if (*type == sweeps::kEventCheckpoint) {
    s.checkpoint.reset();
    s.checkpoint.bind(1, job).bind(2, step).bind(3, optional_text(event, "path")).run();
  } else if (*type == sweeps::kEventDone) {
    const auto status = optional_text(event, "status");
    if (!status || (*status != sweeps::kStatusDone && *status != sweeps::kStatusDiverged)) {
      throw BadEvent{found(member(event, "status"), "status") +
                     ": expected \"done\" or \"diverged\""};
    }
    s.done.reset();
    s.done.bind(1, job)
        .bind(2, *status)
        .bind(3, optional_integer(event, "tokens"))
        .bind(4, optional_number(event, "flops"))
        .bind(5, optional_number(event, "loss_train"))
        .bind(6, optional_number(event, "loss_val"))
        .bind(7, optional_number(event, "wall_time_s"))
        .run();
    report.final_status = *status;
  } else if (*type == sweeps::kEventPreempted) {
    report.saw_preempted = true;
  } else if (*type == sweeps::kEventError) {
    const std::string message = optional_text(event, "message").value_or("(no message)");
    s.error.reset();
    s.error.bind(1, job).bind(2, message).run();
    report.error_message = message;
  } else {
    throw BadEvent{"unknown event type \"" + *type + "\""};
  }
}

// A complete line of the batch: [start, end) with end at its '\n'.
struct Line {
  size_t start = 0;
  size_t end = 0;
  bool blank = false;  // only spaces and tabs (and a '\r'): skipped, not an error
};

std::vector<Line> split_lines(const std::string& buffer) {
  std::vector<Line> lines;
  size_t start = 0;
  while (true) {
    const size_t end = buffer.find('\n', start);
    if (end == std::string::npos)
      break;
    const std::string_view text(buffer.data() + start, end - start);
    lines.push_back({start, end, text.find_first_not_of(" \t\r") == std::string_view::npos});
    start = end + 1;
  }
  return lines;
}

// Lines applied between two parses; parsing is split over the machine's other cores.
constexpr size_t kBlockLines = 16384;

// The lines [first, last) parsed (discarded values for lines that are not JSON, null for blank
// ones), in order.
std::vector<nlohmann::json> parse_lines(const std::string& buffer,
                                        const std::vector<Line>& lines,
                                        size_t first,
                                        size_t last) {
  std::vector<nlohmann::json> parsed(last - first);
  auto parse_range = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      const Line& line = lines[i];
      if (line.blank)
        continue;
      std::string_view text(buffer.data() + line.start, line.end - line.start);
      if (!text.empty() && text.back() == '\r')
        text.remove_suffix(1);
      parsed[i - first] = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    }
  };
  const size_t threads =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 8) - 1;  // one core applies
  const size_t chunk = (last - first + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (size_t from = first + chunk; from < last; from += chunk)
    workers.emplace_back(parse_range, from, std::min(from + chunk, last));
  parse_range(first, std::min(first + chunk, last));
  for (auto& w : workers)
    w.join();
  return parsed;
}

}  // namespace

IngestReport Store::ingest_events(const std::string& job_id, const std::string& events_path) {
  const Connection& db = impl_->db;
  IngestReport report;
  Statements statements(db);
  while (true) {
    Transaction transaction(db);
    Statement position(db, "SELECT events_offset, events_lines FROM jobs WHERE id = ?1");
    position.bind(1, job_id);
    if (!position.step())
      throw Error("results: ingest for unknown job " + job_id);
    int64_t offset = position.get_int(0);
    int64_t lines = position.get_int(1);

    std::ifstream in(events_path, std::ios::binary);
    if (!in)
      return report;  // not written yet
    in.seekg(0, std::ios::end);
    const int64_t size = static_cast<int64_t>(in.tellg());
    if (size < offset) {
      // The file was replaced by a shorter one: read it again; upserts make that harmless.
      offset = 0;
      lines = 0;
      report.restarted = true;
    }
    const int64_t want = std::min<int64_t>(size - offset, kBatchBytes);
    std::string buffer(static_cast<size_t>(want), '\0');
    in.seekg(offset);
    in.read(buffer.data(), want);
    buffer.resize(static_cast<size_t>(in.gcount()));

    const std::vector<Line> complete = split_lines(buffer);
    const int64_t consumed = complete.empty() ? 0 : static_cast<int64_t>(complete.back().end + 1);
    Progress progress;
    // Parsing a block of lines (on other threads) overlaps applying the previous one.
    auto parse_block = [&](size_t first) {
      return std::async(std::launch::async, [&complete, &buffer, first] {
        return parse_lines(buffer, complete, first, std::min(first + kBlockLines, complete.size()));
      });
    };
    std::future<std::vector<nlohmann::json>> next;
    if (!complete.empty())
      next = parse_block(0);
    for (size_t first = 0; first < complete.size(); first += kBlockLines) {
      const std::vector<nlohmann::json> events = next.get();
      if (first + kBlockLines < complete.size())
        next = parse_block(first + kBlockLines);
      for (size_t i = 0; i < events.size(); ++i) {
        const Line& line = complete[first + i];
        const int64_t line_offset = offset + static_cast<int64_t>(line.start);
        ++lines;
        ++report.lines;
        if (line.blank)
          continue;
        try {
          if (events[i].is_discarded())
            throw BadEvent{"not valid JSON"};
          apply(job_id, events[i], line_offset, statements, progress, report);
          ++report.events;
        } catch (const BadEvent& bad) {
          report.bad_lines.push_back({lines, line_offset, bad.message});
        }
      }
    }
    if (progress.seen) {
      statements.progress.reset();
      statements.progress.bind(1, job_id)
          .bind(2, progress.step)
          .bind(3, progress.tokens)
          .bind(4, progress.flops)
          .bind(5, progress.loss)
          .run();
    }
    statements.offset.reset();
    statements.offset.bind(1, job_id)
        .bind(2, offset + consumed)
        .bind(3, lines)
        .bind(4, unix_now())
        .run();
    transaction.commit();
    report.bytes += consumed;
    const int64_t remaining = size - (offset + consumed);
    // A full batch may have cut the backlog mid-line; anything shorter is an unfinished line.
    if (want < kBatchBytes || consumed == 0) {
      report.pending_bytes = remaining;
      return report;
    }
  }
}

}  // namespace parcae::results
