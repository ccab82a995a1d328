// `parcae-scale report`: the page of a finished isoFLOP sweep holds the plan, provenance, fits,
// figures and cells, loads nothing from anywhere, and renders in a real headless browser.
//
// The sweep: parcae-micro over mu_rec in {2, 4, 6, 8, 10} at three budgets, each planned run
// folder given the events of a finished trainer whose losses follow a known law (the "iso" law of
// fit_cli_test.cpp: exact isoFLOP parabolas in ln mu with mu*(C) = 3 (C/C0)^0.40, and a saturating
// exponential in T), ingested by `sweep sync`.
//
// The browser is Debian's chromium, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4), with no network and no
// driver in between. A missing chromium fails the test: scripts/setup installs it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "results/results.h"
#include "sweeps/job_config.h"
#include "tests/orchestrator/test_support.h"

namespace parcae::analysis {
namespace {

using test_support::run_cli;
using test_support::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kBaseBudget = 4e11;
const std::vector<int> kMus = {2, 4, 6, 8, 10};
const std::vector<int> kDepths = {1, 2, 4, 6, 8, 12};

double iso_loss(double budget_flops, int mu, double depth) {
  const double c = budget_flops / kBaseBudget;
  const double d = std::log(mu) - std::log(3.0 * std::pow(c, 0.40));
  return 3.0 - 0.05 * std::log(c) + 0.02 * d * d +
         0.2 * (std::exp(-2.0 * depth / mu) - std::exp(-2.0));
}

// Plans the sweep into `db` and leaves each run folder as a finished trainer would.
void make_finished_sweep(const std::string& dir, const std::string& db) {
  test_support::write_text(dir + "/data/train_000.bin", "fake shard");
  test_support::write_text(dir + "/data/val_000.bin", "fake shard");
  nlohmann::json budgets = nlohmann::json::array();
  for (int i = 0; i < 3; ++i)
    budgets.push_back({{"id", std::to_string(1 << i) + "x"}, {"flops", kBaseBudget * (1 << i)}});
  const nlohmann::json sweep = {
      {"name", "iso"},
      {"description", "A synthetic isoFLOP sweep with known minima <and markup to escape>."},
      {"data", {{"train", "data/train_*.bin"}, {"val", "data/val_*.bin"}}},
      {"model", {{"preset", "parcae-micro"}, {"context_length", 64}}},
      {"budgets", budgets},
      {"axes", {{"mean_recurrence", kMus}}},
      {"training", {{"batch_tokens", 4096}, {"micro_batch_size", 32}}},
      {"eval", {{"depths", kDepths}}},
      {"device", "cpu"},
      {"plan", {{"min_steps", 10}, {"max_flop_gap", 0.05}}}};
  test_support::write_text(dir + "/iso.json", sweep.dump(2));
  ASSERT_EQ(run_cli({"--db", db, "sweep", "plan", dir + "/iso.json"}).exit_code, 0);
  for (const auto& job : results::Store::open(db).jobs("iso")) {
    const sweeps::JobConfig config = sweeps::job_config_from_json(job.config, "job.json");
    const int64_t steps = config.max_steps();
    const int64_t tokens = steps * config.training.batch_tokens;
    const double budget = job.budget_flops.value_or(0.0);
    const int mu = job.mean_recurrence;
    std::ostringstream events;
    events << nlohmann::json{{"event", "start"},
                             {"time", 1.7e9},
                             {"step", 0},
                             {"job_id", job.id},
                             {"resumed", false},
                             {"versions", {{"parcae", "test"}, {"libtorch", "none"}}},
                             {"device", "cpu"},
                             {"world_size", 1},
                             {"parameters", {{"total", job.parameters_total}}},
                             {"flops_per_token", job.flops_per_token},
                             {"max_steps", steps},
                             {"train_tokens", tokens},
                             {"seed", 0},
                             {"budget_flops", budget}}
                  .dump()
           << "\n";
    for (int64_t s = 1; s <= steps; s += std::max<int64_t>(1, steps / 20)) {
      events << nlohmann::json{{"event", "step"},
                               {"time", 1.7e9 + static_cast<double>(s)},
                               {"step", s},
                               {"tokens", s * 4096},
                               {"flops", static_cast<double>(job.flops_per_token * s * 4096)},
                               {"loss", iso_loss(budget, mu, mu) + 2.0 / static_cast<double>(s)}}
                    .dump()
             << "\n";
    }
    for (int depth : kDepths) {
      events << nlohmann::json{{"event", "eval"},
                               {"time", 1.7e9 + 1e4},
                               {"step", steps},
                               {"tokens", tokens},
                               {"depth", depth},
                               {"loss", iso_loss(budget, mu, depth)}}
                    .dump()
             << "\n";
    }
    events << nlohmann::json{{"event", "done"},
                             {"time", 1.7e9 + 1e4},
                             {"step", steps},
                             {"status", "done"},
                             {"tokens", tokens},
                             {"flops", static_cast<double>(job.flops_per_token * tokens)},
                             {"loss_train", iso_loss(budget, mu, mu)},
                             {"loss_val", iso_loss(budget, mu, mu)},
                             {"wall_time_s", 1.0}}
                  .dump()
           << "\n";
    test_support::write_text(job.out_dir + "/events.jsonl", events.str());
  }
  ASSERT_EQ(run_cli({"--db", db, "sweep", "sync", "iso"}).exit_code, 0);
}

class Report : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<ScratchDir>();
    db_ = dir_->file("study.sqlite");
    make_finished_sweep(dir_->path(), db_);
    // A fit saved in the database appears in the report with its intervals.
    ASSERT_EQ(run_cli({"--db", db_, "fit", "isoflop", "--bootstrap", "200", "--save"}).exit_code,
              0);
    const auto written = run_cli(
        {"--db", db_, "report", "-o", dir_->file("report"), "--bootstrap", "200", "--json"});
    ASSERT_EQ(written.exit_code, 0) << written.err;
    document_ = nlohmann::json::parse(written.out);
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static std::string page() { return test_support::read_text(document_.at("report")); }

