// Hydra-style overrides of a sweep file's document from the command line:
// `sweep plan FILE training.batch_tokens=8192 model.d_model=512`. Each override is a path of
// object keys and list indices joined by dots (`budgets.0.flops`, or `budgets[0].flops`) and a
// value read as JSON when it parses as JSON (8192, 1e12, true, [2, 4], {"preset": "x"}) and as
// text otherwise (`device=cpu`); where the file has text, a number stays text
// (`budgets.0.id=2e11`). `KEY=VALUE` sets the key, creating objects on the way;
// `+KEY=VALUE` adds a key that must not be there yet, `++KEY=VALUE` sets it either way, and `~KEY`
// removes it, as in Hydra. A model given as a preset name becomes {"preset": NAME} when a key
// inside it is set, so that `model.d_model=512` works on `"model": "parcae-micro"`.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "sweeps/error.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {
namespace {

constexpr char kExample[] = "expected KEY=VALUE such as training.batch_tokens=8192";

// One step of a path: an object key, or a list index.
struct Step {
  std::string key;
  long index = -1;  // >= 0 for a list index
};

bool all_digits(const std::string& text) {
  return !text.empty() && text.size() < 10 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::vector<Step> parse_path(const std::string& path,
                             const std::string& file,
                             const std::string& text) {
  std::vector<Step> steps;
  size_t i = 0;
  const auto bad = [&]() {
    return InputError(file,
                      path.empty() ? "(override)" : path,
                      "'" + text + "'",
                      "expected a path of keys and indices such as budgets.0.flops or "
                      "axes.mean_recurrence");
  };
  while (i < path.size()) {
    size_t end = path.find_first_of(".[", i);
    if (end == std::string::npos)
      end = path.size();
    const std::string part = path.substr(i, end - i);
    if (part.empty())
      throw bad();
    steps.push_back(all_digits(part) ? Step{"", std::stol(part)} : Step{part, -1});
    i = end;
    while (i < path.size() && path[i] == '[') {
      const size_t close = path.find(']', i);
      const std::string index = close == std::string::npos ? "" : path.substr(i + 1, close - i - 1);
      if (!all_digits(index))
        throw bad();
      steps.push_back({"", std::stol(index)});
      i = close + 1;
    }
    if (i < path.size()) {
      if (path[i] != '.' || i + 1 == path.size())
        throw bad();
      ++i;
    }
  }
  if (steps.empty())
    throw bad();
  return steps;
}

std::string path_text(const std::vector<Step>& steps, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (steps[i].index >= 0)
      out += "[" + std::to_string(steps[i].index) + "]";
    else
      out += (out.empty() ? "" : ".") + steps[i].key;
  }
  return out;
}

}  // namespace

void apply_overrides(nlohmann::json& document,
                     const std::vector<std::string>& overrides,
                     const std::string& file) {
  for (const std::string& text : overrides) {
    std::string rest = text;
    enum class Mode { kSet, kAdd, kForce, kDelete } mode = Mode::kSet;
    if (rest.rfind("++", 0) == 0) {
      mode = Mode::kForce;
      rest.erase(0, 2);
    } else if (rest.rfind("+", 0) == 0) {
      mode = Mode::kAdd;
      rest.erase(0, 1);
    } else if (rest.rfind("~", 0) == 0) {
      mode = Mode::kDelete;
      rest.erase(0, 1);
    }
    const size_t equals = rest.find('=');
    if (equals == std::string::npos && mode != Mode::kDelete)
      throw InputError(file, "(override)", "'" + text + "'", kExample);
    const std::string path = rest.substr(0, equals);
    const std::vector<Step> steps = parse_path(path, file, text);
    nlohmann::json value;
    std::string raw;
    if (equals != std::string::npos) {
      raw = rest.substr(equals + 1);
      value = nlohmann::json::parse(raw, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded())
        value = raw;  // not JSON: the text itself, as Hydra reads `device=cpu`
    }
    // Where the file has text, a scalar stays text: budgets.0.id=2e11 is the id "2e11".
    const auto typed = [&](const nlohmann::json& old) {
      return old.is_string() && value.is_primitive() && !value.is_string() ? nlohmann::json(raw)
                                                                           : value;
    };
    nlohmann::json* node = &document;
    for (size_t i = 0; i + 1 <= steps.size(); ++i) {
      const Step& step = steps[i];
      const bool last = i + 1 == steps.size();
      const std::string at = path_text(steps, i + 1);
      if (node->is_string() && !node->get<std::string>().empty() && i > 0 &&
          steps[i - 1].key == "model") {
        *node = nlohmann::json{{"preset", node->get<std::string>()}};
      }
      if (step.index >= 0) {
        if (!node->is_array() || static_cast<size_t>(step.index) >= node->size()) {
          throw InputError(file,
                           at,
                           "'" + text + "'",
                           node->is_array()
                               ? "the list has " + std::to_string(node->size()) + " entries"
                               : "is not a list in the sweep file");
        }
        if (last) {
          if (mode == Mode::kDelete)
            node->erase(static_cast<size_t>(step.index));
          else
            (*node)[static_cast<size_t>(step.index)] =
                typed((*node)[static_cast<size_t>(step.index)]);
          break;
        }
        node = &(*node)[static_cast<size_t>(step.index)];
        continue;
      }
      if (node->is_null())
        *node = nlohmann::json::object();
      if (!node->is_object()) {
        throw InputError(file,
                         path_text(steps, i),
                         node->dump(),
                         "is not an object, so " + at + " cannot be set (override '" + text + "')");
      }
      if (last) {
        const bool present = node->contains(step.key);
        if (mode == Mode::kAdd && present) {
          throw InputError(file,
                           at,
                           "'" + text + "'",
                           "is already in the sweep file",
                           "set it with " + path + "=VALUE or ++" + path + "=VALUE");
        }
        if (mode == Mode::kDelete) {
          if (!present)
            throw InputError(file, at, "'" + text + "'", "is not in the sweep file");
          node->erase(step.key);
        } else {
          (*node)[step.key] = present ? typed((*node)[step.key]) : value;
        }
        break;
      }
      node = &(*node)[step.key];
    }
  }
}

}  // namespace parcae::sweeps
