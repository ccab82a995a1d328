// `parcae-scale report [--sweep NAME] [-o DIR]`: one self-contained HTML page of a sweep (plan,
// provenance, fits with intervals, figures, cells) to share with someone who has no
// parcae-scale. analysis::write_report() builds it; this file maps flags and prints the path.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "analysis/analysis.h"
#include "orchestrator/cli/cli_context.h"
#include "orchestrator/orchestrator.h"
#include "results/results.h"

namespace parcae::cli {

void add_report_commands(CLI::App& app, CliContext& context) {
  auto request = std::make_shared<analysis::ReportRequest>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write one self-contained HTML page of a sweep: plan, fits, figures, cells");
  cmd->add_option("--sweep", request->sweep, "sweep name (default: the database's only sweep)");
  cmd->add_option("-o,--out",
                  request->out_dir,
                  "folder for index.html (default: reports/SWEEP beside the database)");
  cmd->add_option("--x",
                  request->x,
                  "the swept variable of the isoFLOP fit and figures (auto: mu_rec when it "
                  "varies within a budget, else params)")
      ->capture_default_str();
  cmd->add_option("--bootstrap", request->bootstrap, "bootstrap resamples of the isoFLOP fit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", request->seed, "bootstrap seed")->capture_default_str();
  cmd->callback([request, &context] {
    context.run = [request, &context] {
      const results::Store store =
          results::Store::open(context.db_path, results::Store::Mode::kExisting);
      request->sweep = store.resolve_sweep(request->sweep);
      if (request->out_dir.empty())
        request->out_dir = default_output_dir(context.db_path, "reports", request->sweep);
      orchestrator::check_folder_path(request->out_dir, "--out");
      request->generator = std::string("parcae-scale ") + PARCAE_VERSION;
      const analysis::ReportOutput output = analysis::write_report(store, *request);
      for (const auto& note : output.notes)
        std::cerr << "report: " << note << "\n";
      if (context.json) {
        print_json(nlohmann::ordered_json{
            {"sweep", request->sweep}, {"report", output.path}, {"figures", output.figures}});
      } else {
        std::cout << output.path << "\n";
      }
      std::cerr << "report: sweep " << request->sweep << ", " << output.figures << " figures; open "
                << output.path << " in a browser\n";
      return 0;
    };
  });
}

}  // namespace parcae::cli
