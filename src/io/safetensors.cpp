#include "medvlp/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

namespace medvlp::io {

namespace {

// The reference implementation caps headers at 100 MB; larger claims are hostile or corrupt.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

const char* dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  throw Error(std::string("safetensors: unsupported tensor dtype ") + c10::toString(type));
}

at::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw Error(where + ": unsupported dtype \"" + name + "\" (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
}

void put_u64_le(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64_le(std::string_view bytes) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  return v;
}

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> payload;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    MEDVLP_CHECK(tensor.defined(), path, ": tensor \"", name, "\" is undefined");
    MEDVLP_CHECK(name != "__metadata__", path, ": \"__metadata__\" is reserved");
    at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(cpu.numel()) * cpu.element_size();
    header[name] = {{"dtype", dtype_name(cpu.scalar_type())},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    payload.push_back(cpu);
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + header_text.size() + offset);
  put_u64_le(&out, header_text.size());
  out += header_text;
  for (const auto& t : payload) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  write_file_synced(path, out);
}

namespace {

// Parses `size` bytes at `bytes`. With `keep` set, tensors view the bytes (which `keep` owns);
// otherwise they are copies.
SafetensorsFile parse_bytes(const char* bytes_ptr, size_t size, const std::string& name, std::shared_ptr<void> keep) {
  const std::string_view bytes(bytes_ptr, size);
  MEDVLP_CHECK(bytes.size() >= 8, name, ": not a safetensors file (", bytes.size(),
               " bytes; expected at least an 8-byte header length)");
  const uint64_t header_len = get_u64_le(bytes);
  MEDVLP_CHECK(header_len <= kMaxHeaderBytes, name, ": header length ", header_len,
               " exceeds the 100 MB limit (corrupt or not a safetensors file)");
  MEDVLP_CHECK(header_len <= bytes.size() - 8, name, ": header length ", header_len,
               " runs past the end of the file (", bytes.size(), " bytes; truncated?)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.data() + 8, bytes.data() + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": header is not valid JSON (" + e.what() + ")");
  }
  MEDVLP_CHECK(header.is_object(), name, ": header must be a JSON object");
  const uint64_t data_size = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;

  SafetensorsFile file;
  // Every entry is validated before anything is allocated: overlapping entries that each claim
  // the whole data section would otherwise multiply a small file into a huge allocation.
  struct Pending {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Pending> pending;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string where = name + ": tensor \"" + it.key() + "\"";
    if (it.key() == "__metadata__") {
      MEDVLP_CHECK(it->is_object(), name, ": __metadata__ must map strings to strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        MEDVLP_CHECK(m->is_string(), name, ": __metadata__.", m.key(), " must be a string");
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& entry = *it;
    MEDVLP_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                     entry.contains("data_offsets"),
                 where, ": expected {dtype, shape, data_offsets}");
    MEDVLP_CHECK(entry["dtype"].is_string(), where, ": dtype must be a string");
    const at::ScalarType dtype = dtype_from_name(entry["dtype"].get<std::string>(), where);
    const auto& shape_json = entry["shape"];
    MEDVLP_CHECK(shape_json.is_array(), where, ": shape must be a list");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& dim : shape_json) {
      MEDVLP_CHECK(dim.is_number_unsigned() || (dim.is_number_integer() && dim.get<int64_t>() >= 0), where,
                   ": shape entries must be non-negative integers");
      const uint64_t d = dim.get<uint64_t>();
      MEDVLP_CHECK(d == 0 || numel <= std::numeric_limits<uint64_t>::max() / d, where, ": shape overflows");
      numel *= d;
      shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offsets = entry["data_offsets"];
    MEDVLP_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                     offsets[1].is_number_unsigned(),
                 where, ": data_offsets must be two non-negative integers");
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    MEDVLP_CHECK(begin <= end && end <= data_size, where, ": data_offsets [", begin, ", ", end,
                 "] outside the data section of ", data_size, " bytes (truncated file?)");
    const uint64_t item = c10::elementSize(dtype);
    MEDVLP_CHECK(numel <= std::numeric_limits<uint64_t>::max() / item && numel * item == end - begin, where,
                 ": ", end - begin, " bytes do not hold ", numel, " elements of ", entry["dtype"].get<std::string>());
    pending.push_back({it.key(), dtype, std::move(shape), begin, end});
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const Pending& p : pending) ranges.emplace_back(p.begin, p.end);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    MEDVLP_CHECK(ranges[i].first >= ranges[i - 1].second, name, ": tensor byte ranges overlap at offset ",
                 ranges[i].first);
  for (const Pending& p : pending) {
    at::Tensor t;
    if (keep && p.end > p.begin) {
      t = torch::from_blob(const_cast<char*>(data + p.begin), p.shape, [keep](void*) {},
                           torch::TensorOptions().dtype(p.dtype));
    } else {
      t = torch::empty(p.shape, torch::TensorOptions().dtype(p.dtype));
      if (p.end > p.begin) std::memcpy(t.data_ptr(), data + p.begin, p.end - p.begin);
    }
    file.tensors.emplace(p.name, t);
  }
  return file;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name) {
  return parse_bytes(bytes.data(), bytes.size(), name, nullptr);
}

SafetensorsFile map_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MEDVLP_CHECK(fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(path + ": cannot stat (" + std::strerror(errno) + ")");
  }
  const auto size = static_cast<size_t>(st.st_size);
  // Private, copy-on-write pages: a caller that writes into a tensor never changes the file.
  void* base = size > 0 ? ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) : nullptr;
  ::close(fd);
  MEDVLP_CHECK(size == 0 || base != MAP_FAILED, path, ": cannot map (", std::strerror(errno), ")");
  std::shared_ptr<void> keep(base, [size](void* p) {
    if (p != nullptr) ::munmap(p, size);
  });
  return parse_bytes(static_cast<const char*>(base), size, path, keep);
}



SafetensorsFile load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

}  // namespace medvlp::io
