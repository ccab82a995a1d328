// Which rows enter a fit: column aliases, --where conditions, the default that leaves out the
// fixed-depth controls, and --group-by.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "analysis/analysis.h"
#include "sweeps/error.h"
#include "sweeps/suggest.h"

namespace parcae::analysis {
namespace {

// Short names and the columns they may stand for, in order of preference.
const std::map<std::string, std::vector<std::string>>& aliases() {
  static const std::map<std::string, std::vector<std::string>> kAliases = {
      {"mu_rec", {"mean_recurrence"}},
      {"mu", {"mean_recurrence"}},
      {"mean_recurrence", {"mu_rec"}},
      {"params", {"parameters_total", "N"}},
      {"N", {"params", "parameters_total"}},
      {"tokens", {"train_tokens", "D"}},
      {"D", {"tokens", "train_tokens"}},
      {"loss", {"loss_val"}},
      {"budget", {"budget_flops"}},
      {"C", {"budget_flops"}},
      {"width", {"d_model"}},
  };
  return kAliases;
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string::npos)
    return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// The number a cell or a condition's value reads as; true/false as 1/0.
bool as_number(const std::string& text, double* value) {
  const std::string t = trim(text);
  if (t == "true") {
    *value = 1.0;
    return true;
  }
  if (t == "false") {
    *value = 0.0;
    return true;
  }
  if (t.empty())
    return false;
  char* end = nullptr;
  *value = std::strtod(t.c_str(), &end);
  return end != nullptr && *end == '\0';
}

bool holds(const Condition& c, const std::string& cell) {
  double a = 0.0, b = 0.0;
  if (as_number(cell, &a) && as_number(c.value, &b)) {
    if (c.op == "=" || c.op == "==")
      return a == b;
    if (c.op == "!=")
      return a != b;
    if (c.op == "<")
      return a < b;
    if (c.op == "<=")
      return a <= b;
    if (c.op == ">")
      return a > b;
    return a >= b;
  }
  const std::string text = trim(cell);
  if (c.op == "=" || c.op == "==")
    return text == c.value;
  if (c.op == "!=")
    return text != c.value;
  return false;  // an order on text is refused before any row is read
}

bool is_mean_recurrence(const std::string& column) {
  return column == "mean_recurrence" || column == "mu_rec";
}

}  // namespace

std::string resolve_column(const RunTable& table,
                           const std::string& name,
                           const std::string& flag) {
  if (table.has_column(name))
    return name;
  const auto it = aliases().find(name);
  if (it != aliases().end()) {
    for (const auto& alias : it->second) {
      if (table.has_column(alias))
        return alias;
    }
  }
  throw InputError(table.file,
                   flag,
                   "'" + name + "'",
                   "no such column",
                   sweeps::suggestion_hint(name, table.header));
}

Condition parse_condition(const std::string& text) {
  static const char* kOps[] = {"==", "!=", "<=", ">=", "=", "<", ">"};
  // The first operator decides: "a>=2" is a, >=, 2, never "a>" = "2".
  const size_t at = text.find_first_of("=!<>");
  for (const char* op : kOps) {
    const std::string o(op);
    if (at == std::string::npos || text.compare(at, o.size(), o) != 0)
      continue;
    Condition c{trim(text.substr(0, at)), o, trim(text.substr(at + o.size())), text};
    if (!c.column.empty() && !c.value.empty())
      return c;
    break;
  }
  throw InputError("",
                   "--where",
                   "'" + text + "'",
                   "expected COLUMN OP VALUE with OP one of = != < <= > >=",
                   "for example model=parcae-140m, mu_rec>=2 or fixed_depth=false");
}

std::string RowGroup::label() const {
  std::string out;
  for (const auto& [column, value] : key)
    out += (out.empty() ? "" : ", ") + column + "=" + value;
  return out;
}

SelectedRows select_rows(const RunTable& table,
                         const Selection& selection,
                         const std::string& x_column) {
  std::vector<Condition> conditions;
  std::vector<size_t> condition_columns;
  bool names_fixed_depth = false;
  for (const auto& text : selection.where) {
    Condition c = parse_condition(text);
    c.column = resolve_column(table, c.column, "--where " + text);
    double unused = 0.0;
    if (c.op != "=" && c.op != "==" && c.op != "!=" && !as_number(c.value, &unused)) {
      throw InputError(table.file,
                       "--where",
                       "'" + text + "'",
                       "expected a number after " + c.op,
                       "text compares with = or != only");
    }
    names_fixed_depth = names_fixed_depth || c.column == "fixed_depth" || c.column == "control" ||
                        c.column == "recurrence";
    condition_columns.push_back(table.column(c.column));
    conditions.push_back(c);
  }
  std::vector<size_t> group_columns;
  std::vector<std::string> group_names;
  for (const auto& name : selection.group_by) {
    const std::string column = resolve_column(table, name, "--group-by");
    group_columns.push_back(table.column(column));
    group_names.push_back(name);
  }
  // The default of §2 step 1: the mu_rec = 1 controls are their own series. A sweep's table
  // says exactly which rows are controls (control), and so does the jobs export (recurrence
  // "1-fixed" or "1-poisson"). Another CSV only says fixed_depth, which a transformer also has,
  // so there the default applies when x is the mean recurrence (a transformer has none); it
  // cannot tell a Poisson control from the axis's own mu_rec = 1, which is kept.
  long control_column = -1, recurrence_column = -1;
  if (!names_fixed_depth) {
    if (table.has_column("control"))
      control_column = static_cast<long>(table.column("control"));
    else if (table.has_column("recurrence"))
      recurrence_column = static_cast<long>(table.column("recurrence"));
    else if (is_mean_recurrence(x_column) && table.has_column("fixed_depth"))
      control_column = static_cast<long>(table.column("fixed_depth"));
  }
  auto is_control = [&](const std::vector<std::string>& row) {
    double flag = 0.0;
    if (control_column >= 0)
      return as_number(row[static_cast<size_t>(control_column)], &flag) && flag != 0.0;
    if (recurrence_column >= 0) {
      const std::string label = trim(row[static_cast<size_t>(recurrence_column)]);
      return label == "1-fixed" || label == "1-poisson";
    }
    return false;
  };

  SelectedRows out;
  std::map<std::vector<std::string>, size_t> group_of;
  int controls = 0;
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    bool keep = true;
    for (size_t k = 0; k < conditions.size() && keep; ++k)
      keep = holds(conditions[k], row[condition_columns[k]]);
    if (!keep)
      continue;
    if (is_control(row)) {
      ++controls;
      continue;
    }
    std::vector<std::string> key;
    for (size_t column : group_columns)
      key.push_back(trim(row[column]));
    auto [it, inserted] = group_of.emplace(key, out.groups.size());
    if (inserted) {
      RowGroup group;
      for (size_t k = 0; k < key.size(); ++k)
        group.key.emplace_back(group_names[k], key[k]);
      out.groups.push_back(group);
    }
    out.groups[it->second].rows.push_back(r);
  }
  if (controls > 0) {
    out.notes.push_back("left out " + std::to_string(controls) + " mu_rec = 1 control" +
                        (controls == 1 ? "" : "s") +
                        " (their own series, scaling-laws.md §2 step 1); --where control=1, "
                        "--where recurrence=1-poisson or --where fixed_depth=1 selects them "
                        "instead");
  }
  if (out.groups.empty()) {
    std::string written;
    for (const auto& text : selection.where)
      written += (written.empty() ? "" : " and ") + text;
    throw InputError(table.file,
                     "--where",
                     written.empty() ? "(none)" : "'" + written + "'",
                     "selects no rows",
                     table.rows.empty() ? "the source has no finished runs" : "");
  }
  return out;
}

}  // namespace parcae::analysis
