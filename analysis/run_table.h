// Tables of runs with named columns: a CSV file, or a sweep's runs (analysis.h's runs_table).
//
// RFC 4180 quoting (double quotes, doubled inside), a header row, and numeric columns read with
// errors that name the file, the row (1-based, header excluded) and the column, so that a bad
// value is found at once. Rows can instead be skipped and reported (--skip-bad-rows).
#pragma once

#include <string>
#include <vector>

namespace parcae::analysis {

struct RunTable {
  std::string file;  // the CSV's path, or "sweep NAME"
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  // Index of a column; throws InputError naming the file, with the closest header name.
  size_t column(const std::string& name) const;
  bool has_column(const std::string& name) const;
};

// Throws InputError when the file cannot be read, is empty, or a row has a different number of
// fields than the header (naming the row).
RunTable read_csv(const std::string& path);

// What a numeric column must hold.
struct NumericColumnSpec {
  std::string name;
  bool positive = false;  // values go through a logarithm: must be > 0
  bool optional = false;  // empty name means "not requested"
};

struct NumericColumns {
  std::vector<std::vector<double>> values;  // one vector per spec, in spec order (empty if absent)
  std::vector<size_t> rows;                 // the 1-based data rows kept
  std::vector<std::string> skipped;         // "row 17, column loss = 'x': expected a number"
};

// Reads the named columns of every row, or of `only` (0-based rows) when given. A missing,
// non-numeric, non-finite or (where positive) non-positive value throws InputError naming the
// row and column, unless skip_bad_rows, in which case the row is dropped and described in
// `skipped`.
NumericColumns read_numeric_columns(const RunTable& table,
                                    const std::vector<NumericColumnSpec>& specs,
                                    bool skip_bad_rows,
                                    const std::vector<size_t>* only = nullptr);

}  // namespace parcae::analysis
