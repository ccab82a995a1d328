// Reading and validating sweep files. Parsing never stops at the first problem: each section is
// read under a guard that records what went wrong and moves on, and the semantic checks of
// SweepSpec::validate() run on whatever could be read, so one run reports everything.
#include "sweeps/sweep_spec.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "sweeps/json_fields.h"
#include "sweeps/suggest.h"

namespace parcae::sweeps {
namespace {

namespace fs = std::filesystem;

const char kFixedLabel[] = "1-fixed";
const char kPoissonLabel[] = "1-poisson";

// A problem's field path and its full message.
struct Problem {
  std::string field;
  std::string message;
};

// Collects problems as "FILE: FIELD = VALUE: EXPECTED" lines, remembering their fields so that a
// value the reader could not read is not reported again by validate().
class Problems {
 public:
  explicit Problems(std::string file) : file_(std::move(file)) {}

  void add(const std::string& field,
           const std::string& value,
           const std::string& expected,
           const std::string& hint = "") {
    add(InputError(file_, field, value, expected, hint));
  }
  void add(const InputError& e) {
    fields_.push_back(e.field());
    lines_.push_back(e.what());
  }

  // Runs `read`, recording an InputError instead of letting it escape.
  template <typename Read>
  void guard(Read&& read) {
    try {
      read();
    } catch (const InputError& e) {
      add(e);
    }
  }

  // True when `field` or a field containing it was already reported.
  bool reported(const std::string& field) const {
    for (const auto& f : fields_) {
      if (field == f || (field.size() > f.size() && field.compare(0, f.size(), f) == 0 &&
                         (field[f.size()] == '.' || field[f.size()] == '['))) {
        return true;
      }
    }
    return false;
  }

  const std::string& file() const { return file_; }
  std::vector<std::string>& lines() { return lines_; }

