// Reading a sweep document in a test without its data files, and the problems a bad one reports.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/sweep_spec.h"

namespace parcae::test_support {

// `document` read as if from `file_name`, its data patterns left unresolved.
inline sweeps::SweepSpec read_sweep_document(const nlohmann::json& document,
                                             const std::string& file_name) {
  sweeps::SweepReadOptions options;
  options.require_data = false;
  return sweeps::sweep_spec_from_json(document, file_name, options);
}

// The problems of reading `document`, or a test failure when it reads cleanly.
inline std::vector<std::string> sweep_problems(const nlohmann::json& document,
                                               const std::string& file_name) {
  try {
    read_sweep_document(document, file_name);
  } catch (const sweeps::SweepFileError& e) {
    return e.problems();
  }
  ADD_FAILURE() << "no problem found in " << document.dump();
  return {};
}

}  // namespace parcae::test_support
