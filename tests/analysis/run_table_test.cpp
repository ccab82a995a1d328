// Tables of runs: CSV input with row-precise errors, `fit` from a CSV with a known answer, and
// figures rendered through gnuplot.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/analysis.h"
#include "sweeps/error.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::analysis {
namespace {

using test_support::ScratchDir;

std::string write_file(const ScratchDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(RunTable, QuotedFieldsAndBlankLinesAreRead) {
  const ScratchDir dir;
  const RunTable table =
      read_csv(write_file(dir, "a.csv", "name,\"C, FLOPs\"\n\"a \"\"b\"\"\",1e18\n\nc,2e18\n"));
  ASSERT_EQ(table.header.size(), 2u);
  EXPECT_EQ(table.header[1], "C, FLOPs");
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.rows[0][0], "a \"b\"");
  EXPECT_EQ(table.column("C, FLOPs"), 1u);
}

TEST(RunTable, ABadValueNamesTheFileRowAndColumn) {
  const ScratchDir dir;
  const std::string path = write_file(dir, "b.csv", "x,loss\n1,3.0\n2,abc\n4,-1\n8,2.5\n");
  const RunTable table = read_csv(path);
  try {
    read_numeric_columns(table, {{"x", true}, {"loss", true}}, false);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_EQ(e.field(), "row 2, column loss");
    EXPECT_EQ(e.value(), "'abc'");
  }
  const NumericColumns kept = read_numeric_columns(table, {{"x", true}, {"loss", true}}, true);
  EXPECT_EQ(kept.rows, (std::vector<size_t>{1, 4}));
  ASSERT_EQ(kept.skipped.size(), 2u);
  EXPECT_NE(kept.skipped[1].find("positive"), std::string::npos) << kept.skipped[1];
}

TEST(RunTable, AnUnknownColumnSuggestsTheClosestHeader) {
  const ScratchDir dir;
  const RunTable table = read_csv(write_file(dir, "c.csv", "params,tokens,loss\n1,2,3\n"));
  try {
    table.column("los");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'loss'"), std::string::npos) << e.what();
  }
}

TEST(FitCommand, APowerLawFromACsvRecoversItsExponent) {
  const ScratchDir dir;
  std::string text = "C,mu_star\n";
  for (int i = 0; i < 6; ++i) {
    const double c = 1e18 * std::pow(2.0, i);
    text += std::to_string(c) + "," + std::to_string(2.2 * std::pow(c / 1e18, 0.4)) + "\n";
  }
  const std::string csv = write_file(dir, "optima.csv", text);
  const auto result = test_support::run_cli(
      {"fit", "power", "--csv", csv, "--x-col", "C", "--y-col", "mu_star", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json fit = nlohmann::json::parse(result.out);
  EXPECT_EQ(fit.at("status"), "ok");
  EXPECT_EQ(fit.at("law"), "power");
  EXPECT_EQ(fit.at("n"), 6);
  EXPECT_EQ(fit.at("converged"), true);
  // std::to_string keeps 6 decimals of mu*, so the exponent is exact to about 1e-6.
  EXPECT_NEAR(fit.at("coefficients").at("a").at("value").get<double>(), 0.4, 1e-5);
  EXPECT_TRUE(fit.at("coefficients").at("a").at("ci").is_null()) << "no bootstrap, no interval";
  EXPECT_LT(fit.at("residual_std").get<double>(), 1e-5);
}

TEST(FitCommand, AMissingColumnIsBadInputNamingTheColumn) {
  const ScratchDir dir;
  const std::string csv = write_file(dir, "d.csv", "x,y\n1,2\n2,4\n3,8\n");
  const auto result =
      test_support::run_cli({"fit", "power", "--csv", csv, "--x-col", "x", "--y-col", "z"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("'z'"), std::string::npos) << result.err;
}

// scaling-laws.md §7: Epoch's Chinchilla data, 240 rows after the filter, the full start grid.
TEST(FitCommand, ChinchillaFromTheEpochCsvReproducesTheKnownAnswer) {
  const std::string csv =
      std::string(PARCAE_SOURCE_DIR) + "/tests/testdata/chinchilla_epoch_svg_extracted.csv";
  const auto result = test_support::run_cli({"fit",
                                             "chinchilla",
                                             "--csv",
                                             csv,
                                             "--params-col",
                                             "Model Size",
                                             "--flops-col",
                                             "Training FLOP",
                                             "--loss-col",
                                             "loss",
                                             "--drop-top-losses",
                                             "5",
                                             "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json fit = nlohmann::json::parse(result.out);
  EXPECT_EQ(fit.at("n"), 240);
  EXPECT_NEAR(fit.at("objective").get<double>(), 0.0010182740, 1e-8);
  std::map<std::string, double> value;
  for (const auto& [name, c] : fit.at("coefficients").items())
    value[name] = c.at("value").get<double>();
  EXPECT_EQ(fit.at("law"), "chinchilla");
  EXPECT_EQ(fit.at("converged"), true);
  EXPECT_NEAR(value.at("A"), 477.8, 0.01 * 477.8);
  EXPECT_NEAR(value.at("B"), 2143.2, 0.01 * 2143.2);
  EXPECT_NEAR(value.at("E"), 1.81720, 0.002);
  EXPECT_NEAR(value.at("alpha"), 0.34730, 0.002);
  EXPECT_NEAR(value.at("beta"), 0.36717, 0.002);
}

TEST(Plots, AFigureIsRenderedToPngAndSvgWithItsScript) {
  const ScratchDir dir;
  Figure figure;
  figure.name = "isoflop";
  figure.title = "loss \"quoted\" & mu_rec";
  figure.log_x = true;
  Series points;
  points.title = "C = 1e18";
  points.x = {2, 4, 6, 8};
  points.y = {3.1, 3.0, 3.02, 3.05};
  figure.series.push_back(points);
  const auto written = render_figure(figure, dir.path());
  ASSERT_EQ(written.size(), 2u);
  for (const auto& path : written) {
    EXPECT_GT(std::filesystem::file_size(path), 1000u) << path;
  }
  std::ifstream svg(dir.path() + "/isoflop.svg");
  const std::string content((std::istreambuf_iterator<char>(svg)),
                            std::istreambuf_iterator<char>());
  EXPECT_NE(content.find("<svg"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/isoflop.gp"));
}

TEST(Plots, AFigureNameThatCouldEscapeItsFolderIsRejected) {
  const ScratchDir dir;
  Figure figure;
  figure.name = "../escape";
  Series s;
  s.x = {1};
  s.y = {1};
  figure.series.push_back(s);
  EXPECT_THROW(render_figure(figure, dir.path()), InputError);
}

}  // namespace
}  // namespace parcae::analysis