 private:
  std::string file_;
  std::vector<std::string> fields_;
  std::vector<std::string> lines_;
};

std::string join_field(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string indexed(const std::string& field, size_t i) {
  return field + "[" + std::to_string(i) + "]";
}

// Records every key of `object` outside `allowed`; false when `object` is not an object.
bool check_keys(const nlohmann::json& object,
                const std::vector<std::string>& allowed,
                const std::string& path,
                Problems& problems) {
  if (!object.is_object()) {
    problems.add(path.empty() ? "(top level)" : path, object.dump(), "expected an object");
    return false;
  }
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      problems.add(
          join_field(path, key), value.dump(), "unknown field", suggestion_hint(key, allowed));
    }
  }
  return true;
}

bool is_generator(const nlohmann::json& value) {
  return value.is_object() && value.size() == 1 &&
         (value.contains("logspace") || value.contains("linspace") || value.contains("range"));
}

// An axis as a list of JSON values: a list as given, or a generator's numbers.
std::vector<nlohmann::json> axis_values(const nlohmann::json& value,
                                        const std::string& file,
                                        const std::string& field) {
  if (value.is_array()) {
    // An empty list would silently fall back to the default the axis replaces.
    if (value.empty())
      throw InputError(file, field, "[]", "expected at least one value");
    return {value.begin(), value.end()};
  }
  if (value.is_object()) {
    std::vector<nlohmann::json> out;
    for (double v : expand_generator(value, file, field))
      out.emplace_back(v);
    return out;
  }
  throw InputError(file,
                   field,
                   value.dump(),
                   "expected a list or a generator",
                   "e.g. [1, 2, 4] or {\"logspace\": [1e18, 6.4e19, 7]}");
}

// An integer from a list entry; generator values are rounded to the nearest integer.
int64_t axis_integer(const nlohmann::json& value,
                     bool from_generator,
                     const std::string& file,
                     const std::string& field) {
  if (from_generator && value.is_number())
    return std::llround(value.get<double>());
  return detail::integer_value(value, file, field);
}

std::vector<int> read_int_axis(const nlohmann::json& value,
                               const std::string& file,
                               const std::string& field,
                               Problems& problems) {
  std::vector<int> out;
  const bool generated = value.is_object();
  const auto values = axis_values(value, file, field);
  for (size_t i = 0; i < values.size(); ++i) {
    problems.guard([&] {
      const int64_t v = axis_integer(values[i], generated, file, indexed(field, i));
      if (v < -(int64_t{1} << 31) || v >= (int64_t{1} << 31)) {
        throw InputError(file, indexed(field, i), values[i].dump(), "expected a 32-bit integer");
      }
      out.push_back(static_cast<int>(v));
    });
  }
  return out;
}

std::vector<std::string> read_patterns(const nlohmann::json& value,
                                       const std::string& file,
                                       const std::string& field) {
  if (value.is_string())
    return {value.get<std::string>()};
  if (!value.is_array()) {
    throw InputError(file, field, value.dump(), "expected a path, a glob or a list of them");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (!value[i].is_string()) {
      throw InputError(file, indexed(field, i), value[i].dump(), "expected a path or a glob");
    }
    out.push_back(value[i].get<std::string>());
  }
  return out;
}

// Regular files matching `pattern` (resolved against `base`), sorted.
std::vector<std::string> glob_files(const std::string& pattern, const fs::path& base) {
  const fs::path p(pattern);
  const std::string full = (p.is_absolute() ? p : base / p).lexically_normal().string();
  glob_t found{};
  std::vector<std::string> out;
  if (::glob(full.c_str(), 0, nullptr, &found) == 0) {
    for (size_t i = 0; i < found.gl_pathc; ++i) {
      std::error_code ec;
      if (fs::is_regular_file(found.gl_pathv[i], ec))
        out.emplace_back(found.gl_pathv[i]);
    }
  }
  ::globfree(&found);
  std::sort(out.begin(), out.end());
  return out;
}

void read_preparation(const nlohmann::json& value, Problems& problems, DataPreparation& prepare) {
  if (!check_keys(value,
                  {"text",
                   "command",
                   "out",
                   "val_fraction",
                   "documents",
                   "held_out",
                   "tokenizer",
                   "vocab_size",
                   "tokenizer_model"},
                  "data.prepare",
                  problems)) {
    return;
  }
  const detail::JsonAt at{problems.file(), "data.prepare"};
  problems.guard([&] { detail::read_field(value, "text", at, prepare.text_files); });
  problems.guard([&] { detail::read_field(value, "command", at, prepare.command); });
  problems.guard([&] { detail::read_field(value, "out", at, prepare.out); });
  problems.guard([&] { detail::read_field(value, "val_fraction", at, prepare.val_fraction); });
  problems.guard([&] {
    std::string documents = to_string(prepare.documents);
    detail::read_field(value, "documents", at, documents);
    prepare.documents = document_split_from_string(documents, at.file, at.field("documents"));
  });
  problems.guard([&] {
    std::string held_out = to_string(prepare.held_out);
    detail::read_field(value, "held_out", at, held_out);
    prepare.held_out = held_out_from_string(held_out, at.file, at.field("held_out"));
  });
  problems.guard([&] { detail::read_field(value, "tokenizer", at, prepare.tokenizer.kind); });
  problems.guard(
      [&] { detail::read_field(value, "vocab_size", at, prepare.tokenizer.vocab_size); });
  problems.guard(
      [&] { detail::read_field(value, "tokenizer_model", at, prepare.tokenizer.model); });
  if (prepare.tokenizer.kind != "bytes" && prepare.tokenizer.kind != "sentencepiece" &&
      !problems.reported("data.prepare.tokenizer")) {
    problems.add("data.prepare.tokenizer",
                 "\"" + prepare.tokenizer.kind + "\"",
                 "expected \"bytes\" or \"sentencepiece\"");
  }
  if (prepare.text_files.empty() == prepare.command.empty()) {
    problems.add("data.prepare",
                 value.dump(),
                 "expected exactly one of \"text\" (files) or \"command\" (argv)");
  }
  if (prepare.out.empty() && !problems.reported("data.prepare.out"))
    problems.add("data.prepare.out", "(missing)", "expected the folder the shards are written to");
  if (!(prepare.val_fraction > 0.0 && prepare.val_fraction < 1.0) &&
      !problems.reported("data.prepare.val_fraction")) {
    problems.add("data.prepare.val_fraction",
                 nlohmann::json(prepare.val_fraction).dump(),
                 "expected a fraction in (0, 1)");
  }
}

void read_data(const nlohmann::json& value,
               const SweepReadOptions& options,
               Problems& problems,
               DataSpec& data) {
  if (!check_keys(value, {"train", "val", "prepare", "bos_token"}, "data", problems))
    return;
  const std::string& file = problems.file();
  problems.guard([&] {
    detail::read_field(value, "bos_token", detail::JsonAt{file, "data"}, data.bos_token);
  });
  if (value.contains("bos_token") && data.bos_token < 0 && !problems.reported("data.bos_token")) {
    problems.add("data.bos_token",
                 value.at("bos_token").dump(),
                 "expected a token id >= 0 (the id that starts every document)");
  }
  if (value.contains("prepare"))
    read_preparation(value.at("prepare"), problems, data.prepare);
  for (const char* key : {"train", "val"}) {
    if (!value.contains(key)) {
      problems.add(
          join_field("data", key), "(missing)", "expected a path, a glob or a list of them");
    }
  }
  problems.guard([&] {
    if (value.contains("train"))
      data.train_patterns = read_patterns(value.at("train"), file, "data.train");
  });
  problems.guard([&] {
    if (value.contains("val"))
      data.val_patterns = read_patterns(value.at("val"), file, "data.val");
  });
  const fs::path folder =
      options.data_dir.empty() ? fs::path(file).parent_path() : fs::path(options.data_dir);
  fs::path base = fs::absolute(folder.empty() ? fs::path(".") : folder).lexically_normal();
  if (base.filename().empty() && base.has_parent_path())
    base = base.parent_path();  // "/a/b/" (from "/a/b/.") names the same folder as "/a/b"
  data.folder = base.string();
  if (!options.require_data)
    return;
  auto expand = [&](const std::vector<std::string>& patterns,
                    const std::string& field,
                    std::vector<std::string>& shards) {
    std::set<std::string> seen;
    for (size_t i = 0; i < patterns.size(); ++i) {
      const auto files = glob_files(patterns[i], base);
      if (files.empty()) {
        problems.add(indexed(field, i),
                     "\"" + patterns[i] + "\"",
                     "matches no file",
                     "relative paths are resolved against " + base.string() +
                         " (the sweep file's folder, or --data-dir)");
      }
      for (const auto& f : files) {
        if (seen.insert(f).second)
          shards.push_back(f);
      }
    }
  };
  expand(data.train_patterns, "data.train", data.train_shards);
  expand(data.val_patterns, "data.val", data.val_shards);
}

// The base model's JSON as an object, so that model-axis overrides can be merged on top of it.
nlohmann::json as_model_object(const nlohmann::json& model) {
  if (model.is_string())
    return {{"preset", model}};
  return model;
}

// One model: its "training" object set aside (checked here, so that its errors name it; merged
// with the sweep's by resolve_training once that is read), the rest read as a ModelConfig.
ModelChoice read_model(const nlohmann::json& value,
                       const std::string& file,
                       const std::string& field) {
  nlohmann::json shape = value;
  ModelChoice choice;
  if (value.is_object() && value.contains("training")) {
    choice.own_training = value.at("training");
    training_config_from_json(choice.own_training, file, field + ".training");
    shape.erase("training");
  }
  if (shape.is_string())
    choice.preset = shape.get<std::string>();
  else if (shape.is_object() && shape.contains("preset") && shape.at("preset").is_string())
    choice.preset = shape.at("preset").get<std::string>();
  choice.config = model_config_from_json(shape, file, field);
  choice.label = choice.config.name;
  return choice;
}

// Each model's training settings: its preset's, the sweep's "training", then its own.
void resolve_training(const nlohmann::json* sweep_training, SweepAxes& axes, Problems& problems) {
  for (ModelChoice& m : axes.models) {
    problems.guard([&] {
      nlohmann::json merged = preset_training(m.preset);
      if (sweep_training != nullptr && sweep_training->is_object())
        merged.merge_patch(*sweep_training);
      if (m.own_training.is_object())
        merged.merge_patch(m.own_training);
      m.training = training_config_from_json(
          merged, problems.file(), "training (of model \"" + m.label + "\")");
    });
  }
}

void read_models(const nlohmann::json* base,
                 const nlohmann::json* axis,
                 Problems& problems,
                 SweepAxes& axes,
                 const std::string& prefix = "axes") {
  const std::string& file = problems.file();
  if (axis == nullptr) {
    if (base == nullptr) {
      problems.add(
          "model", "(missing)", "expected a preset name or an object", "or give axes.model");
      return;
    }
    problems.guard([&] { axes.models.push_back(read_model(*base, file, "model")); });
    return;
  }
  if (!axis->is_array() || axis->empty()) {
    problems.add(
        prefix + ".model", axis->dump(), "expected a non-empty list of presets or model objects");
    return;
  }
  for (size_t i = 0; i < axis->size(); ++i) {
    const nlohmann::json& entry = (*axis)[i];
    problems.guard([&] {
      nlohmann::json merged = entry;
      // An object without a preset overrides the base model; a preset name or an object with a
      // preset stands alone.
      if (entry.is_object() && !entry.contains("preset") && base != nullptr) {
        merged = as_model_object(*base);
        if (!merged.is_object())
          throw InputError(file, "model", base->dump(), "expected a preset name or an object");
        merged.merge_patch(entry);
      }
      axes.models.push_back(read_model(merged, file, indexed(prefix + ".model", i)));
    });
  }
}

void read_mean_recurrence(const nlohmann::json& value,
                          Problems& problems,
                          SweepAxes& axes,
                          const std::string& prefix) {
  const std::string& file = problems.file();
  const std::string field = prefix + ".mean_recurrence";
  const bool generated = value.is_object();
  const auto values = axis_values(value, file, field);
  for (size_t i = 0; i < values.size(); ++i) {
    problems.guard([&] {
      if (values[i].is_string()) {
        const std::string text = values[i].get<std::string>();
        if (text != kFixedLabel && text != kPoissonLabel) {
          throw InputError(file,
                           indexed(field, i),
                           values[i].dump(),
                           "expected an integer >= 1, \"1-fixed\" or \"1-poisson\"",
                           suggestion_hint(text, {kFixedLabel, kPoissonLabel}));
        }
        axes.mean_recurrence.push_back({1, text == kFixedLabel, text == kPoissonLabel});
        return;
      }
      const int64_t mu = axis_integer(values[i], generated, file, indexed(field, i));
      if (mu > 1000000)
        throw InputError(file, indexed(field, i), values[i].dump(), "expected at most 1000000");
      axes.mean_recurrence.push_back({static_cast<int>(mu), false, false});
    });
  }
}

// The axes of model shape, which a budget may also carry (read_budgets).
void read_shape_axes(const nlohmann::json& value,
                     Problems& problems,
                     SweepAxes& axes,
                     const std::string& prefix) {
  const std::string& file = problems.file();
  problems.guard([&] {
    if (value.contains("d_model"))
      axes.d_model = read_int_axis(value.at("d_model"), file, prefix + ".d_model", problems);
  });
  problems.guard([&] {
    if (value.contains("n_layers"))
      axes.n_layers = read_int_axis(value.at("n_layers"), file, prefix + ".n_layers", problems);
  });
  problems.guard([&] {
    if (value.contains("n_recurrent")) {
      axes.n_recurrent =
          read_int_axis(value.at("n_recurrent"), file, prefix + ".n_recurrent", problems);
    }
  });
  problems.guard([&] {
    if (value.contains("mean_recurrence")) {
      axes.mean_recurrence.clear();
      read_mean_recurrence(value.at("mean_recurrence"), problems, axes, prefix);
    }
  });
}

void read_axes(const nlohmann::json& value, Problems& problems, SweepAxes& axes) {
  if (!check_keys(value,
                  {"model",
                   "d_model",
                   "n_layers",
                   "n_recurrent",
                   "mean_recurrence",
                   "train_tokens",
                   "seed"},
                  "axes",
                  problems)) {
    return;
  }
  const std::string& file = problems.file();
  read_shape_axes(value, problems, axes, "axes");
  problems.guard([&] {
    if (!value.contains("train_tokens"))
      return;
    const bool generated = value.at("train_tokens").is_object();
    const auto values = axis_values(value.at("train_tokens"), file, "axes.train_tokens");
    for (size_t i = 0; i < values.size(); ++i) {
      problems.guard([&] {
        axes.train_tokens.push_back(
            axis_integer(values[i], generated, file, indexed("axes.train_tokens", i)));
      });
    }
  });
  problems.guard([&] {
    if (!value.contains("seed"))
      return;
    axes.seeds.clear();
    const bool generated = value.at("seed").is_object();
    const auto values = axis_values(value.at("seed"), file, "axes.seed");
    for (size_t i = 0; i < values.size(); ++i) {
      problems.guard([&] {
        const int64_t seed = axis_integer(values[i], generated, file, indexed("axes.seed", i));
        if (seed < 0)
          throw InputError(
              file, indexed("axes.seed", i), values[i].dump(), "expected a non-negative integer");
        axes.seeds.push_back(static_cast<uint64_t>(seed));
      });
    }
  });
}

// A budget's own axes of model shape, on top of the sweep's.
void read_budget_axes(const nlohmann::json& value,
                      const std::string& field,
                      const nlohmann::json* base_model,
                      Problems& problems,
                      Budget& budget) {
  if (!check_keys(value,
                  {"model", "d_model", "n_layers", "n_recurrent", "mean_recurrence"},
                  field,
                  problems)) {
    return;
  }
  budget.has_axes = true;
  if (value.contains("model")) {
    budget.axes.models.clear();
    read_models(base_model, &value.at("model"), problems, budget.axes, field);
  }
  read_shape_axes(value, problems, budget.axes, field);
}

void read_budgets(const nlohmann::json& value,
                  const SweepAxes& sweep_axes,
                  const nlohmann::json* base_model,
                  Problems& problems,
                  std::vector<Budget>& budgets) {
  const std::string& file = problems.file();
  if (value.is_object()) {
    const std::vector<double> flops = expand_generator(value, file, "budgets");
    const std::vector<std::string> ids = budget_ids_for(flops);
    for (size_t i = 0; i < flops.size(); ++i)
      budgets.push_back({ids[i], flops[i], false, {}});
    return;
  }
  if (!value.is_array()) {
    problems.add("budgets",
                 value.dump(),
                 "expected a list of budgets or a generator",
                 "e.g. [{\"id\": \"1e18\", \"flops\": 1e18}] or {\"logspace\": [1e18, 6.4e19, 7]}");
    return;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const nlohmann::json& entry = value[i];
    const std::string field = indexed("budgets", i);
    if (entry.is_number()) {
      budgets.push_back({budget_id_for(entry.get<double>()), entry.get<double>(), false, {}});
      continue;
    }
    if (!check_keys(entry, {"id", "flops", "axes"}, field, problems))
      continue;
    Budget budget;
    if (entry.contains("axes")) {
      budget.axes = sweep_axes;
      read_budget_axes(entry.at("axes"), field + ".axes", base_model, problems, budget);
    }
    problems.guard([&] {
      detail::read_field(entry, "id", detail::JsonAt{file, field}, budget.id);
      if (!entry.contains("id"))
        problems.add(field + ".id", "(missing)", "expected a string such as \"1e18\"");
    });
    problems.guard([&] {
      if (!entry.contains("flops")) {
        problems.add(field + ".flops", "(missing)", "expected a positive number such as 1e18");
        return;
      }
      if (!entry.at("flops").is_number()) {
        throw InputError(file,
                         field + ".flops",
                         entry.at("flops").dump(),
                         "expected a positive number such as 1e18");
      }
      budget.flops = entry.at("flops").get<double>();
    });
    budgets.push_back(budget);
  }
}

void read_resources(const nlohmann::json& value, Problems& problems, Resources& resources) {
  if (!check_keys(value, {"gpus_per_job", "jobs_per_gpu"}, "resources", problems))
    return;
  const detail::JsonAt at{problems.file(), "resources"};
  problems.guard([&] { detail::read_field(value, "gpus_per_job", at, resources.gpus_per_job); });
  problems.guard([&] { detail::read_field(value, "jobs_per_gpu", at, resources.jobs_per_gpu); });
}

void read_plan(const nlohmann::json& value, Problems& problems, PlanSettings& plan) {
  if (!check_keys(value,
                  {"min_steps", "max_flop_gap", "keep_flagged", "throughput_flops_per_s"},
                  "plan",
                  problems)) {
    return;
  }
  const detail::JsonAt at{problems.file(), "plan"};
  problems.guard([&] { detail::read_field(value, "min_steps", at, plan.min_steps); });
  problems.guard([&] { detail::read_field(value, "max_flop_gap", at, plan.max_flop_gap); });
  problems.guard([&] { detail::read_field(value, "keep_flagged", at, plan.keep_flagged); });
  problems.guard([&] {
    detail::read_field(value, "throughput_flops_per_s", at, plan.throughput_flops_per_s);
  });
}

void read_refine(const nlohmann::json& value, Problems& problems, RefineSettings& refine) {
  if (!check_keys(value, {"axis", "until", "max_rounds", "max_flops", "step"}, "refine", problems))
    return;
  const detail::JsonAt at{problems.file(), "refine"};
  problems.guard([&] { detail::read_field(value, "axis", at, refine.axis); });
  problems.guard([&] { detail::read_field(value, "max_rounds", at, refine.max_rounds); });
  problems.guard([&] { detail::read_field(value, "max_flops", at, refine.max_flops); });
  problems.guard([&] { detail::read_field(value, "step", at, refine.step); });
  if (!value.contains("until")) {
    problems.add("refine.until", "(missing)", "expected {\"exponent_ci_width\": 0.05}");
    return;
  }
  const nlohmann::json& until = value.at("until");
  if (!check_keys(until, {"exponent_ci_width"}, "refine.until", problems))
    return;
  if (!until.contains("exponent_ci_width")) {
    problems.add("refine.until.exponent_ci_width", "(missing)", "expected a width such as 0.05");
    return;
  }
  const detail::JsonAt until_at{problems.file(), "refine.until"};
  problems.guard(
      [&] { detail::read_field(until, "exponent_ci_width", until_at, refine.exponent_ci_width); });
}

std::string number_text(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name.front() == '.' || name.front() == '-')
    return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

bool valid_budget_id(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == '+';
    if (!ok)
      return false;
  }
  return true;
}

