// Hydra-style overrides of a sweep file's document: paths of keys and indices, JSON or text
// values, +, ++ and ~, and a preset name that becomes an object when a key inside it is set.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sweeps/error.h"
#include "sweeps/sweep_spec.h"

namespace parcae::sweeps {
namespace {

using ::testing::HasSubstr;

nlohmann::json base() {
  return nlohmann::json::parse(R"({"model": "parcae-micro", "device": "cpu",
    "budgets": [{"id": "1e11", "flops": 1e11}], "training": {"batch_tokens": 4096}})");
}

TEST(Overrides, SetAddRemoveAndIndexAsHydraDoes) {
  nlohmann::json d = base();
  apply_overrides(d,
                  {"training.batch_tokens=8192",
                   "model.d_model=512",
                   "budgets[0].flops=2e11",
                   "budgets.0.id=2e11",
                   "device=cuda",
                   "+eval.depths=[1,2,4]",
                   "~training.batch_tokens",
                   "++device=auto"},
                  "s.json");
  EXPECT_EQ(d.at("model"), (nlohmann::json{{"preset", "parcae-micro"}, {"d_model", 512}}));
  EXPECT_EQ(d.at("budgets")[0].at("flops"), 2e11);
  EXPECT_EQ(d.at("budgets")[0].at("id"), "2e11");  // text stays text
  EXPECT_EQ(d.at("device"), "auto");
  EXPECT_EQ(d.at("eval").at("depths"), (nlohmann::json{1, 2, 4}));
  EXPECT_FALSE(d.at("training").contains("batch_tokens"));
}

TEST(Overrides, MistakesNameTheFileThePathAndTheOverride) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"training.batch_tokens", "expected KEY=VALUE"},
      {"+device=cuda", "device = '+device=cuda': is already in the sweep file"},
      {"~eval", "eval = '~eval': is not in the sweep file"},
      {"budgets[3].flops=1", "budgets[3] = 'budgets[3].flops=1': the list has 1 entries"},
      {"device.name=x", "device = \"cpu\": is not an object"},
      {"a..b=1", "expected a path of keys and indices"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    nlohmann::json d = base();
    try {
      apply_overrides(d, {text}, "s.json");
      FAIL() << "accepted";
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr("s.json: "));
      EXPECT_THAT(e.what(), HasSubstr(message));
    }
  }
}

}  // namespace
}  // namespace parcae::sweeps