  static std::unique_ptr<ScratchDir> dir_;
  static std::string db_;
  static nlohmann::json document_;
};

std::unique_ptr<ScratchDir> Report::dir_;
std::string Report::db_;
nlohmann::json Report::document_;

TEST_F(Report, OnePageHoldsPlanProvenanceFitsFiguresAndCells) {
  EXPECT_EQ(document_.at("schema_version"), 1);
  EXPECT_EQ(document_.at("sweep"), "iso");
  EXPECT_EQ(document_.at("report"), dir_->file("report") + "/index.html");
  // isoflop, two frontiers, one test-time and one curves figure per budget.
  EXPECT_EQ(document_.at("figures"), 3 + 2 * 3);
  const std::string html = page();
  for (const char* section :
       {"id=\"plan\"", "id=\"provenance\"", "id=\"fits\"", "id=\"figures\"", "id=\"cells\""})
    EXPECT_THAT(html, HasSubstr(section));
  EXPECT_EQ(std::count_if(kMus.begin(),
                          kMus.end(),
                          [&](int mu) {
                            return html.find("C1x-mu" + std::to_string(mu) + "-seed0") !=
                                   std::string::npos;
                          }),
            static_cast<long>(kMus.size()));
  EXPECT_THAT(html, HasSubstr("&lt;and markup to escape&gt;"));  // text is escaped
  EXPECT_THAT(html, HasSubstr("isoFLOP over mu_rec"));           // the swept variable, found
  EXPECT_THAT(html, HasSubstr("parcae test"));                   // trainer versions
  EXPECT_THAT(html, HasSubstr("Test-time law"));                 // one satexp fit per run
  EXPECT_THAT(html, HasSubstr("fit 1: isoflop (15 jobs"));       // the saved fit
  // The exponent a of mu* = k C^a is 0.40 by construction; its interval is in the table.
  EXPECT_THAT(html, HasSubstr("<td>a</td><td>0.4</td>"));
  // Self-contained: no script, no external reference of any kind (the SVG and XLink namespace
  // names are names, never fetched).
  std::string outside = html;
  for (const std::string ns : {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}) {
    for (size_t at = outside.find(ns); at != std::string::npos; at = outside.find(ns))
      outside.erase(at, ns.size());
  }
  for (const char* external :
       {"<script", "<link", "<img", "@import", "http://", "https://", "src=", "url(http"})
    EXPECT_THAT(outside, Not(HasSubstr(external))) << external;
  // No scratch folder is left beside the page.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_->file("report")),
                          std::filesystem::directory_iterator()),
            1);
}