// Records duplicates in `values` (by their label) as problems.
template <typename T, typename Label>
void check_unique(const std::vector<T>& values,
                  const std::string& field,
                  Label label,
                  const std::string& file,
                  std::vector<Problem>& out) {
  std::set<std::string> seen;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string text = label(values[i]);
    if (!seen.insert(text).second) {
      out.push_back(
          {indexed(field, i),
           InputError(file,
                      indexed(field, i),
                      text,
                      "appears twice",
                      "each value of an axis must be distinct (generator values are rounded)")
               .what()});
    }
  }
}

}  // namespace

std::string RecurrenceChoice::label() const {
  if (fixed)
    return kFixedLabel;
  return poisson_control ? kPoissonLabel : std::to_string(mean_recurrence);
}

SweepFileError::SweepFileError(const std::string& file, std::vector<std::string> problems)
    : InputError(file, "", problems.empty() ? "(sweep)" : problems.front(), "invalid sweep file"),
      problems_(std::move(problems)) {
  for (const auto& p : problems_)
    all_ += (all_.empty() ? "" : "\n") + p;
  if (problems_.size() > 1)
    all_ += "\n(" + std::to_string(problems_.size()) + " problems)";
}

std::vector<double> expand_generator(const nlohmann::json& generator,
                                     const std::string& file,
                                     const std::string& field) {
  if (!is_generator(generator)) {
    throw InputError(file,
                     field,
                     generator.dump(),
                     "expected a generator",
                     "one of {\"logspace\": [lo, hi, n]}, {\"linspace\": [lo, hi, n]}, "
                     "{\"range\": [start, stop, step]}");
  }
  // Not a structured binding of *items().begin(): that proxy dies at the end of the statement,
  // and the key it names with it (AddressSanitizer: stack-use-after-scope).
  const std::string kind = generator.begin().key();
  const nlohmann::json& args = generator.begin().value();
  const std::string at = field + "." + kind;
  if (!args.is_array() || args.size() != 3) {
    throw InputError(file, at, args.dump(), "expected three numbers");
  }
  for (size_t i = 0; i < 3; ++i) {
    if (!args[i].is_number() || !std::isfinite(args[i].get<double>())) {
      throw InputError(file, indexed(at, i), args[i].dump(), "expected a finite number");
    }
  }
  const double a = args[0].get<double>(), b = args[1].get<double>(), c = args[2].get<double>();
  std::vector<double> out;
  if (kind == "range") {
    if (c <= 0)
      throw InputError(file, indexed(at, 2), args[2].dump(), "expected a positive step");
    if (b < a)
      throw InputError(file, indexed(at, 1), args[1].dump(), "expected stop >= start");
    // Counting steps instead of accumulating keeps [0.1, 0.3, 0.1] at three values.
    const auto n = static_cast<int64_t>(std::floor((b - a) / c * (1 + 1e-12))) + 1;
    if (n > 1000000)
      throw InputError(file, at, args.dump(), "expected at most 1000000 values");
    for (int64_t i = 0; i < n; ++i)
      out.push_back(a + static_cast<double>(i) * c);
    return out;
  }
  const int64_t n = detail::integer_value(args[2], file, indexed(at, 2));
  if (n < 1 || n > 1000000)
    throw InputError(file, indexed(at, 2), args[2].dump(), "expected a count from 1 to 1000000");
  if (kind == "logspace" && (a <= 0 || b <= 0)) {
    throw InputError(file, at, args.dump(), "expected positive ends for a logspace");
  }
  if (n == 1)
    return {a};
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / static_cast<double>(n - 1);
    if (i == n - 1) {
      out.push_back(b);  // the end exactly, not exp(log) of it
    } else if (kind == "logspace") {
      out.push_back(a * std::pow(b / a, t));
    } else {
      out.push_back(a + (b - a) * t);
    }
  }
  return out;
}

