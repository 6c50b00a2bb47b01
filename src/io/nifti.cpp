#include "medvlp/io/nifti.h"

#include <nifti2_io.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <vector>

#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "../core/large_tensor.h"
#include "medvlp/io/files.h"

namespace medvlp::io {
namespace {

struct NimFree {
  void operator()(nifti_image* nim) const { nifti_image_free(nim); }
};
using NimPtr = std::unique_ptr<nifti_image, NimFree>;

// nifticlib keeps its debug level in a global; set it once (quiet: we report errors ourselves).
void init_nifti() {
  static std::once_flag once;
  std::call_once(once, [] { nifti_set_debug_level(0); });
}

int64_t file_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return in ? static_cast<int64_t>(in.tellg()) : -1;
}

// The gzip trailer's ISIZE: the uncompressed size modulo 2^32 (of the last member).
int64_t gzip_isize(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(-4, std::ios::end);
  unsigned char b[4];
  if (!in.read(reinterpret_cast<char*>(b), 4)) return -1;
  return static_cast<int64_t>(b[0]) | static_cast<int64_t>(b[1]) << 8 | static_cast<int64_t>(b[2]) << 16 |
         static_cast<int64_t>(b[3]) << 24;
}

at::ScalarType torch_type(int datatype, const std::string& path) {
  switch (datatype) {
    case DT_UINT8: return torch::kUInt8;
    case DT_INT8: return torch::kInt8;
    case DT_INT16: return torch::kInt16;
    case DT_INT32: return torch::kInt32;
    case DT_INT64: return torch::kInt64;
    case DT_FLOAT32: return torch::kFloat32;
    case DT_FLOAT64: return torch::kFloat64;
    // No torch dtype in 1.13; read_voxels_in_place widens them to float directly.
    case DT_UINT16: return torch::kInt32;
    case DT_UINT32: return torch::kInt64;
    default:
      throw Error(path + ": NIfTI datatype " + std::to_string(datatype) + " (" + nifti_datatype_string(datatype) +
                  ") is not supported (expected an integer or float scalar type)");
  }
}

// nibabel's base affine when neither sform nor qform is set: pixdim on the diagonal, x flipped,
// origin at the volume centre.
Affine base_affine(const nifti_image* nim) {
  Affine a{};
  const int64_t n[3] = {nim->nx, nim->ny, nim->nz};
  const double z[3] = {nim->dx != 0 ? nim->dx : 1.0, nim->dy != 0 ? nim->dy : 1.0, nim->dz != 0 ? nim->dz : 1.0};
  for (int i = 0; i < 3; ++i) {
    const double zoom = i == 0 ? -z[i] : z[i];
    a[i][i] = zoom;
    a[i][3] = -(static_cast<double>(n[i]) - 1.0) / 2.0 * zoom;
  }
  a[3][3] = 1.0;
  return a;
}

template <typename T>
T load_as(const unsigned char* p, bool swap) {
  unsigned char b[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) b[i] = p[swap ? sizeof(T) - 1 - i : i];
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

// nifticlib trusts the header's dimension fields (a negative dim[0] in a NIfTI-2 header smashes
// its stack), so they are checked here first, on the raw (possibly gzip-compressed) bytes.
void validate_header(const std::string& path) {
  unsigned char h[540] = {};
  int got = 0;
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files as they are
  MEDVLP_CHECK(f != nullptr, path, ": cannot open NIfTI file (missing or unreadable)");
  got = gzread(f, h, sizeof h);
  gzclose(f);
  MEDVLP_CHECK(got >= 348, path, ": not a readable NIfTI file (", got < 0 ? 0 : got,
               " header bytes, expected at least 348)");
  const int32_t le = load_as<int32_t>(h, false), be = load_as<int32_t>(h, true);
  const bool n1 = le == 348 || be == 348, n2 = le == 540 || be == 540;
  MEDVLP_CHECK(n1 || (n2 && got >= 540), path, ": not a readable NIfTI file (sizeof_hdr is ", le,
               ", expected 348 for NIfTI-1 or 540 for NIfTI-2)");
  const bool swap = !(le == 348 || le == 540);
  int64_t dim[8];
  for (int i = 0; i < 8; ++i)
    dim[i] = n1 ? load_as<int16_t>(h + 40 + 2 * i, swap) : load_as<int64_t>(h + 16 + 8 * i, swap);
  MEDVLP_CHECK(dim[0] >= 1 && dim[0] <= 7, path, ": not a readable NIfTI file (dim[0] is ", dim[0],
               ", expected 1..7)");
  double voxels = 1;
  for (int i = 1; i <= dim[0]; ++i) {
    MEDVLP_CHECK(dim[i] >= 1, path, ": NIfTI dim[", i, "] is ", dim[i], ", expected a positive size");
    voxels *= static_cast<double>(dim[i]);
  }
  MEDVLP_CHECK(voxels < 1e12, path, ": NIfTI header claims ", voxels, " voxels");
}

// Widens the stored values at `src` to float in place (core::widen_in_place), swapping bytes
// first where the file's order is not ours. Scaling is done in double and rounded once to float,
// as nibabel's get_fdata(dtype=float32); without scaling the direct conversion rounds the same way.
template <typename T>
void convert_in_place(const unsigned char* src, float* dst, int64_t n, bool swap, double slope, double inter) {
  const auto value = [swap](T w) {
    if (swap && sizeof(T) > 1) {
      auto* b = reinterpret_cast<unsigned char*>(&w);
      std::reverse(b, b + sizeof(T));
    }
    return w;
  };
  if (slope == 1.0 && inter == 0.0)
    core::widen_in_place<T>(src, dst, n, [&](T w) { return static_cast<float>(value(w)); });
  else
    core::widen_in_place<T>(src, dst, n, [&](T w) {
      return static_cast<float>(static_cast<double>(value(w)) * slope + inter);
    });
}

struct File {
  int fd = -1;
  ~File() {
    if (fd >= 0) close(fd);
  }
};

struct Unmap {
  size_t length = 0;
  void operator()(void* p) const { munmap(p, length); }
};

// Inflates a gzip file with zlib's streaming reader (any number of members: bgzip, `cat a.gz
// b.gz`), `offset` bytes skipped and `bytes` kept, then reads on to the end so that every
// member's CRC is checked (nifticlib stops once it has the voxels and never sees a bad CRC).
void inflate_streaming(const std::string& path, int64_t offset, unsigned char* data, int64_t bytes) {
  gzFile f = gzopen(path.c_str(), "rb");
  MEDVLP_CHECK(f != nullptr, path, ": cannot open NIfTI file (", std::strerror(errno), ")");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(f, gzclose);
  gzbuffer(f, 1 << 17);
  std::vector<unsigned char> scratch(size_t{1} << 16);
  const auto read = [&](unsigned char* into, int64_t len, bool keep) {
    while (len > 0) {
      const int64_t want = std::min<int64_t>(len, keep ? int64_t{1} << 30 : static_cast<int64_t>(scratch.size()));
      const int got = gzread(f, keep ? into : scratch.data(), static_cast<unsigned>(want));
      if (got <= 0) return false;
      if (keep) into += got;
      len -= got;
    }
    return true;
  };
  bool ok = read(nullptr, offset, false) && read(data, bytes, true);
  int got = 0;
  while (ok && (got = gzread(f, scratch.data(), static_cast<unsigned>(scratch.size()))) > 0) {
  }
  int err = Z_OK;
  gzerror(f, &err);
  MEDVLP_CHECK(ok && got == 0 && err == Z_OK, path, ": cannot read NIfTI voxel data (truncated or corrupt gzip stream)");
}

// The common case without an intermediate copy: voxels of at most 4 bytes are inflated or read
// into the back of the float volume's own buffer and widened there. A one-member .nii.gz (what
// nibabel, dcm2niix and SimpleITK write) is inflated whole by libdeflate (~2x zlib's streaming
// inflate; the trailer gives its size, and libdeflate checks the CRC); other gzip files stream
// through zlib. An undefined result sends the caller to nifticlib (8-byte types).
// [nz,ny,nx], or [t,nz,ny,nx] for a file of several volumes (dimensions 4 to 7 folded into t; x
// varies fastest in the file, then y, z and t).
std::vector<int64_t> voxel_shape(const nifti_image* nim) {
  const int64_t t = static_cast<int64_t>(nim->nvox) / (int64_t{nim->nx} * nim->ny * nim->nz);
  if (t == 1) return {nim->nz, nim->ny, nim->nx};
  return {t, nim->nz, nim->ny, nim->nx};
}

at::Tensor read_voxels_in_place(const std::string& path, const nifti_image* nim, bool gz, int64_t file_bytes,
                                double slope, double inter) {
  const int64_t b = nim->nbyper, n = nim->nvox, offset = nim->iname_offset;
  if (b > 4) return {};
  const bool swap = nim->byteorder != nifti_short_order();
  // For one gzip member: the whole uncompressed file (header, voxels, anything after them).
  int64_t whole = -1;
  if (gz && file_bytes >= 18 && file_bytes < (int64_t{1} << 32)) {
    whole = gzip_isize(path);
    if (whole < offset + b * n || whole > offset + b * n + (int64_t{64} << 20)) whole = -1;
  }
  // The file's bytes are placed so that the stored values start at or after n * (4 - b) bytes.
  const int64_t place = 4 * n - b * n;
  const int64_t spare = std::max(offset, whole - b * n);
  at::Tensor out = core::empty_large(voxel_shape(nim), at::kFloat, static_cast<size_t>(spare));
  unsigned char* raw = static_cast<unsigned char*>(out.data_ptr()) + place;
  bool done = false;
  if (whole >= 0) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    MEDVLP_CHECK(fd >= 0, path, ": cannot open NIfTI file (", std::strerror(errno), ")");
    void* map = mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    const int map_errno = errno;
    close(fd);
    MEDVLP_CHECK(map != MAP_FAILED, path, ": cannot map NIfTI file (", std::strerror(map_errno), ")");
    std::unique_ptr<void, Unmap> mapping(map, Unmap{static_cast<size_t>(file_bytes)});
    std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> inflater(
        libdeflate_alloc_decompressor(), libdeflate_free_decompressor);
    MEDVLP_CHECK(inflater != nullptr, "out of memory: cannot allocate a gzip decompressor");
    size_t used_in = 0, used_out = 0;
    const libdeflate_result r = libdeflate_gzip_decompress_ex(inflater.get(), map, static_cast<size_t>(file_bytes), raw,
                                                              static_cast<size_t>(whole), &used_in, &used_out);
    MEDVLP_CHECK(r != LIBDEFLATE_BAD_DATA, path, ": cannot read NIfTI voxel data (truncated or corrupt gzip stream)");
    // Otherwise more than one member (the trailer sized only the last one): streamed below.
    done = r == LIBDEFLATE_SUCCESS && used_in == static_cast<size_t>(file_bytes) &&
           used_out == static_cast<size_t>(whole);
  }
  if (!done && gz) {
    inflate_streaming(path, offset, raw + offset, b * n);
  } else if (!done) {
    const File file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    MEDVLP_CHECK(file.fd >= 0, path, ": cannot open NIfTI file (", std::strerror(errno), ")");
    for (int64_t got_total = 0; got_total < b * n;) {
      const ssize_t got =
          pread(file.fd, raw + offset + got_total, static_cast<size_t>(b * n - got_total), offset + got_total);
      MEDVLP_CHECK(got > 0, path, ": cannot read NIfTI voxel data (",
                   got < 0 ? std::strerror(errno) : "file is truncated", ")");
      got_total += got;
    }
  }
  float* dst = out.data_ptr<float>();
  const unsigned char* src = raw + offset;
  switch (nim->datatype) {
    case DT_UINT8: convert_in_place<uint8_t>(src, dst, n, swap, slope, inter); break;
    case DT_INT8: convert_in_place<int8_t>(src, dst, n, swap, slope, inter); break;
    case DT_INT16: convert_in_place<int16_t>(src, dst, n, swap, slope, inter); break;
    case DT_UINT16: convert_in_place<uint16_t>(src, dst, n, swap, slope, inter); break;
    case DT_INT32: convert_in_place<int32_t>(src, dst, n, swap, slope, inter); break;
    case DT_UINT32: convert_in_place<uint32_t>(src, dst, n, swap, slope, inter); break;
    case DT_FLOAT32: convert_in_place<float>(src, dst, n, swap, slope, inter); break;
    default: return {};
  }
  return out;
}

// 8-byte types (int64, float64), which cannot be widened in place: nifticlib loads (and
// byte-swaps) the stored array, which is then converted.
at::Tensor read_voxels_nifticlib(const std::string& path, nifti_image* nim, bool gz, double slope, double inter) {
  MEDVLP_CHECK(nifti_image_load(nim) == 0 && nim->data != nullptr, path,
               ": cannot read NIfTI voxel data (truncated or corrupt", gz ? " gzip stream" : "", ")");
  const at::Tensor raw = torch::from_blob(nim->data, {static_cast<int64_t>(nim->nvox)}, torch_type(nim->datatype, path));
  // Created in its final shape: a view of a flat tensor would keep the flat one alive as its
  // autograd base, and reorient_to_ras could no longer flip the volume in place.
  at::Tensor data = core::empty_large(voxel_shape(nim), at::kFloat);
  float* out = data.data_ptr<float>();
  AT_DISPATCH_ALL_TYPES(raw.scalar_type(), "read_nifti", [&] {
    const scalar_t* in = raw.data_ptr<scalar_t>();
    at::parallel_for(0, raw.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = static_cast<float>(static_cast<double>(in[i]) * slope + inter);
    });
  });
  nifti_image_unload(nim);
  return data;
}

}  // namespace

