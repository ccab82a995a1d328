// Typed JSON field reads shared by every parser of ours.
#include "sweeps/json_fields.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::sweeps::detail {
namespace {

// Follows the parser's events to know where it is, so that a refusal can name the field.
class DocumentPosition {
 public:
  explicit DocumentPosition(const std::string& file) : file_(file) {}

  bool on_event(nlohmann::json::parse_event_t event, const nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (static_cast<int>(frames_.size()) >= kMaxJsonDepth) {
          throw InputError(file_,
                           path(),
                           "(more than " + std::to_string(kMaxJsonDepth) + " levels deep)",
                           "expected at most " + std::to_string(kMaxJsonDepth) +
                               " levels of nested objects and arrays");
        }
        frames_.push_back({event == Event::array_start, 0, "", {}});
        break;
      case Event::key: {
        Frame& top = frames_.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second) {
          throw InputError(file_,
                           path(),
                           "(given twice)",
                           "expected each key once in an object",
                           "remove one of the two; JSON does not say which one counts");
        }
        break;
      }
      case Event::object_end:
      case Event::array_end:
        frames_.pop_back();
        value_done();
        break;
      case Event::value:
        value_done();
        break;
    }
    return true;
  }

  // The dotted path of the value being read: "training.batch_tokens", "budgets[2].flops".
  std::string path() const {
    std::string out;
    for (const Frame& f : frames_) {
      if (f.is_array)
        out += "[" + std::to_string(f.index) + "]";
      else if (!f.key.empty() || !f.keys.empty())
        out += (out.empty() ? "" : ".") + f.key;
    }
    return out.empty() ? "(top level)" : out;
  }

 private:
  struct Frame {
    bool is_array = false;
    size_t index = 0;  // of the element being read, for an array
    std::string key;   // of the member being read, for an object
    std::set<std::string> keys;
  };

  void value_done() {
    if (!frames_.empty() && frames_.back().is_array)
      ++frames_.back().index;
  }

  const std::string& file_;
  std::vector<Frame> frames_;
};

// The text nlohmann quotes in its messages ("number overflow parsing '1e400'"), else "".
std::string quoted_part(const std::string& message) {
  const size_t open = message.find('\'');
  const size_t close = open == std::string::npos ? open : message.find('\'', open + 1);
  return close == std::string::npos ? "" : message.substr(open + 1, close - open - 1);
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string without_tag(const std::string& message) {
  const size_t end = message.find("] ");
  return message.rfind("[json.exception.", 0) == 0 && end != std::string::npos
             ? message.substr(end + 2)
             : message;
}

}  // namespace

nlohmann::json parse_json_document(const std::string& text,
                                   const std::string& file,
                                   bool allow_comments) {
  DocumentPosition position(file);
  try {
    return nlohmann::json::parse(
        text,
        [&position](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          return position.on_event(event, parsed);
        },
        /*allow_exceptions=*/true,
        allow_comments);
  } catch (const nlohmann::json::out_of_range& e) {
    // Numbers are the only values the parser finds out of range.
    const std::string value = quoted_part(e.what());
    throw InputError(file,
                     position.path(),
                     value.empty() ? "(number)" : value,
                     "expected a number within the range of a double (about 1.8e308)");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file, "", "(file)", "is not valid JSON: " + without_tag(e.what()));
  }
}

nlohmann::json read_json_file(const std::string& path, bool allow_comments) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError(path, "", "(file)", "is a folder, expected a JSON file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(
        path, "", "(file)", std::string("cannot be opened for reading: ") + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw InputError(path, "", "(file)", "cannot be read");
  return parse_json_document(text.str(), path, allow_comments);
}

void require_object_with_keys(const nlohmann::json& object,
                              const std::vector<std::string>& allowed,
                              const JsonAt& at) {
  if (!object.is_object()) {
    throw InputError(
        at.file, at.path.empty() ? "(top level)" : at.path, object.dump(), "expected an object");
  }
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (const auto& k : allowed)
      known = known || k == key;
    if (!known) {
      throw InputError(
          at.file, at.field(key), value.dump(), "unknown field", suggestion_hint(key, allowed));
    }
  }
}

int64_t integer_value(const nlohmann::json& value,
                      const std::string& file,
                      const std::string& field) {
  if (value.is_number_integer())
    return value.get<int64_t>();
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.2e18)
      return static_cast<int64_t>(v);
    if (std::isfinite(v) && std::floor(v) == v) {
      // JSON has no size limit on integers; ours are 64-bit.
      throw InputError(file, field, value.dump(), "expected an integer of magnitude below 9.2e18");
    }
  }
  throw InputError(file, field, value.dump(), "expected an integer");
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                double& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    throw InputError(at.file, at.field(key), v.dump(), "expected a finite number");
  }
  out = v.get<double>();
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                int64_t& out) {
  if (!object.contains(key))
    return;
  out = integer_value(object.at(key), at.file, at.field(key));
}

void read_field(const nlohmann::json& object, const std::string& key, const JsonAt& at, int& out) {
  if (!object.contains(key))
    return;
  const int64_t v = integer_value(object.at(key), at.file, at.field(key));
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    throw InputError(at.file, at.field(key), object.at(key).dump(), "expected a 32-bit integer");
  }
  out = static_cast<int>(v);
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                uint64_t& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return;
  }
  const int64_t signed_value = integer_value(v, at.file, at.field(key));
  if (signed_value < 0)
    throw InputError(at.file, at.field(key), v.dump(), "expected a non-negative integer");
  out = static_cast<uint64_t>(signed_value);
}

void read_field(const nlohmann::json& object, const std::string& key, const JsonAt& at, bool& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (!v.is_boolean())
    throw InputError(at.file, at.field(key), v.dump(), "expected true or false");
  out = v.get<bool>();
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::string& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (!v.is_string())
    throw InputError(at.file, at.field(key), v.dump(), "expected a string");
  out = v.get<std::string>();
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::vector<int>& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (!v.is_array())
    throw InputError(at.file, at.field(key), v.dump(), "expected a list of integers");
  std::vector<int> values;
  for (size_t i = 0; i < v.size(); ++i) {
    values.push_back(static_cast<int>(
        integer_value(v[i], at.file, at.field(key) + "[" + std::to_string(i) + "]")));
  }
  out = values;
}

void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::vector<std::string>& out) {
  if (!object.contains(key))
    return;
  const auto& v = object.at(key);
  if (!v.is_array())
    throw InputError(at.file, at.field(key), v.dump(), "expected a list of strings");
  std::vector<std::string> values;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      throw InputError(
          at.file, at.field(key) + "[" + std::to_string(i) + "]", v[i].dump(), "expected a string");
    }
    values.push_back(v[i].get<std::string>());
  }
  out = values;
}

}  // namespace parcae::sweeps::detail