std::vector<std::string> budget_ids_for(const std::vector<double>& flops) {
  for (int digits = 3; digits <= 17; ++digits) {
    std::vector<std::string> ids;
    for (double f : flops) {
      char buffer[40];
      std::snprintf(buffer, sizeof(buffer), "%.*g", digits, f);
      std::string text = buffer;
      const size_t e = text.find("e+");
      if (e != std::string::npos) {
        std::string exponent = text.substr(e + 2);
        while (exponent.size() > 1 && exponent.front() == '0')
          exponent.erase(0, 1);
        text = text.substr(0, e) + "e" + exponent;
      }
      ids.push_back(text);
    }
    if (std::set<std::string>(ids.begin(), ids.end()).size() == ids.size())
      return ids;
  }
  std::vector<std::string> ids;
  for (double f : flops)
    ids.push_back(budget_id_for(f));
  return ids;
}

std::string budget_id_for(double flops) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", flops);
  std::string text = buffer;
  // "1e+18" -> "1e18", "2.5e+18" -> "2.5e18"
  const size_t e = text.find("e+");
  if (e != std::string::npos) {
    std::string exponent = text.substr(e + 2);
    while (exponent.size() > 1 && exponent.front() == '0')
      exponent.erase(0, 1);
    text = text.substr(0, e) + "e" + exponent;
  }
  return text;
}

