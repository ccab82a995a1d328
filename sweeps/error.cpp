// Message formatting for parcae::InputError.
#include "sweeps/error.h"

#include <utility>

namespace parcae {
namespace {

std::string format_message(const std::string& file,
                           const std::string& field,
                           const std::string& value,
                           const std::string& expected,
                           const std::string& hint) {
  std::string message = file.empty() ? std::string() : file + ": ";
  message += field.empty() ? value : field + " = " + value;
  message += ": " + expected;
  if (!hint.empty())
    message += "; " + hint;
  return message;
}

}  // namespace

InputError::InputError(
    std::string file, std::string field, std::string value, std::string expected, std::string hint)
    : Error(format_message(file, field, value, expected, hint)),
      file_(std::move(file)),
      field_(std::move(field)),
      value_(std::move(value)) {}

}  // namespace parcae