Volume read_nifti(const std::string& path, bool all_volumes) {
  init_nifti();
  const int64_t size = file_size(path);
  MEDVLP_CHECK(size >= 0, path, ": cannot open NIfTI file (missing or unreadable)");
  const bool gz = has_suffix(path, ".gz");
  validate_header(path);
  NimPtr nim(nifti_image_read(path.c_str(), /*read_data=*/0));
  MEDVLP_CHECK(nim != nullptr, path, ": not a readable NIfTI file (bad or truncated header",
               gz ? ", or not gzip data" : "", ")");
  // A .hdr/.img pair (NIfTI-1 pair or ANALYZE 7.5) keeps its voxels in the .img file.
  const std::string data_path = nim->iname != nullptr ? std::string(nim->iname) : path;
  const int64_t data_size = data_path == path ? size : file_size(data_path);
  MEDVLP_CHECK(data_size >= 0, path, ": its voxel file ", data_path, " is missing or unreadable");
  const bool data_gz = has_suffix(data_path, ".gz");
  MEDVLP_CHECK(nim->ndim >= 1 && nim->nx > 0 && nim->ny > 0 && nim->nz > 0, path,
               ": NIfTI dimensions must be positive, got ", nim->nx, "x", nim->ny, "x", nim->nz);
  const int64_t extra = nim->nvox / (int64_t{nim->nx} * nim->ny * nim->nz);
  MEDVLP_CHECK(extra == 1 || all_volumes, path, ": expected a 3D volume, got ", nim->ndim, " dimensions with ", extra,
               " volumes (", nim->nx, "x", nim->ny, "x", nim->nz, "x", extra, "); `medvlp inspect` shows each of them");
  torch_type(nim->datatype, path);  // refuses unsupported types before anything is allocated
  // nifticlib stores vox_offset as an int: a huge or negative float in the header becomes a
  // negative offset (a fuzzer-found write before the volume's buffer).
  MEDVLP_CHECK(nim->iname_offset >= 0, path, ": NIfTI vox_offset gives data offset ", nim->iname_offset,
               ", expected a non-negative byte offset");
  // Check that the data is there before nifticlib allocates for it: a corrupt header must not
  // become a multi-gigabyte allocation.
  const int64_t need = nim->iname_offset + nim->nvox * nim->nbyper;
  if (!data_gz) {
    MEDVLP_CHECK(need <= data_size, data_path, ": NIfTI file is truncated: ", data_size, " bytes, header needs ", need);
  } else {
    // Deflate expands by at most 1032:1, which bounds what a small corrupt file can claim.
    MEDVLP_CHECK(static_cast<double>(need) <= 1032.0 * static_cast<double>(data_size) + 65536.0, data_path,
                 ": NIfTI file is truncated: header needs ", need, " bytes, more than ", data_size,
                 " compressed bytes can hold");
  }
  double slope = nim->scl_slope, inter = nim->scl_inter;
  // nibabel: a zero or non-finite slope means "no scaling".
  if (slope != 0 && std::isfinite(slope)) {
    MEDVLP_CHECK(std::isfinite(inter), path, ": NIfTI scl_slope is valid but scl_inter is ", inter);
  } else {
    slope = 1.0, inter = 0.0;
  }
  at::Tensor data = read_voxels_in_place(data_path, nim.get(), data_gz, data_size, slope, inter);
  if (!data.defined()) data = read_voxels_nifticlib(data_path, nim.get(), data_gz, slope, inter);
  Volume v;
  v.data = std::move(data);
  if (nim->sform_code > 0) {
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) v.affine[r][c] = nim->sto_xyz.m[r][c];
  } else if (nim->qform_code > 0) {
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) v.affine[r][c] = nim->qto_xyz.m[r][c];
  } else {
    v.affine = base_affine(nim.get());
  }
  v.spacing = affine_spacing(v.affine);
  for (double s : v.spacing) MEDVLP_CHECK(std::isfinite(s), path, ": NIfTI affine is not finite");
  return v;
}