namespace {

// The checks of one set of axes (the sweep's, or a budget's), fields under `prefix`.
void validate_axes(const SweepAxes& axes,
                   const std::string& prefix,
                   const std::string& file,
                   std::vector<Problem>& out) {
  auto add = [&](const std::string& field,
                 const std::string& value,
                 const std::string& expected,
                 const std::string& hint = "") {
    out.push_back({field, InputError(file, field, value, expected, hint).what()});
  };
  if (axes.models.empty())
    add("model", "(none)", "expected a base model or a model axis");
  check_unique(
      axes.models,
      prefix + ".model",
      [](const ModelChoice& m) { return "\"" + m.label + "\""; },
      file,
      out);
  for (const ModelChoice& m : axes.models) {
    const bool looped = m.config.is_looped();
    const std::string where =
        axes.models.size() > 1 ? prefix + ".model (\"" + m.label + "\")" : "model";
    if (!axes.n_layers.empty() && looped) {
      add(prefix + ".n_layers",
          where,
          "applies to the transformer family only",
          "vary n_recurrent for a looped model");
    }
    if (!axes.n_recurrent.empty() && !looped) {
      add(prefix + ".n_recurrent",
          where,
          "applies to looped models only",
          "vary n_layers for a transformer");
    }
    if (!axes.mean_recurrence.empty() && !looped) {
      add(prefix + ".mean_recurrence",
          where,
          "applies to looped models only",
          "a transformer has no recurrence");
    }
  }
  for (size_t i = 0; i < axes.n_layers.size(); ++i) {
    if (axes.n_layers[i] < 1)
      add(indexed(prefix + ".n_layers", i), std::to_string(axes.n_layers[i]), "expected >= 1");
  }
  for (size_t i = 0; i < axes.n_recurrent.size(); ++i) {
    if (axes.n_recurrent[i] < 1)
      add(indexed(prefix + ".n_recurrent", i),
          std::to_string(axes.n_recurrent[i]),
          "expected >= 1");
  }
  for (size_t i = 0; i < axes.mean_recurrence.size(); ++i) {
    if (axes.mean_recurrence[i].mean_recurrence < 1) {
      add(indexed(prefix + ".mean_recurrence", i),
          std::to_string(axes.mean_recurrence[i].mean_recurrence),
          "expected an integer >= 1, \"1-fixed\" or \"1-poisson\"");
    }
  }
  for (size_t i = 0; i < axes.d_model.size(); ++i) {
    const int d = axes.d_model[i];
    for (const ModelChoice& m : axes.models) {
      const int head_dim = m.config.head_dim;
      if (d < 1 || head_dim < 1 || d % head_dim != 0) {
        add(indexed(prefix + ".d_model", i),
            std::to_string(d),
            "expected a positive multiple of head_dim = " + std::to_string(head_dim) +
                " of model \"" + m.label + "\"",
            "n_heads = d_model / head_dim");
        break;
      }
    }
  }
  auto int_label = [](auto v) { return std::to_string(v); };
  check_unique(axes.d_model, prefix + ".d_model", int_label, file, out);
  check_unique(axes.n_layers, prefix + ".n_layers", int_label, file, out);
  check_unique(axes.n_recurrent, prefix + ".n_recurrent", int_label, file, out);
  check_unique(
      axes.mean_recurrence,
      prefix + ".mean_recurrence",
      [](const RecurrenceChoice& r) { return r.label(); },
      file,
      out);
}

// Cells the planner would expand the spec into, as a double: a product of axis sizes can
// overflow any integer.
double cell_count(const SweepSpec& spec) {
  auto size = [](const auto& axis) {
    return static_cast<double>(std::max<size_t>(axis.size(), 1));
  };
  auto model_picks = [&](const SweepAxes& axes) {
    return size(axes.models) * size(axes.d_model) * size(axes.n_layers) * size(axes.n_recurrent) *
           size(axes.mean_recurrence);
  };
  const double seeds = size(spec.axes.seeds);
  if (spec.budgets.empty())
    return size(spec.axes.train_tokens) * model_picks(spec.axes) * seeds;
  double cells = 0;
  for (const Budget& b : spec.budgets)
    cells += model_picks(b.has_axes ? b.axes : spec.axes) * seeds;
  return cells;
}

// The checks of SweepSpec::validate(), with the field each problem is about.
std::vector<Problem> validate_spec(const SweepSpec& spec) {
  const std::string& file = spec.file;
  std::vector<Problem> out;
  auto add = [&](const std::string& field,
                 const std::string& value,
                 const std::string& expected,
                 const std::string& hint = "") {
    out.push_back({field, InputError(file, field, value, expected, hint).what()});
  };
  if (!valid_name(spec.name)) {
    add("name",
        "\"" + spec.name + "\"",
        "expected 1-128 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
        "it names folders and database rows");
  }
  if (spec.budgets.empty() == spec.axes.train_tokens.empty()) {
    add(spec.budgets.empty() ? "budgets" : "axes.train_tokens",
        spec.budgets.empty() ? "(missing)" : "(both given)",
        "expected exactly one of budgets (isoFLOP cells) or axes.train_tokens (fixed-data cells)");
  }
  std::set<double> budget_values;
  for (size_t i = 0; i < spec.budgets.size(); ++i) {
    const Budget& b = spec.budgets[i];
    if (!valid_budget_id(b.id)) {
      add(indexed("budgets", i) + ".id",
          "\"" + b.id + "\"",
          "expected 1-64 letters, digits, '.', '_', '+' or '-'");
    }
    if (!std::isfinite(b.flops) || b.flops <= 0) {
      add(indexed("budgets", i) + ".flops",
          number_text(b.flops),
          "expected a positive number such as 1e18");
    } else if (!budget_values.insert(b.flops).second) {
      add(indexed("budgets", i) + ".flops", number_text(b.flops), "appears twice");
    }
  }
  check_unique(
      spec.budgets, "budgets", [](const Budget& b) { return "\"" + b.id + "\""; }, file, out);
  validate_axes(spec.axes, "axes", file, out);
  for (size_t i = 0; i < spec.budgets.size(); ++i) {
    if (spec.budgets[i].has_axes)
      validate_axes(spec.budgets[i].axes, indexed("budgets", i) + ".axes", file, out);
  }
  for (size_t i = 0; i < spec.axes.train_tokens.size(); ++i) {
    if (spec.axes.train_tokens[i] < 1)
      add(indexed("axes.train_tokens", i),
          std::to_string(spec.axes.train_tokens[i]),
          "expected >= 1");
  }
  for (size_t i = 0; i < spec.axes.train_tokens.size(); ++i) {
    if (spec.axes.train_tokens[i] > kMaxTrainTokens)
      add(indexed("axes.train_tokens", i),
          std::to_string(spec.axes.train_tokens[i]),
          "expected at most " + std::to_string(kMaxTrainTokens) + " = 2^53 tokens");
  }
  auto int_label = [](auto v) { return std::to_string(v); };
  check_unique(spec.axes.train_tokens, "axes.train_tokens", int_label, file, out);
  check_unique(spec.axes.seeds, "axes.seed", int_label, file, out);
  if (spec.axes.seeds.empty())
    add("axes.seed", "[]", "expected at least one seed");
  // Checked here as well as for each job: with no valid batch the planner would find no cell
  // worth keeping and record nothing, without a word.
  if (spec.training.batch_tokens < 1) {
    add("training.batch_tokens",
        std::to_string(spec.training.batch_tokens),
        "expected a positive number of tokens per optimizer step");
  }
  if (spec.training.micro_batch_size < 1) {
    add("training.micro_batch_size",
        std::to_string(spec.training.micro_batch_size),
        "expected a positive number of sequences per forward pass");
  }
  const double cells = cell_count(spec);
  if (cells > static_cast<double>(kMaxCellsPerSweep)) {
    add(spec.budgets.empty() ? "axes" : "budgets",
        fmt::format("({:.0f} cells)", cells),
        "expected at most " + std::to_string(kMaxCellsPerSweep) + " cells in one sweep",
        "split the study into several sweeps");
  }
  if (spec.resources.gpus_per_job < 1)
    add("resources.gpus_per_job", std::to_string(spec.resources.gpus_per_job), "expected >= 1");
  if (spec.resources.jobs_per_gpu < 1)
    add("resources.jobs_per_gpu", std::to_string(spec.resources.jobs_per_gpu), "expected >= 1");
  if (spec.resources.gpus_per_job > 1 && spec.resources.jobs_per_gpu > 1) {
    add("resources.jobs_per_gpu",
        std::to_string(spec.resources.jobs_per_gpu),
        "expected 1 when gpus_per_job > 1",
        "only single-GPU jobs are packed");
  }
  if (spec.device != "auto" && spec.device != "cpu" && spec.device != "cuda") {
    add("device",
        "\"" + spec.device + "\"",
        "expected \"auto\", \"cpu\" or \"cuda\"",
        suggestion_hint(spec.device, {"auto", "cpu", "cuda"}));
  }
  if (spec.checkpoint_interval_steps < 0)
    add("checkpoint_interval_steps",
        std::to_string(spec.checkpoint_interval_steps),
        "expected >= 0");
  if (spec.plan.min_steps < 0)
    add("plan.min_steps", std::to_string(spec.plan.min_steps), "expected >= 0");
  if (!(spec.plan.max_flop_gap > 0 && spec.plan.max_flop_gap < 1))
    add("plan.max_flop_gap",
        number_text(spec.plan.max_flop_gap),
        "expected a fraction between 0 and 1, such as 0.01");
  if (!(spec.plan.throughput_flops_per_s > 0) || !std::isfinite(spec.plan.throughput_flops_per_s)) {
    add("plan.throughput_flops_per_s",
        number_text(spec.plan.throughput_flops_per_s),
        "expected a positive number such as 4e14");
  }
  if (spec.has_refine) {
    const RefineSettings& r = spec.refine;
    if (r.axis != "mean_recurrence") {
      add("refine.axis",
          "\"" + r.axis + "\"",
          "expected \"mean_recurrence\", the axis refinement supports",
          suggestion_hint(r.axis, {"mean_recurrence"}));
    }
    if (!(r.exponent_ci_width > 0) || !std::isfinite(r.exponent_ci_width)) {
      add("refine.until.exponent_ci_width",
          number_text(r.exponent_ci_width),
          "expected a positive width such as 0.05");
    }
    if (r.max_rounds < 1)
      add("refine.max_rounds", std::to_string(r.max_rounds), "expected >= 1");
    if (!(r.max_flops >= 0) || !std::isfinite(r.max_flops))
      add("refine.max_flops", number_text(r.max_flops), "expected >= 0 FLOPs (0: no cap)");
    if (!(r.step > 1) || !std::isfinite(r.step))
      add("refine.step", number_text(r.step), "expected a ratio > 1, such as 2");
    if (spec.budgets.empty()) {
      add("refine", "(with axes.train_tokens)", "expected budgets: refinement fits isoFLOP minima");
    }
  }
  if (spec.data.train_patterns.empty())
    add("data.train", "[]", "expected at least one path or glob");
  if (spec.data.val_patterns.empty())
    add("data.val", "[]", "expected at least one path or glob");
  return out;
}

}  // namespace

