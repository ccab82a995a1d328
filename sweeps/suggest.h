// Spelling suggestions for unknown names ("did you mean ...?"), shared by every parser of ours.
#pragma once

#include <string>
#include <vector>

namespace parcae::sweeps {

// The candidate closest to `word` by edit distance, or "" when none is within a third of its
// length (at least 2 edits); a prefix match also counts.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// "did you mean 'x'?" or "expected one of: a, b, c" when nothing is close.
std::string suggestion_hint(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace parcae::sweeps
