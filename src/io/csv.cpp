#include "medvlp/io/csv.h"

#include <zlib.h>

#include "medvlp/core/error.h"

namespace medvlp::io {

namespace {

// Whole file through zlib, which reads gzip and plain files alike.
std::string read_maybe_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  MEDVLP_CHECK(f != nullptr, path, ": cannot open CSV file");
  std::string bytes;
  char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(f, buffer, sizeof buffer)) > 0) bytes.append(buffer, static_cast<size_t>(n));
  int err = 0;
  const char* message = n < 0 ? gzerror(f, &err) : nullptr;
  const std::string what = message ? message : "";
  gzclose(f);
  MEDVLP_CHECK(n == 0, path, ": cannot read CSV file (", what, ")");
  return bytes;
}

}  // namespace

std::string csv_field(const std::string& value) {
  const bool quote = value.find_first_of(",\"\r\n") != std::string::npos ||
                     (!value.empty() && (value.front() == ' ' || value.back() == ' '));
  if (!quote) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

size_t CsvTable::column(const std::string& name) const {
  const int64_t c = find_column(name);
  if (c < 0) {
    std::string have;
    for (const auto& h : header) have += (have.empty() ? "" : ", ") + h;
    throw Error(path + ": no column \"" + name + "\" (columns: " + have + ")");
  }
  return static_cast<size_t>(c);
}

int64_t CsvTable::find_column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int64_t>(i);
  return -1;
}

CsvTable read_csv(const std::string& path) {
  const std::string text = read_maybe_gzip(path);
  CsvTable table;
  table.path = path;
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  int64_t line = 1;
  std::vector<std::string> row;
  std::string field;
  int64_t row_line = 1;
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    if (!(row.size() == 1 && row[0].empty())) {  // blank lines are skipped
      if (table.header.empty()) {
        table.header = std::move(row);
      } else {
        MEDVLP_CHECK(row.size() <= table.header.size(), path, ":", row_line, ": row has ", row.size(),
                     " fields but the header has ", table.header.size());
        row.resize(table.header.size());
        table.rows.push_back(std::move(row));
        table.lines.push_back(row_line);
      }
    }
    row.clear();
  };
  bool at_field_start = true;
  while (i < text.size()) {
    const char c = text[i];
    if (at_field_start && c == '"') {
      const int64_t start_line = line;
      ++i;
      for (;;) {
        MEDVLP_CHECK(i < text.size(), path, ":", start_line, ": unterminated quoted field");
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      at_field_start = false;
      continue;
    }
    if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      at_field_start = true;
    } else if (c == '\n' || c == '\r') {
      end_row();
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      row_line = line;
      at_field_start = true;
    } else {
      field += c;
      at_field_start = false;
    }
    ++i;
  }
  if (!field.empty() || !row.empty()) end_row();
  MEDVLP_CHECK(!table.header.empty(), path, ": empty CSV file (expected a header row)");
  return table;
}

}  // namespace medvlp::io
