// CSV reading with row- and column-precise errors.
#include "analysis/run_table.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::analysis {
namespace {

// Splits one record; `line` may continue over several physical lines inside quotes.
bool parse_record(std::istream& in, std::vector<std::string>& fields) {
  fields.clear();
  std::string field, line;
  bool in_quotes = false, any = false;
  char c;
  while (in.get(c)) {
    any = true;
    if (in_quotes) {
      if (c == '"') {
        if (in.peek() == '"') {
          field += '"';
          in.get();
        } else {
          in_quotes = false;
        }
      } else {
        field += c;
      }
    } else if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      fields.push_back(field);
      field.clear();
    } else if (c == '\n') {
      break;
    } else if (c != '\r') {
      field += c;
    }
  }
  if (!any)
    return false;
  fields.push_back(field);
  return true;
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string::npos)
    return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

}  // namespace

size_t RunTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name)
      return i;
  }
  throw InputError(
      file, "column", "'" + name + "'", "no such column", sweeps::suggestion_hint(name, header));
}

bool RunTable::has_column(const std::string& name) const {
  return std::find(header.begin(), header.end(), name) != header.end();
}

RunTable read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw InputError(path, "", "(file)", "cannot be opened for reading");
  RunTable table;
  table.file = path;
  std::vector<std::string> fields;
  if (!parse_record(in, fields))
    throw InputError(path, "", "(file)", "is empty; expected a header row");
  for (auto& f : fields)
    table.header.push_back(trim(f));
  size_t row = 0;
  while (parse_record(in, fields)) {
    ++row;
    if (fields.size() == 1 && trim(fields[0]).empty())
      continue;  // blank line
    if (fields.size() != table.header.size()) {
      throw InputError(path,
                       "row " + std::to_string(row),
                       std::to_string(fields.size()) + " fields",
                       "expected " + std::to_string(table.header.size()) + " like the header");
    }
    table.rows.push_back(fields);
  }
  return table;
}

NumericColumns read_numeric_columns(const RunTable& table,
                                    const std::vector<NumericColumnSpec>& specs,
                                    bool skip_bad_rows,
                                    const std::vector<size_t>* only) {
  std::vector<long> index(specs.size(), -1);
  for (size_t k = 0; k < specs.size(); ++k) {
    if (specs[k].optional && specs[k].name.empty())
      continue;
    index[k] = static_cast<long>(table.column(specs[k].name));
  }
  NumericColumns out;
  out.values.resize(specs.size());
  std::vector<size_t> every;
  if (only == nullptr) {
    for (size_t r = 0; r < table.rows.size(); ++r)
      every.push_back(r);
    only = &every;
  }
  for (size_t r : *only) {
    std::vector<double> row_values(specs.size(), 0.0);
    std::string problem, problem_field, problem_value;
    for (size_t k = 0; k < specs.size() && problem.empty(); ++k) {
      if (index[k] < 0)
        continue;
      const std::string text = trim(table.rows[r][static_cast<size_t>(index[k])]);
      char* end = nullptr;
      const double value = text.empty() ? NAN : std::strtod(text.c_str(), &end);
      problem_field = "row " + std::to_string(r + 1) + ", column " + specs[k].name;
      problem_value = "'" + text + "'";
      if (text.empty()) {
        problem = "expected a value (missing)";
      } else if (end == nullptr || *end != '\0') {
        problem = "expected a number";
      } else if (!std::isfinite(value)) {
        problem = "expected a finite number";
      } else if (specs[k].positive && value <= 0) {
        problem = "expected a positive number (its logarithm is taken)";
      }
      row_values[k] = value;
    }
    if (!problem.empty()) {
      if (!skip_bad_rows) {
        throw InputError(
            table.file, problem_field, problem_value, problem, "or pass --skip-bad-rows");
      }
      out.skipped.push_back(problem_field + " = " + problem_value + ": " + problem);
      continue;
    }
    out.rows.push_back(r + 1);
    for (size_t k = 0; k < specs.size(); ++k) {
      if (index[k] >= 0)
        out.values[k].push_back(row_values[k]);
    }
  }
  return out;
}

}  // namespace parcae::analysis
