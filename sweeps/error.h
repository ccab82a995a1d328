// parcae::Error and parcae::InputError: the two exception types every library of ours throws.
// InputError carries the file, the field path, the value found and what was expected, so that a
// bad sweep file, job file or flag is fixed in one pass. The two main()s catch parcae::Error,
// print one line and choose the exit code; libraries never print or exit.
#pragma once

#include <stdexcept>
#include <string>

namespace parcae {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "FILE: FIELD = VALUE: EXPECTED" (hint appended after "; ").
class InputError : public Error {
 public:
  InputError(std::string file,
             std::string field,
             std::string value,
             std::string expected,
             std::string hint = "");

  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }
  const std::string& value() const { return value_; }

 private:
  std::string file_;
  std::string field_;
  std::string value_;
};

}  // namespace parcae
