// libFuzzer target: the CSV reader (dataset tables, reports) on arbitrary bytes, plain or gzip
// (first byte odd: the rest is gzip-compressed first, so the inflater sees valid streams too, and
// even: written as is to a .csv.gz, so it also sees broken ones). read_csv must return a table whose
// rows all have the header's width, or throw medvlp::Error.
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "medvlp/core/error.h"
#include "temp_file.h"
#include "medvlp/io/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;  // 0: .csv, 1: .csv.gz of the bytes, 2: the bytes named .csv.gz
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode == 1) {
    uLongf out_size = compressBound(bytes.size()) + 32;
    std::string gz(out_size, '\0');
    z_stream z{};
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    z.next_in = reinterpret_cast<Bytef*>(bytes.data());
    z.avail_in = static_cast<uInt>(bytes.size());
    z.next_out = reinterpret_cast<Bytef*>(gz.data());
    z.avail_out = static_cast<uInt>(gz.size());
    deflate(&z, Z_FINISH);
    gz.resize(z.total_out);
    deflateEnd(&z);
    bytes = gz;
  }
  const std::string path = medvlp::fuzz::write_temp(bytes, "csv_fuzz", mode == 0 ? ".csv" : ".csv.gz");
  try {
    const medvlp::io::CsvTable table = medvlp::io::read_csv(path);
    for (const auto& row : table.rows)
      if (row.size() != table.header.size()) __builtin_trap();  // ragged rows must be refused
    (void)table.find_column("report");
  } catch (const medvlp::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
