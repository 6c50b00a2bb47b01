#pragma once
// Reading reports in bulk (a .txt file, a folder of them, a CSV column, a JSONL key) and finding the
// lexicons and knowledge tables that ship with medvlp.

#include <string>
#include <vector>

namespace medvlp::text {

/// One report and the id it is known by.
struct ReportText {
  std::string id;
  std::string text;
};

/// Reads reports from a .txt file (id: the file stem), a folder of .txt files (id: the relative path
/// without extension, sorted), a .csv or .csv.gz (`column`, ids from `id_column` or the row number)
/// or a .jsonl file (`column` key, ids from "id" or the line number). Errors name the file, the line
/// and the column or key. With `bad_records`, a record that cannot be read (a JSONL line that is not
/// JSON or lacks the key, a report file in a folder that cannot be read) is described there and
/// skipped; what makes the whole input unreadable (no such file, a missing CSV column, a malformed
/// CSV) still throws.
std::vector<ReportText> read_reports(const std::string& input, const std::string& column = "report",
                                     const std::string& id_column = "",
                                     std::vector<std::string>* bad_records = nullptr);

/// A shipped configuration file: `name` is a path (it contains '/' or ends in .yaml) returned as it
/// is, or a built-in name ("chest_xray", "chest_ct") found in `folder` ("lexicons", "knowledge")
/// under $MEDVLP_CONFIGS, the configs installed beside this library (`<prefix>/share/medvlp/configs`,
/// found relative to libmedvlp.so, so an unpacked or relocated install finds its own) or the source
/// tree's configs/.
std::string config_file(const std::string& folder, const std::string& name);

/// The first of those folders that holds the built-in lexicons, or "" when none does: where
/// `config_file` reads built-in names from (`medvlp --version` prints it).
std::string builtin_config_root();

}  // namespace medvlp::text