std::vector<std::string> SweepSpec::validate() const {
  std::vector<std::string> messages;
  for (const Problem& p : validate_spec(*this))
    messages.push_back(p.message);
  return messages;
}

SweepSpec sweep_spec_from_json(const nlohmann::json& document,
                               const std::string& file,
                               const SweepReadOptions& options) {
  SweepSpec spec;
  spec.file = file;
  spec.source = document;
  Problems problems(file);
  if (!check_keys(document,
                  {"name",
                   "description",
                   "data",
                   "model",
                   "budgets",
                   "axes",
                   "training",
                   "eval",
                   "resources",
                   "device",
                   "checkpoint_interval_steps",
                   "flop_convention",
                   "plan",
                   "refine"},
                  "",
                  problems)) {
    throw SweepFileError(file, problems.lines());
  }
  const detail::JsonAt top{file, ""};
  problems.guard([&] {
    if (!document.contains("name"))
      problems.add("name", "(missing)", "expected a string such as \"mu-sweep-140m\"");
    detail::read_field(document, "name", top, spec.name);
  });
  problems.guard([&] { detail::read_field(document, "description", top, spec.description); });
  problems.guard([&] {
    if (!document.contains("data")) {
      problems.add("data", "(missing)", "expected {\"train\": [...], \"val\": [...]}");
      return;
    }
    read_data(document.at("data"), options, problems, spec.data);
  });
  const nlohmann::json* axes = document.contains("axes") ? &document.at("axes") : nullptr;
  problems.guard([&] {
    const nlohmann::json* base = document.contains("model") ? &document.at("model") : nullptr;
    const nlohmann::json* model_axis =
        axes != nullptr && axes->is_object() && axes->contains("model") ? &axes->at("model")
                                                                        : nullptr;
    read_models(base, model_axis, problems, spec.axes);
  });
  problems.guard([&] {
    if (axes != nullptr)
      read_axes(*axes, problems, spec.axes);
  });
  problems.guard([&] {
    const nlohmann::json* base = document.contains("model") ? &document.at("model") : nullptr;
    if (document.contains("budgets"))
      read_budgets(document.at("budgets"), spec.axes, base, problems, spec.budgets);
  });
  const nlohmann::json* training =
      document.contains("training") ? &document.at("training") : nullptr;
  bool training_read = false;  // a bad "training" is reported once, not again for every model
  problems.guard([&] {
    if (training != nullptr)
      spec.training = training_config_from_json(*training, file, "training");
    training_read = true;
  });
  if (training_read) {
    resolve_training(training, spec.axes, problems);
    for (Budget& budget : spec.budgets)
      resolve_training(training, budget.axes, problems);
  }
  problems.guard([&] {
    if (document.contains("flop_convention"))
      spec.flop_convention =
          flop_convention_from_json(document.at("flop_convention"), file, "flop_convention");
  });
  problems.guard([&] {
    if (document.contains("eval"))
      spec.eval = eval_config_from_json(document.at("eval"), file, "eval");
  });
  problems.guard([&] {
    if (document.contains("resources"))
      read_resources(document.at("resources"), problems, spec.resources);
  });
  problems.guard([&] { detail::read_field(document, "device", top, spec.device); });
  problems.guard([&] {
    detail::read_field(document, "checkpoint_interval_steps", top, spec.checkpoint_interval_steps);
  });
  problems.guard([&] {
    if (document.contains("plan"))
      read_plan(document.at("plan"), problems, spec.plan);
  });
  problems.guard([&] {
    spec.has_refine = document.contains("refine");
    if (spec.has_refine)
      read_refine(document.at("refine"), problems, spec.refine);
  });
  for (const Problem& p : validate_spec(spec)) {
    // A value that could not be read is reported once, by the reader.
    if (!problems.reported(p.field))
      problems.lines().push_back(p.message);
  }
  if (!problems.lines().empty())
    throw SweepFileError(file, problems.lines());
  return spec;
}

SweepSpec read_sweep_file(const std::string& path, const SweepReadOptions& options) {
  // Sweep files are written by hand, so comments are allowed, as in JSONC.
  nlohmann::json document = detail::read_json_file(path, /*allow_comments=*/true);
  apply_overrides(document, options.overrides, path);
  return sweep_spec_from_json(document, path, options);
}

}  // namespace parcae::sweeps