TEST_F(Report, DefaultsToTheOnlySweepAndAFolderBesideTheDatabase) {
  const auto written = run_cli({"--db", db_, "report", "--bootstrap", "0"});
  ASSERT_EQ(written.exit_code, 0) << written.err;
  EXPECT_EQ(written.out, dir_->file("reports/iso/index.html") + "\n");
  EXPECT_TRUE(std::filesystem::exists(dir_->file("reports/iso/index.html")));
}

// ---------------------------------------------------------------------------------------------
// The browser

std::string base64_decode(const std::string& text) {
  std::string out;
  // Holds only the bits not yet written out (fewer than 14), so it never overflows, however long
  // the text.
  unsigned value = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      continue;
    value = (value << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((value >> bits) & 0xffu);
      value &= (1u << bits) - 1u;
    }
  }
  return out;
}

// Debian's chromium, headless, spoken to over the DevTools protocol on a pipe. Every wait has a
// limit so that a browser that hangs fails the test instead of stopping the suite; the limit is
// far above what a load takes and decides nothing else.
class Chromium {
 public:
  explicit Chromium(const std::string& profile_dir) {
    int to_browser[2], from_browser[2];
    if (::pipe(to_browser) != 0 || ::pipe(from_browser) != 0)
      throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      // fds 3 and 4 are the DevTools pipe: commands in, responses and events out.
      const int in = ::dup(to_browser[0]);
      const int out = ::dup(from_browser[1]);
      ::dup2(in, 3);
      ::dup2(out, 4);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      const std::string profile = "--user-data-dir=" + profile_dir;
      ::execlp("chromium",
               "chromium",
               "--headless",
               "--no-sandbox",  // the tests run as root in CI, where the sandbox refuses to start
               "--disable-gpu",
               "--remote-debugging-pipe",
               "--no-first-run",
               "--no-default-browser-check",
               "--disable-extensions",
               "--disable-background-networking",
               "--hide-scrollbars",
               "--window-size=1280,2000",
               profile.c_str(),
               "about:blank",
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(to_browser[0]);
    ::close(from_browser[1]);
    write_fd_ = to_browser[1];
    read_fd_ = from_browser[0];
  }
  ~Chromium() {
    if (write_fd_ >= 0)
      ::close(write_fd_);
    if (read_fd_ >= 0)
      ::close(read_fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Sends a command and returns its result; events that arrive meanwhile are kept.
  nlohmann::json call(const std::string& method,
                      const nlohmann::json& params = nlohmann::json::object(),
                      const std::string& session = "") {
    const int id = ++last_id_;
    nlohmann::json message = {{"id", id}, {"method", method}, {"params", params}};
    if (!session.empty())
      message["sessionId"] = session;
    const std::string text = message.dump() + std::string(1, '\0');
    if (::write(write_fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw std::runtime_error("could not write to chromium");
    while (true) {
      const nlohmann::json reply = next();
      if (reply.value("id", 0) == id) {
        if (reply.contains("error"))
          throw std::runtime_error(method + ": " + reply["error"].dump());
        return reply.at("result");
      }
      events_.push_back(reply);
    }
  }

  // Waits for an event named `method`.
  nlohmann::json wait_for(const std::string& method) {
    for (const auto& e : events_) {
      if (e.value("method", "") == method)
        return e;
    }
    while (true) {
      const nlohmann::json message = next();
      events_.push_back(message);
      if (message.value("method", "") == method)
        return message;
    }
  }

  const std::vector<nlohmann::json>& events() const { return events_; }

 private:
  nlohmann::json next() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (true) {
      const size_t end = buffer_.find('\0');
      if (end != std::string::npos) {
        const std::string text = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        return nlohmann::json::parse(text);
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{read_fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        throw std::runtime_error("chromium did not answer within 120 s");
      char chunk[65536];
      const ssize_t n = ::read(read_fd_, chunk, sizeof(chunk));
      if (n <= 0)
        throw std::runtime_error("chromium closed its DevTools pipe (is it installed?)");
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int write_fd_ = -1;
  int read_fd_ = -1;
  int last_id_ = 0;
  std::string buffer_;
  std::vector<nlohmann::json> events_;
};

TEST_F(Report, LoadsInChromiumWithoutConsoleErrorsOrRequestsAndRendersEveryFigure) {
  Chromium browser(dir_->file("chromium-profile"));
  const std::string target =
      browser.call("Target.createTarget", {{"url", "about:blank"}}).at("targetId");
  const std::string session =
      browser.call("Target.attachToTarget", {{"targetId", target}, {"flatten", true}})
          .at("sessionId");
  for (const char* domain : {"Runtime.enable", "Log.enable", "Network.enable", "Page.enable"})
    browser.call(domain, nlohmann::json::object(), session);
  const std::string url = "file://" + document_.at("report").get<std::string>();
  browser.call("Page.navigate", {{"url", url}}, session);
  browser.wait_for("Page.loadEventFired");

  // Every figure drawn: an SVG of real size with its plotted paths inside.
  const nlohmann::json figures =
      browser
          .call("Runtime.evaluate",
                {{"expression",
                  "JSON.stringify(Array.from(document.querySelectorAll('figure')).map(f => {"
                  "  const s = f.querySelector('svg'); const r = s.getBoundingClientRect();"
                  "  return {id: f.id, width: r.width, height: r.height,"
                  "          paths: s.querySelectorAll('path').length,"
                  "          box: s.getBBox().width}; }))"},
                 {"returnByValue", true}},
                session)
          .at("result");
  const nlohmann::json rendered = nlohmann::json::parse(figures.at("value").get<std::string>());
  ASSERT_EQ(rendered.size(), document_.at("figures").get<size_t>());
  for (const auto& figure : rendered) {
    SCOPED_TRACE(figure.dump());
    EXPECT_GT(figure.at("width").get<double>(), 600);
    EXPECT_GT(figure.at("height").get<double>(), 300);
    EXPECT_GT(figure.at("box").get<double>(), 600);
    EXPECT_GT(figure.at("paths").get<int>(), 10);
  }

  const nlohmann::json shot = browser.call("Page.captureScreenshot", {{"format", "png"}}, session);
  const char* keep = std::getenv("PARCAE_REPORT_SCREENSHOT");
  const std::string png_path = keep != nullptr ? keep : dir_->file("report.png");
  std::ofstream(png_path, std::ios::binary) << base64_decode(shot.at("data"));
  EXPECT_GT(std::filesystem::file_size(png_path), 10000u);

  std::vector<std::string> problems;
  for (const auto& e : browser.events()) {
    const std::string method = e.value("method", "");
    const auto& p = e.value("params", nlohmann::json::object());
    if (method == "Runtime.exceptionThrown")
      problems.push_back("exception: " + p.dump());
    if (method == "Runtime.consoleAPICalled" &&
        (p.value("type", "") == "error" || p.value("type", "") == "warning"))
      problems.push_back("console: " + p.dump());
    if (method == "Log.entryAdded" && p.at("entry").value("level", "") == "error")
      problems.push_back("log: " + p.dump());
    if (method == "Network.requestWillBeSent" && p.at("request").value("url", "") != url)
      problems.push_back("request: " + p.at("request").value("url", ""));
  }
  EXPECT_THAT(problems, ::testing::IsEmpty());
}

}  // namespace
}  // namespace parcae::analysis