std::string nifti_header_of(const std::string& path) {
  for (const char* s : {".nii", ".nii.gz", ".hdr", ".hdr.gz"})
    if (has_suffix(path, s)) return path;
  for (const char* s : {".img", ".img.gz"})
    if (has_suffix(path, s)) {
      const std::string stem = path.substr(0, path.size() - std::strlen(s));
      for (const char* h : {".hdr", ".hdr.gz"})
        if (path_exists(stem + h)) return stem + h;
    }
  return "";
}

bool nifti_rescales(const std::string& path) {
  init_nifti();
  MEDVLP_CHECK(file_size(path) >= 0, path, ": cannot open NIfTI file (missing or unreadable)");
  validate_header(path);
  NimPtr nim(nifti_image_read(path.c_str(), /*read_data=*/0));
  MEDVLP_CHECK(nim != nullptr, path, ": not a readable NIfTI file (bad or truncated header)");
  const double slope = nim->scl_slope, inter = nim->scl_inter;
  return slope != 0 && std::isfinite(slope) && !(slope == 1.0 && inter == 0.0);
}

void write_nifti(const std::string& path, const Volume& volume, const std::string& datatype, double scl_slope,
                 double scl_inter) {
  init_nifti();
  MEDVLP_CHECK(scl_slope != 0 && std::isfinite(scl_slope) && std::isfinite(scl_inter), path,
               ": scl_slope must be finite and non-zero and scl_inter finite");
  MEDVLP_CHECK(has_suffix(path, ".nii") || has_suffix(path, ".nii.gz"), path, ": NIfTI file name must end in .nii or .nii.gz");
  MEDVLP_CHECK(volume.data.defined() && volume.data.dim() == 3, path, ": expected a [D,H,W] volume");
  int dt = 0;
  at::Tensor data;
  const at::Tensor stored = (volume.data.to(torch::kCPU, torch::kFloat64) - scl_inter) / scl_slope;
  if (datatype == "float32") {
    dt = DT_FLOAT32;
    data = stored.to(torch::kFloat32).contiguous();
  } else if (datatype == "int16") {
    dt = DT_INT16;
    data = stored.round().clamp(-32768, 32767).to(torch::kInt16).contiguous();
  } else {
    throw Error(path + ": NIfTI datatype must be float32 or int16, got '" + datatype + "'");
  }
  const int64_t dims[8] = {3, volume.data.size(2), volume.data.size(1), volume.data.size(0), 1, 1, 1, 1};
  NimPtr nim(nifti_make_new_nim(dims, dt, /*data_fill=*/0));
  MEDVLP_CHECK(nim != nullptr, path, ": cannot create NIfTI header");
  // nifticlib frees nim->data with the image; give it its own copy.
  const size_t bytes = static_cast<size_t>(data.numel()) * data.element_size();
  nim->data = std::calloc(1, bytes == 0 ? 1 : bytes);
  MEDVLP_CHECK(nim->data != nullptr, path, ": out of memory");
  std::memcpy(nim->data, data.data_ptr(), bytes);
  nifti_dmat44 m;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) m.m[r][c] = volume.affine[r][c];
  nim->sto_xyz = m;
  nim->sto_ijk = nifti_dmat44_inverse(m);
  nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
  nifti_dmat44_to_quatern(m, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
  nim->quatern_b = qb;
  nim->quatern_c = qc;
  nim->quatern_d = qd;
  nim->qoffset_x = qx;
  nim->qoffset_y = qy;
  nim->qoffset_z = qz;
  nim->qfac = qfac;
  nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->dx = nim->pixdim[1] = dx;
  nim->dy = nim->pixdim[2] = dy;
  nim->dz = nim->pixdim[3] = dz;
  nim->pixdim[0] = qfac;
  nim->xyz_units = NIFTI_UNITS_MM;
  nim->scl_slope = scl_slope;
  nim->scl_inter = scl_inter;
  // Write next to the target and rename, so that a crash never leaves half a file under its name.
  const std::string tmp = path.substr(0, path.size() - (has_suffix(path, ".gz") ? 7 : 4)) + ".partial" +
                          (has_suffix(path, ".gz") ? ".nii.gz" : ".nii");
  MEDVLP_CHECK(nifti_set_filenames(nim.get(), tmp.c_str(), 0, 1) == 0, path, ": cannot set NIfTI file name");
  nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
  nifti_image_write(nim.get());
  MEDVLP_CHECK(file_size(tmp) > 0, path, ": cannot write NIfTI file");
  MEDVLP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp, " into place");
}

}  // namespace medvlp::io
