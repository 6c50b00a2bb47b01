#pragma once
// TensorBoard event files: the records TensorBoard, tensorboardX and TensorFlow read, written
// through libprotobuf with the field numbers of TensorBoard's published event.proto/summary.proto.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace medvlp::io {

/// CRC-32C (Castagnoli), continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
/// The masked CRC-32C that TFRecord files store after each length and each payload.
uint32_t masked_crc32c(const void* data, size_t n);

/// One summary value: a scalar, or an image when `png` holds an encoded PNG (its size and colour
/// type are read from the PNG's header).
struct SummaryValue {
  std::string tag;
  double scalar = 0.0;
  std::string png;
};

/// One record of an event file. `file_version` is set on the first record only ("brain.Event:2").
struct Event {
  double wall_time = 0.0;
  int64_t step = 0;
  std::string file_version;
  std::vector<SummaryValue> values;
};

/// Appends the numbers of `json` as scalars named `prefix/key` (nested objects joined with '/';
/// booleans as 0/1; strings, nulls and arrays left out; keys in `skip` left out at the top level).
void append_json_scalars(std::vector<SummaryValue>* out, const std::string& prefix, const nlohmann::json& json,
                         const std::vector<std::string>& skip = {});

/// Writes one new event file `DIR/events.out.tfevents.<seconds>.<host>.<pid>.<n>` (the folder is
/// created). Each event is flushed to the operating system when written, so a process killed in
/// training leaves at most a torn last record, which TensorBoard's readers and read_event_file
/// tolerate. A failed write (a full disk) throws medvlp::Error naming the file.
class EventFileWriter {
 public:
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  /// One event holding `values` at `step` (nothing when `values` is empty).
  void write(int64_t step, const std::vector<SummaryValue>& values);
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The records of one event file, their CRCs checked. `torn` is set when the file ends inside a
/// record (a writer killed mid-write); a CRC mismatch or an unparsable record before the end
/// throws medvlp::Error naming the file and the byte offset.
struct EventFile {
  std::vector<Event> events;
  bool torn = false;
};
EventFile read_event_file(const std::string& path);

/// The event files (names holding "tfevents") directly in `dir`, sorted by name; none when `dir`
/// does not exist.
std::vector<std::string> list_event_files(const std::string& dir);

/// For a resumed run: rewrites each event file in `dir` (atomically) without the events after
/// `step` and without a torn last record, so that TensorBoard does not show the steps the resumed
/// run repeats twice. Files that need no change are left untouched.
void truncate_event_files(const std::string& dir, int64_t step);

}  // namespace medvlp::io
