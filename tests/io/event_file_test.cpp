#include "medvlp/io/event_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "../testing_util.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

using namespace medvlp;

namespace {

// A PNG's signature and IHDR chunk (the rest of the file does not matter to the writer).
std::string png_header(uint32_t width, uint32_t height, unsigned char colour_type) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  png += std::string("\0\0\0\x0d", 4) + "IHDR";
  for (uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) png.push_back(static_cast<char>((v >> shift) & 0xffu));
  png += std::string{8, static_cast<char>(colour_type), 0, 0, 0};
  png += std::string(4, '\0') + "IEND";
  return png;
}

std::vector<int64_t> steps_of(const io::EventFile& f) {
  std::vector<int64_t> steps;
  for (const auto& e : f.events)
    if (e.file_version.empty()) steps.push_back(e.step);
  return steps;
}

}  // namespace

TEST(Crc32c, MatchesThePublishedCheckValues) {
  // The CRC catalogue's check value for CRC-32/ISCSI, and RFC 3720 appendix B.4's test vectors.
  EXPECT_EQ(io::crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[static_cast<size_t>(i)] = static_cast<char>(i);
  EXPECT_EQ(io::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(io::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(io::crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  // Continuing a CRC over a split buffer equals one pass.
  EXPECT_EQ(io::crc32c("6789", 4, io::crc32c("12345", 5)), 0xE3069283u);
}

TEST(EventFile, WrittenEventsReadBackWithTheirStepsAndValues) {
  testing_util::TempDir dir;
  std::string path;
  const std::string png = png_header(7, 5, 2);
  {
    io::EventFileWriter w(dir.path() + "/tb");
    path = w.path();
    w.write(1, {{"train/loss", 0.1, {}}, {"train/lr", 3e-4, {}}});
    w.write(2, {});  // nothing
    w.write(3, {{"eval/map", 0.0, png}});
  }
  EXPECT_NE(path.find("/tb/events.out.tfevents."), std::string::npos) << path;
  const io::EventFile f = io::read_event_file(path);
  EXPECT_FALSE(f.torn);
  ASSERT_EQ(f.events.size(), 3u);
  EXPECT_EQ(f.events[0].file_version, "brain.Event:2");
  EXPECT_GT(f.events[0].wall_time, 1.7e9);
  EXPECT_EQ(steps_of(f), (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(f.events[1].values.size(), 2u);
  EXPECT_EQ(f.events[1].values[0].tag, "train/loss");
  // Scalars travel as float32, as TensorBoard stores them.
  EXPECT_EQ(f.events[1].values[0].scalar, static_cast<double>(0.1f));
  EXPECT_EQ(f.events[1].values[1].scalar, static_cast<double>(3e-4f));
  ASSERT_EQ(f.events[2].values.size(), 1u);
  EXPECT_EQ(f.events[2].values[0].png, png);
  EXPECT_LE(f.events[1].wall_time, f.events[2].wall_time);
  EXPECT_EQ(io::list_event_files(dir.path() + "/tb"), std::vector<std::string>{path});
  EXPECT_TRUE(io::list_event_files(dir.path() + "/none").empty());
}

TEST(EventFile, TwoWritersInOneSecondWriteTwoFiles) {
  testing_util::TempDir dir;
  io::EventFileWriter a(dir.path()), b(dir.path());
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(io::list_event_files(dir.path()).size(), 2u);
}

TEST(EventFile, AnImageThatIsNotAPngIsNamed) {
  testing_util::TempDir dir;
  io::EventFileWriter w(dir.path());
  EXPECT_ERROR_CONTAINS(w.write(1, {{"eval/maps/heart", 0.0, "GIF89a not a png at all, long enough.."}}),
                        "event file: the image of eval/maps/heart is not a PNG");
}

TEST(EventFile, ATornLastRecordIsToleratedAndACorruptOneNamed) {
  testing_util::TempDir dir;
  std::string path;
  {
    io::EventFileWriter w(dir.path());
    path = w.path();
    for (int64_t s = 1; s <= 3; ++s) w.write(s, {{"train/loss", 1.0 / static_cast<double>(s), {}}});
  }
  const std::string bytes = io::read_file(path);
  // A writer killed inside its last record.
  for (size_t cut : {size_t{3}, size_t{9}, size_t{20}}) {
    io::write_file_atomic(path, bytes.substr(0, bytes.size() - cut));
    const io::EventFile f = io::read_event_file(path);
    EXPECT_TRUE(f.torn) << cut;
    EXPECT_EQ(steps_of(f), (std::vector<int64_t>{1, 2})) << cut;
  }
  // One flipped bit in the second record's payload: its CRC names the record's offset.
  const io::EventFile whole = [&] {
    io::write_file_atomic(path, bytes);
    return io::read_event_file(path);
  }();
  ASSERT_EQ(whole.events.size(), 4u);
  std::string bad = bytes;
  const size_t first_len = static_cast<unsigned char>(bytes[0]) + 16u;  // the version record is < 256 bytes
  bad[first_len + 14] = static_cast<char>(bad[first_len + 14] ^ 0x10);
  io::write_file_atomic(path, bad);
  EXPECT_ERROR_CONTAINS(io::read_event_file(path),
                        path + ": the record at byte " + std::to_string(first_len) + " fails its CRC");
}

TEST(EventFile, TruncationForAResumeDropsLaterStepsAndTornRecords) {
  testing_util::TempDir dir;
  std::string first, second;
  {
    io::EventFileWriter a(dir.path());
    first = a.path();
    for (int64_t s = 1; s <= 3; ++s) a.write(s, {{"train/loss", 1.0, {}}});
  }
  {
    io::EventFileWriter b(dir.path());
    second = b.path();
    for (int64_t s = 4; s <= 6; ++s) b.write(s, {{"train/loss", 1.0, {}}});
  }
  const std::string second_bytes = io::read_file(second);
  io::write_file_atomic(second, second_bytes.substr(0, second_bytes.size() - 5));  // killed mid-write
  const std::string first_bytes = io::read_file(first);
  io::truncate_event_files(dir.path(), 4);
  EXPECT_EQ(io::read_file(first), first_bytes);  // nothing after step 4: untouched
  const io::EventFile f = io::read_event_file(second);
  EXPECT_FALSE(f.torn);
  ASSERT_FALSE(f.events.empty());
  EXPECT_EQ(f.events[0].file_version, "brain.Event:2");
  EXPECT_EQ(steps_of(f), (std::vector<int64_t>{4}));
  io::truncate_event_files(dir.path(), 0);
  EXPECT_TRUE(steps_of(io::read_event_file(first)).empty());
  EXPECT_EQ(io::read_event_file(first).events.size(), 1u);  // the version record stays
}

TEST(EventFile, JsonNumbersBecomeScalarsUnderTheirPath) {
  const auto j = nlohmann::json::parse(
      R"({"step": 4, "loss": 0.5, "ok": true, "name": "x", "list": [1, 2], "none": null,
          "auc": {"pleural effusion": 0.75, "mean": 0.8}})");
  std::vector<io::SummaryValue> v;
  io::append_json_scalars(&v, "val", j, {"step"});
  std::map<std::string, double> got;
  for (const auto& s : v) got[s.tag] = s.scalar;
  EXPECT_EQ(got, (std::map<std::string, double>{
                     {"val/loss", 0.5}, {"val/ok", 1.0}, {"val/auc/pleural effusion", 0.75}, {"val/auc/mean", 0.8}}));
}
