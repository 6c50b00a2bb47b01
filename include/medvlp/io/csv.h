#pragma once
// CSV tables (RFC 4180 quoting), plain or gzip-compressed, as the public datasets ship them.

#include <cstdint>
#include <string>
#include <vector>

namespace medvlp::io {

/// A CSV file read whole: the header row and the data rows (each padded to the header's width).
struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> lines;  // the file line each row starts on (error messages)

  /// Index of column `name`; throws naming the file, the column and the columns it has.
  size_t column(const std::string& name) const;
  /// Index of column `name`, or -1.
  int64_t find_column(const std::string& name) const;
};

/// Reads `path` (gzip-compressed when it ends in .gz or starts with the gzip magic). Quoted fields may
/// hold commas, doubled quotes and line breaks; a UTF-8 byte-order mark is dropped. An unterminated
/// quote, a row wider than the header or a missing file throws medvlp::Error naming file and line.
CsvTable read_csv(const std::string& path);

/// One CSV field as written: quoted (inner quotes doubled) when it holds a comma, quote or line break,
/// or leading/trailing space.
std::string csv_field(const std::string& value);

}  // namespace medvlp::io
