// Typed JSON field reads shared by every parser of ours.
#include "sweeps/json_fields.h"

#include <cmath>
#include <limits>

#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::sweeps::detail {

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
