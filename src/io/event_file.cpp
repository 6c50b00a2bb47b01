// Compiled apart from torch: a PyTorch wheel's include folder may carry protobuf headers of another
// version than the libprotobuf this file links (see src/CMakeLists.txt).
#include "medvlp/io/event_file.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "event.pb.h"
#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

namespace medvlp::io {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli polynomial
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_u32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
uint64_t get_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}

// TFRecord framing: length, masked CRC of the length, payload, masked CRC of the payload.
std::string frame(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  put_u64(&out, payload.size());
  put_u32(&out, masked_crc32c(out.data(), 8));
  out += payload;
  put_u32(&out, masked_crc32c(payload.data(), payload.size()));
  return out;
}

// TensorBoard's Summary.Image colorspace from a PNG's IHDR colour type; medvlp::Error unless `png`
// is a PNG.
void png_geometry(const std::string& tag, const std::string& png, int32_t* width, int32_t* height, int32_t* colorspace) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  MEDVLP_CHECK(png.size() >= 33 && png.compare(0, 8, kSignature, 8) == 0 && png.compare(12, 4, "IHDR") == 0,
               "event file: the image of ", tag, " is not a PNG");
  const auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(png[at + i]);
    return v;
  };
  const uint32_t w = be32(16), h = be32(20);
  MEDVLP_CHECK(w > 0 && h > 0 && w <= 0x7fffffffu && h <= 0x7fffffffu, "event file: the PNG of ", tag, " is ", w, "x", h);
  *width = static_cast<int32_t>(w);
  *height = static_cast<int32_t>(h);
  switch (static_cast<unsigned char>(png[25])) {
    case 0: *colorspace = 1; break;  // grey
    case 4: *colorspace = 2; break;  // grey + alpha
    case 2:                          // RGB
    case 3: *colorspace = 3; break;  // palette, decoded to RGB
    case 6: *colorspace = 4; break;  // RGBA
    default: MEDVLP_CHECK(false, "event file: the PNG of ", tag, " has an unknown colour type ", static_cast<int>(png[25]));
  }
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string serialize(const tensorboard::Event& event) {
  std::string payload;
  MEDVLP_CHECK(event.SerializeToString(&payload), "event file: an event could not be serialized");
  return payload;
}

void flatten(std::vector<SummaryValue>* out, const std::string& prefix, const nlohmann::json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) flatten(out, prefix + "/" + it.key(), it.value());
  } else if (j.is_boolean()) {
    out->push_back({prefix, j.get<bool>() ? 1.0 : 0.0, {}});
  } else if (j.is_number()) {
    out->push_back({prefix, j.get<double>(), {}});
  }
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void append_json_scalars(std::vector<SummaryValue>* out, const std::string& prefix, const nlohmann::json& json,
                         const std::vector<std::string>& skip) {
  if (!json.is_object()) {
    flatten(out, prefix, json);
    return;
  }
  for (auto it = json.begin(); it != json.end(); ++it)
    if (std::find(skip.begin(), skip.end(), it.key()) == skip.end())
      flatten(out, prefix.empty() ? it.key() : prefix + "/" + it.key(), it.value());
}

struct EventFileWriter::Impl {
  std::string path;
  std::FILE* file = nullptr;
  void append(const tensorboard::Event& event) {
    const std::string record = frame(serialize(event));
    const bool ok = std::fwrite(record.data(), 1, record.size(), file) == record.size() && std::fflush(file) == 0;
    MEDVLP_CHECK(ok, path, ": write failed (", std::strerror(errno), ")");
  }
};

EventFileWriter::EventFileWriter(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  make_directories(dir);
  char host[256] = "localhost";
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof(host) - 1] = '\0';
  // TensorBoard orders a folder's files by name, so the name starts with the creation time; the
  // process id and a counter keep two writers of one second apart.
  static std::atomic<int> counter{0};
  const double now = now_seconds();
  impl_->path = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host + "." +
                std::to_string(::getpid()) + "." + std::to_string(counter++);
  impl_->file = std::fopen(impl_->path.c_str(), "wbx");
  MEDVLP_CHECK(impl_->file, impl_->path, ": cannot create (", std::strerror(errno), ")");
  tensorboard::Event first;
  first.set_wall_time(now);
  first.set_file_version("brain.Event:2");
  impl_->append(first);
}

