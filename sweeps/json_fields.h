// Typed reads of JSON fields with errors that name the file, the field path and the value.
// Every parser of ours (model configs, job files, sweep files) goes through these, so a bad
// value always reads "FILE: FIELD = VALUE: expected ...".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace parcae::sweeps::detail {

// The deepest nesting of objects and arrays a document of ours may have. Our files need 5;
// the limit keeps a hostile file from exhausting the stack of code that walks the tree.
constexpr int kMaxJsonDepth = 64;

// Parses one JSON document (a sweep, job or model file) and refuses, with InputError naming
// `file`, the field path and the value: text that is not JSON, nesting deeper than
// kMaxJsonDepth, a key given twice in one object (JSON leaves its meaning open; a hand-edited
// file that says it twice is a mistake), and a number beyond double's range such as 1e400.
// `allow_comments` accepts // and /* */ comments, as JSONC does.
nlohmann::json parse_json_document(const std::string& text,
                                   const std::string& file,
                                   bool allow_comments);

// Reads and parses the file at `path` as above; a missing, unreadable or non-regular file is an
// InputError naming it.
nlohmann::json read_json_file(const std::string& path, bool allow_comments);

// Where a value sits: the file and the dotted path of its parent object.
struct JsonAt {
  std::string file;
  std::string path;
  std::string field(const std::string& key) const { return path.empty() ? key : path + "." + key; }
};

// Throws InputError for a non-object or for any key outside `allowed` (with a suggestion).
void require_object_with_keys(const nlohmann::json& object,
                              const std::vector<std::string>& allowed,
                              const JsonAt& at);

// Each reads object[key] into `out` when present and leaves `out` alone when absent.
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                double& out);
void read_field(const nlohmann::json& object, const std::string& key, const JsonAt& at, int& out);
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                int64_t& out);
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                uint64_t& out);
void read_field(const nlohmann::json& object, const std::string& key, const JsonAt& at, bool& out);
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::string& out);
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::vector<int>& out);
void read_field(const nlohmann::json& object,
                const std::string& key,
                const JsonAt& at,
                std::vector<std::string>& out);

// An integer-valued JSON number (1e3 counts), else InputError.
int64_t integer_value(const nlohmann::json& value,
                      const std::string& file,
                      const std::string& field);

}  // namespace parcae::sweeps::detail
