// The inside of results::Store, shared by the files that implement it (store.cpp, ingest.cpp).
#pragma once

#include <string>

#include "results/detail/sqlite.h"
#include "results/results.h"

namespace parcae::results {

struct Store::Impl {
  detail::Connection db;
  std::string path;
  int opened_version = 0;
};

}  // namespace parcae::results