EventFileWriter::~EventFileWriter() {
  if (impl_ && impl_->file) std::fclose(impl_->file);
}

const std::string& EventFileWriter::path() const { return impl_->path; }

void EventFileWriter::write(int64_t step, const std::vector<SummaryValue>& values) {
  if (values.empty()) return;
  tensorboard::Event event;
  event.set_wall_time(now_seconds());
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const SummaryValue& v : values) {
    tensorboard::Summary::Value* value = summary->add_value();
    value->set_tag(v.tag);
    if (v.png.empty()) {
      value->set_simple_value(static_cast<float>(v.scalar));
    } else {
      int32_t width = 0, height = 0, colorspace = 0;
      png_geometry(v.tag, v.png, &width, &height, &colorspace);
      tensorboard::Summary::Image* image = value->mutable_image();
      image->set_width(width);
      image->set_height(height);
      image->set_colorspace(colorspace);
      image->set_encoded_image_string(v.png);
    }
  }
  impl_->append(event);
}

namespace {

// The records of `bytes` (the contents of `path`, named in errors).
EventFile parse_event_file(const std::string& bytes, const std::string& path) {
  EventFile out;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) {
      out.torn = true;
      break;
    }
    const uint64_t length = get_le(bytes, at, 8);
    MEDVLP_CHECK(static_cast<uint32_t>(get_le(bytes, at + 8, 4)) == masked_crc32c(bytes.data() + at, 8), path,
                 ": the length of the record at byte ", at, " fails its CRC");
    if (length > bytes.size() - at - 12 || bytes.size() - at - 12 - length < 4) {
      out.torn = true;
      break;
    }
    const size_t data = at + 12;
    const size_t n = static_cast<size_t>(length);
    MEDVLP_CHECK(static_cast<uint32_t>(get_le(bytes, data + n, 4)) == masked_crc32c(bytes.data() + data, n), path,
                 ": the record at byte ", at, " fails its CRC");
    tensorboard::Event event;
    MEDVLP_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()) &&
                     event.ParseFromArray(bytes.data() + data, static_cast<int>(n)),
                 path, ": the record at byte ", at, " is not an Event");
    Event e;
    e.wall_time = event.wall_time();
    e.step = event.step();
    if (event.has_file_version()) e.file_version = event.file_version();
    if (event.has_summary()) {
      for (const auto& v : event.summary().value()) {
        SummaryValue s;
        s.tag = v.tag();
        if (v.has_image()) s.png = v.image().encoded_image_string();
        else s.scalar = v.has_simple_value() ? static_cast<double>(v.simple_value()) : std::nan("");
        e.values.push_back(std::move(s));
      }
    }
    out.events.push_back(std::move(e));
    at = data + n + 4;
  }
  return out;
}

}  // namespace

EventFile read_event_file(const std::string& path) { return parse_event_file(read_file(path), path); }

std::vector<std::string> list_event_files(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return files;
  while (dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.find("tfevents") != std::string::npos && name.find(".tmp") == std::string::npos)
      files.push_back(dir + "/" + name);
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

void truncate_event_files(const std::string& dir, int64_t step) {
  for (const std::string& path : list_event_files(dir)) {
    const std::string bytes = read_file(path);
    const EventFile file = parse_event_file(bytes, path);
    std::string kept;
    size_t at = 0;
    bool changed = file.torn;
    // Walks the records again to keep their bytes as written.
    for (const Event& e : file.events) {
      const size_t n = static_cast<size_t>(get_le(bytes, at, 8)) + 16;
      if (e.file_version.empty() && e.step > step) changed = true;
      else kept.append(bytes, at, n);
      at += n;
    }
    if (changed) write_file_atomic(path, kept);
  }
}

}  // namespace medvlp::io
