// `parcae-scale report`: one self-contained HTML page of a sweep, for a collaborator who has no
// parcae-scale. It holds the plan, the provenance (stored sweep file, trainer versions, hosts),
// every fit (the isoFLOP fit of the figures, the test-time fit of each run, and the fits saved in
// the database) with intervals and warnings, the figures of `plot all` as inline SVG, and one row
// per cell. Nothing is loaded from anywhere: styles and figures are in the page, there is no
// script, and SVG ids are prefixed per figure so that several gnuplot figures share one document.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "analysis/analysis.h"
#include "sweeps/atomic_file.h"
#include "sweeps/error.h"

namespace parcae::analysis {
namespace {

namespace fs = std::filesystem;

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string number(double value) {
  return std::isfinite(value) ? fmt::format("{:.4g}", value) : std::string("&ndash;");
}

std::string json_number(const nlohmann::ordered_json& value) {
  return value.is_number() ? number(value.get<double>()) : std::string("&ndash;");
}

template <class T>
std::string optional_number(const std::optional<T>& value) {
  return value ? number(static_cast<double>(*value)) : std::string("&ndash;");
}

template <class Json>
std::string text_of(const Json& value) {
  if (value.is_null())
    return "";
  return value.is_string() ? value.template get<std::string>() : value.dump();
}

// One table row of cells already in HTML.
// The mu_rec column of a job: the two mu_rec = 1 controls by name, since both run (1, 1) as the
// axis's own mu_rec = 1 does.
std::string recurrence_text(const results::JobRecord& job) {
  if (job.fixed_depth && job.mean_recurrence == 1)
    return "1 fixed";
  if (job.config.value("poisson_control", false))
    return "1 poisson";
  return fmt::format("{}/{}", job.mean_recurrence, job.mean_backward);
}

std::string row(const std::vector<std::string>& cells, const char* tag = "td") {
  std::string out = "<tr>";
  for (const auto& c : cells)
    out += fmt::format("<{0}>{1}</{0}>", tag, c);
  return out + "</tr>\n";
}

// A gnuplot SVG made fit for inlining: the XML prolog dropped, every id and reference prefixed
// (each figure defines the same gpPt0, gpDot, ... ids), sized by the page, labelled for readers.
std::string inline_svg(const std::string& svg,
                       const std::string& prefix,
                       const std::string& label) {
  const size_t start = svg.find("<svg");
  if (start == std::string::npos)
    throw Error("figure " + label + " is not an SVG document");
  std::string out = svg.substr(start);
  const std::vector<std::pair<std::string, std::string>> replacements = {
      {"id='", "id='" + prefix},
      {"id=\"", "id=\"" + prefix},
      {"href='#", "href='#" + prefix},
      {"href=\"#", "href=\"#" + prefix},
      {"url(#", "url(#" + prefix}};
  for (const auto& [from, to] : replacements) {
    for (size_t at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size()))
      out.replace(at, from.size(), to);
  }
  out.replace(0,
              4,
              "<svg role=\"img\" aria-label=\"" + escape(label) +
                  "\" preserveAspectRatio=\"xMidYMid meet\"");
  return out;
}

// A fit document of fit_to_json / isoflop_to_json as HTML: status, coefficients with SE and
// interval, message, warnings and what keeps it from being usable; for isoflop, the minima.
std::string fit_html(const nlohmann::ordered_json& fit, const std::string& title) {
  const std::string status = text_of(fit.value("status", nlohmann::ordered_json("unknown")));
  const bool usable = fit.value("usable", false);
  std::string out = fmt::format(
      "<div class=\"fit\"><h3>{} <span class=\"status {}\">{}</span> <span class=\"usable "
      "{}\">{}</span></h3>\n",
      escape(title),
      status == "ok" ? "ok" : "bad",
      escape(status),
      usable ? "ok" : "bad",
      usable ? "usable" : "not usable");
  if (fit.contains("message") && !text_of(fit["message"]).empty())
    out += "<p class=\"message\">" + escape(text_of(fit["message"])) + "</p>\n";
  out += fmt::format("<p>n = {}, ci level {}, bootstrap replicates {}</p>\n",
                     text_of(fit.value("n", nlohmann::ordered_json())),
                     json_number(fit.value("ci_level", nlohmann::ordered_json())),
                     text_of(fit.value("bootstrap_replicates", nlohmann::ordered_json(0))));
  if (fit.contains("coefficients") && fit["coefficients"].is_object() &&
      !fit["coefficients"].empty()) {
    out += "<table class=\"numbers\"><thead>" +
           row({"coefficient", "value", "SE", "interval"}, "th") + "</thead><tbody>\n";
    for (const auto& [name, c] : fit["coefficients"].items()) {
      const auto& ci = c.value("ci", nlohmann::ordered_json());
      out += row({escape(name),
                  json_number(c.value("value", nlohmann::ordered_json())),
                  json_number(c.value("se", nlohmann::ordered_json())),
                  ci.is_array() && ci.size() == 2
                      ? "[" + json_number(ci[0]) + ", " + json_number(ci[1]) + "]"
                      : std::string("&ndash;")});
    }
    out += "</tbody></table>\n";
  }
  if (fit.contains("minima") && fit["minima"].is_array()) {
    out += "<table class=\"numbers\"><thead>" +
           row({"budget", "C", "runs", "status", "x*", "1-sigma band", "L*", "D*", "in the law"},
               "th") +
           "</thead><tbody>\n";
    for (const auto& m : fit["minima"]) {
      out += row({escape(text_of(m.value("budget_id", nlohmann::ordered_json()))),
                  json_number(m.value("budget", nlohmann::ordered_json())),
                  text_of(m.value("runs", nlohmann::ordered_json())),
                  escape(text_of(m.value("status", nlohmann::ordered_json()))),
                  json_number(m.value("x_star", nlohmann::ordered_json())),
                  "[" + json_number(m.value("x_star_low", nlohmann::ordered_json())) + ", " +
                      json_number(m.value("x_star_high", nlohmann::ordered_json())) + "]",
                  json_number(m.value("loss_star", nlohmann::ordered_json())),
                  json_number(m.value("tokens_star", nlohmann::ordered_json())),
                  m.value("used", false) ? "yes" : "no"});
    }
    out += "</tbody></table>\n";
  }
  std::vector<std::string> notes;
  for (const char* key : {"warnings", "usability_problems"}) {
    if (fit.contains(key) && fit[key].is_array()) {
      for (const auto& w : fit[key])
        notes.push_back(text_of(w));
    }
  }
  if (!notes.empty()) {
    out += "<ul class=\"warnings\">\n";
    for (const auto& n : notes)
      out += "<li>" + escape(n) + "</li>\n";
    out += "</ul>\n";
  }
  return out + "</div>\n";
}

const char kStyle[] = R"CSS(
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1.5em 2em 4em; color: #1d232a; background: #fff; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #d4dae1; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.08em; margin: 1.4em 0 0.4em; }
nav a { margin-right: 1.1em; }
.meta { color: #56606b; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d4dae1; padding: 0.25em 0.6em; text-align: left; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #f8f9fb; }
table.numbers td:not(:first-child) { font-variant-numeric: tabular-nums; text-align: right; }
.status, .usable { font-size: 0.8em; padding: 0.1em 0.5em; border-radius: 0.6em; }
.ok { background: #dcf3e0; color: #17622a; }
.bad { background: #fbe3e1; color: #8c1d13; }
.warnings li { color: #8c4a00; }
figure { margin: 1.2em 0 2em; }
figure svg { width: 100%; max-width: 980px; height: auto; display: block;
             border: 1px solid #e3e7ec; }
figcaption { color: #56606b; font-size: 0.9em; margin-top: 0.3em; }
pre { background: #f4f6f8; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.counts span { margin-right: 1.2em; }
)CSS";

struct Figures {
  std::vector<std::pair<std::string, std::string>> files;  // (name, svg path)
  std::string note;                                        // why there are none, when none
};

}  // namespace

ReportOutput write_report(const results::Store& store, const ReportRequest& request) {
  const auto sweep = store.find_sweep(request.sweep);
  if (!sweep)
    throw InputError(store.path(), "sweep", request.sweep, "no such sweep in the database");
  if (request.out_dir.empty())
    throw InputError("", "-o/--out", "(missing)", "expected the folder for the report");
  fs::create_directories(request.out_dir);
  ReportOutput output;
  output.path = (fs::path(request.out_dir) / "index.html").string();

  const std::vector<results::JobRecord> jobs = store.jobs(request.sweep);
  const results::SweepCounts counts = store.counts(request.sweep);
  const SweepRuns runs = collect_runs(store, request.sweep);
  const std::string x = request.x.empty() || request.x == "auto" ? swept_variable(runs) : request.x;

  // Figures: `plot all` into a scratch folder, read back as SVG, the folder removed.
  const fs::path scratch =
      fs::path(request.out_dir) / fmt::format(".figures-{}", static_cast<long>(::getpid()));
  std::vector<std::pair<std::string, std::string>> figures;  // (name, inline svg)
  std::string figure_note;
  std::optional<nlohmann::ordered_json> isoflop_json;
  if (runs.runs.empty()) {
    figure_note = "No run of this sweep has finished yet, so there are no fits and no figures.";
  } else {
    PlotRequest plot;
    plot.kind = "all";
    plot.out_dir = scratch.string();
    plot.formats = {"svg"};
    plot.x = x;
    plot.bootstrap = request.bootstrap;
    plot.seed = request.seed;
    try {
      const std::vector<std::string> files = draw_figures(store, runs, plot);
      for (const auto& file : files) {
        std::ifstream in(file);
        std::stringstream text;
        text << in.rdbuf();
        const std::string name = fs::path(file).stem().string();
        figures.emplace_back(name,
                             inline_svg(text.str(), fmt::format("f{}-", figures.size()), name));
      }
    } catch (const InputError& e) {
      figure_note = std::string("No figures: ") + e.what();
    }
    std::error_code ec;
    fs::remove_all(scratch, ec);
    // The isoFLOP fit the figures show, as `fit isoflop --x X` reports it.
    try {
      const std::optional<IsoflopAnalysis> analysis =
          analyse_sweep_isoflop(runs, x, request.bootstrap, request.seed);
      if (analysis && !analysis->groups.empty())
        isoflop_json = isoflop_to_json(analysis->groups.front().fit);
      if (analysis)
        output.notes.insert(output.notes.end(), analysis->notes.begin(), analysis->notes.end());
    } catch (const InputError& e) {
      output.notes.push_back(std::string("isoFLOP fit not made: ") + e.what());
    }
  }
  output.figures = static_cast<int>(figures.size());

  std::ostringstream html;
  const std::string title = "Sweep " + sweep->name;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       << "<title>" << escape(title) << " &mdash; parcae-scale report</title>\n"
       << "<style>" << kStyle << "</style>\n</head>\n<body>\n";
  html << "<h1>" << escape(title) << "</h1>\n";
  if (!sweep->description.empty())
    html << "<p>" << escape(sweep->description) << "</p>\n";
  html << "<p class=\"meta\">Written " << results::iso_time(results::unix_now()) << " by "
       << escape(request.generator) << " from " << escape(store.path()) << ".</p>\n";
  html << "<nav><a href=\"#plan\">Plan</a><a href=\"#provenance\">Provenance</a>"
       << "<a href=\"#fits\">Fits</a><a href=\"#figures\">Figures</a>"
       << "<a href=\"#cells\">Cells</a></nav>\n";

  // --- plan
  html << "<section id=\"plan\"><h2>Plan</h2>\n<p class=\"counts\">";
  html << "<span><b>" << counts.jobs << "</b> jobs</span>";
  for (const auto& [state, n] : counts.by_state) {
    if (n > 0)
      html << "<span>" << n << " " << results::to_string(state) << "</span>";
  }
  html << fmt::format("<span>{} of {} FLOPs done ({:.1f}%)</span></p>\n",
                      number(counts.flops_done),
                      number(counts.flops_total),
                      counts.flops_total > 0 ? 100 * counts.flops_done / counts.flops_total : 0.0);
  html << "<table class=\"numbers\"><thead>"
       << row({"cell",
               "model",
               "budget",
               "C (FLOPs)",
               "mu_rec",
               "N total",
               "N core",
               "F (FLOPs/token)",
               "D (tokens)",
               "steps",
               "achieved FLOPs",
               "GPU-h (est.)"},
              "th")
       << "</thead><tbody>\n";
  for (const auto& job : jobs) {
    html << row({escape(job.cell),
                 escape(job.model),
                 escape(job.budget_id.value_or("")),
                 optional_number(job.budget_flops),
                 recurrence_text(job),
                 number(static_cast<double>(job.parameters_total)),
                 number(static_cast<double>(job.parameters_core)),
                 number(static_cast<double>(job.flops_per_token)),
                 number(static_cast<double>(job.train_tokens)),
                 std::to_string(job.steps),
                 number(job.achieved_flops),
                 number(job.gpu_hours_estimate)});
  }
  html << "</tbody></table></section>\n";

  // --- provenance
  std::map<std::string, int> versions, hosts, devices;
  for (const auto& job : jobs) {
    for (const auto& p : store.provenance(job.id)) {
      std::string v;
      for (const auto& [key, value] : p.versions.items())
        v += (v.empty() ? "" : ", ") + key + " " +
             (text_of(value).empty() ? std::string("none") : text_of(value));
      ++versions[v.empty() ? "(none reported)" : v];
      ++devices[p.device.value_or("(unknown)") + ", world size " +
                (p.world_size ? std::to_string(*p.world_size) : std::string("?"))];
    }
    for (const auto& a : store.attempts(job.id))
      ++hosts[a.host + " (" + a.backend + ", " + a.gpu_model.value_or("?") + ")"];
  }
  const auto listing = [](const std::map<std::string, int>& items) {
    std::string out = "<ul>";
    for (const auto& [item, n] : items)
      out += "<li>" + escape(item) + fmt::format(" &times; {}</li>", n);
    return out + (items.empty() ? "<li>none yet</li>" : "") + "</ul>\n";
  };
  html << "<section id=\"provenance\"><h2>Provenance</h2>\n";
  html << "<p>Sweep file <code>" << escape(sweep->file) << "</code>, first planned "
       << results::iso_time(sweep->created_at) << ", last planned "
       << results::iso_time(sweep->updated_at) << "; run folders in <code>"
       << escape(sweep->jobs_dir) << "</code>.</p>\n";
  html << "<h3>Trainer versions (one per start of a trainer)</h3>\n" << listing(versions);
  html << "<h3>Devices</h3>\n" << listing(devices);
  html << "<h3>Hosts (one per attempt)</h3>\n" << listing(hosts);
  html << "<details><summary>The sweep file as planned (overrides applied)</summary><pre>"
       << escape(sweep->spec.dump(2)) << "</pre></details>\n</section>\n";

  // --- fits
  html << "<section id=\"fits\"><h2>Fits</h2>\n";
  if (isoflop_json) {
    html << fit_html(
        *isoflop_json,
        fmt::format("isoFLOP over {} (as in the figures; bootstrap {})", x, request.bootstrap));
  }
  for (const auto& note : output.notes)
    html << "<p class=\"meta\">" << escape(note) << "</p>\n";
  // The test-time law of each run with at least four depths, as the test-time figures draw it.
  std::string satexp_rows;
  for (const auto& run : runs.runs) {
    if (run.loss_at_depth.size() < 4)
      continue;
    std::vector<double> t, l;
    for (const auto& [depth, loss] : run.loss_at_depth) {
      t.push_back(depth);
      l.push_back(loss);
    }
    fitting::SatExpOptions options;
    options.mean_recurrence = run.mean_recurrence;
    const nlohmann::ordered_json fit = fit_to_json(fitting::fit_satexp(t, l, options));
    std::vector<std::string> cells = {
        escape(run.cell), escape(text_of(fit.value("status", nlohmann::ordered_json())))};
    for (const char* name : {"y_inf", "Z", "z"}) {
      const auto& c = fit["coefficients"].value(name, nlohmann::ordered_json::object());
      const auto& ci = c.value("ci", nlohmann::ordered_json());
      cells.push_back(json_number(c.value("value", nlohmann::ordered_json())) +
                      (ci.is_array() && ci.size() == 2
                           ? " [" + json_number(ci[0]) + ", " + json_number(ci[1]) + "]"
                           : std::string()));
    }
    std::string warnings;
    for (const auto& w : fit.value("warnings", nlohmann::ordered_json::array()))
      warnings += (warnings.empty() ? "" : "; ") + escape(text_of(w));
    cells.push_back(warnings);
    satexp_rows += row(cells);
  }
  if (!satexp_rows.empty()) {
    html << "<h3>Test-time law L(T) = y_inf + Z e^(-z T), one fit per run</h3>\n"
         << "<table class=\"numbers\"><thead>"
         << row({"cell", "status", "y_inf", "Z", "z", "warnings"}, "th") << "</thead><tbody>\n"
         << satexp_rows << "</tbody></table>\n";
  }
  const std::vector<results::FitRecord> saved = store.fits(request.sweep);
  html << "<h3>Fits saved in the database (fit --save)</h3>\n";
  if (saved.empty())
    html << "<p class=\"meta\">None.</p>\n";
  for (const auto& record : saved) {
    const nlohmann::ordered_json details(record.details);
    html << fit_html(details,
                     fmt::format("fit {}: {} ({} jobs, saved {})",
                                 record.id,
                                 record.law,
                                 record.job_ids.size(),
                                 results::iso_time(record.created_at)));
  }
  html << "</section>\n";

  // --- figures
  html << "<section id=\"figures\"><h2>Figures</h2>\n";
  if (figures.empty())
    html << "<p class=\"meta\">" << escape(figure_note) << "</p>\n";
  for (const auto& [name, svg] : figures) {
    html << "<figure id=\"figure-" << escape(name) << "\">\n"
         << svg << "\n<figcaption>" << escape(name) << "</figcaption></figure>\n";
  }
  html << "</section>\n";

  // --- cells
  std::set<int> depths;
  std::map<std::string, std::map<int, double>> loss_at;  // job id -> T -> last loss
  for (const auto& job : jobs) {
    for (const auto& e : store.evaluations(job.id)) {
      depths.insert(e.depth);
      if (e.loss)
        loss_at[job.id][e.depth] = *e.loss;
    }
  }
  std::vector<std::string> header = {
      "cell", "state", "steps", "train loss", "val loss (T = mu_rec)"};
  for (int t : depths)
    header.push_back(fmt::format("T = {}", t));
  header.insert(header.end(), {"wall time (s)", "attempts", "job id"});
  html << "<section id=\"cells\"><h2>Cells</h2>\n<table class=\"numbers\"><thead>"
       << row(header, "th") << "</thead><tbody>\n";
  for (const auto& job : jobs) {
    std::vector<std::string> cells = {escape(job.cell),
                                      results::to_string(job.state),
                                      fmt::format("{}/{}", job.steps_done.value_or(0), job.steps),
                                      optional_number(job.loss_train),
                                      optional_number(job.loss_val)};
    for (int t : depths) {
      const auto it = loss_at[job.id].find(t);
      cells.push_back(it == loss_at[job.id].end() ? std::string("&ndash;") : number(it->second));
    }
    cells.push_back(optional_number(job.wall_time_s));
    cells.push_back(std::to_string(store.attempts(job.id).size()));
    cells.push_back("<code>" + escape(job.id) + "</code>");
    html << row(cells);
  }
  html << "</tbody></table>\n";
  for (const auto& job : jobs) {
    if (job.last_error)
      html << "<p class=\"warnings\">" << escape(job.cell) << ": " << escape(*job.last_error)
           << "</p>\n";
  }
  html << "</section>\n</body>\n</html>\n";

  const std::string page = html.str();
  sweeps::write_file_atomically(output.path, {page}, sweeps::Durability::kOnRename);
  return output;
}

}  // namespace parcae::analysis
