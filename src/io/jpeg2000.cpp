#include "jpeg2000.h"

#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "medvlp/core/error.h"

namespace medvlp::io::detail {

namespace {

// OpenJPEG reads through callbacks; this one serves a buffer held in memory.
struct Memory {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
};

OPJ_SIZE_T read_memory(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* m = static_cast<Memory*>(user);
  if (m->pos >= m->size) return static_cast<OPJ_SIZE_T>(-1);
  const size_t count = std::min<size_t>(n, m->size - m->pos);
  std::memcpy(buffer, m->data + m->pos, count);
  m->pos += count;
  return count;
}

OPJ_OFF_T skip_memory(OPJ_OFF_T n, void* user) {
  auto* m = static_cast<Memory*>(user);
  if (n < 0) {
    const auto back = static_cast<size_t>(std::min<OPJ_OFF_T>(-n, static_cast<OPJ_OFF_T>(m->pos)));
    m->pos -= back;
    return -static_cast<OPJ_OFF_T>(back);
  }
  const auto ahead = static_cast<size_t>(std::min<OPJ_OFF_T>(n, static_cast<OPJ_OFF_T>(m->size - m->pos)));
  m->pos += ahead;
  return static_cast<OPJ_OFF_T>(ahead);
}

OPJ_BOOL seek_memory(OPJ_OFF_T n, void* user) {
  auto* m = static_cast<Memory*>(user);
  if (n < 0 || static_cast<uint64_t>(n) > m->size) return OPJ_FALSE;
  m->pos = static_cast<size_t>(n);
  return OPJ_TRUE;
}

void keep_message(const char* msg, void* user) {
  auto* out = static_cast<std::string*>(user);
  if (out->empty()) {
    *out = msg;
    while (!out->empty() && (out->back() == '\n' || out->back() == ' ')) out->pop_back();
  }
}
void ignore_message(const char*, void*) {}

struct CodecDeleter {
  void operator()(opj_codec_t* c) const { opj_destroy_codec(c); }
};
struct StreamDeleter {
  void operator()(opj_stream_t* s) const { opj_stream_destroy(s); }
};
struct ImageDeleter {
  void operator()(opj_image_t* i) const { opj_image_destroy(i); }
};

}  // namespace

bool is_jpeg2000_syntax(const std::string& uid) {
  return uid == "1.2.840.10008.1.2.4.90" || uid == "1.2.840.10008.1.2.4.91";
}

Jpeg2000Image decode_jpeg2000(const uint8_t* data, size_t size, int64_t width, int64_t height, int64_t components,
                              const std::string& where) {
  MEDVLP_CHECK(size >= 12, where, ": a JPEG 2000 codestream of ", size, " bytes");
  // A JP2 file starts with its signature box; DICOM normally holds the bare codestream (SOC marker).
  static const uint8_t kJp2[] = {0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20};
  const bool jp2 = std::memcmp(data, kJp2, sizeof(kJp2)) == 0;
  MEDVLP_CHECK(jp2 || (data[0] == 0xFF && data[1] == 0x4F), where,
               ": not a JPEG 2000 codestream (no SOC marker FF4F, no JP2 signature)");
  std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K));
  MEDVLP_CHECK(codec, where, ": OpenJPEG could not create a decoder");
  std::string error;
  opj_set_error_handler(codec.get(), keep_message, &error);
  opj_set_warning_handler(codec.get(), ignore_message, nullptr);
  opj_set_info_handler(codec.get(), ignore_message, nullptr);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  MEDVLP_CHECK(opj_setup_decoder(codec.get(), &parameters), where, ": OpenJPEG rejected the decoder setup");

  Memory memory{data, size};
  std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  MEDVLP_CHECK(stream, where, ": OpenJPEG could not create a stream");
  opj_stream_set_user_data(stream.get(), &memory, nullptr);
  opj_stream_set_user_data_length(stream.get(), size);
  opj_stream_set_read_function(stream.get(), read_memory);
  opj_stream_set_skip_function(stream.get(), skip_memory);
  opj_stream_set_seek_function(stream.get(), seek_memory);

  opj_image_t* raw = nullptr;
  const bool header = opj_read_header(stream.get(), codec.get(), &raw);
  std::unique_ptr<opj_image_t, ImageDeleter> image(raw);
  MEDVLP_CHECK(header && image, where, ": the JPEG 2000 header cannot be read (", error.empty() ? "no detail" : error, ")");
  MEDVLP_CHECK(image->numcomps >= 1 && static_cast<int64_t>(image->numcomps) == components &&
                   static_cast<int64_t>(image->comps[0].w) == width && static_cast<int64_t>(image->comps[0].h) == height,
               where, ": the JPEG 2000 image is ", image->numcomps >= 1 ? image->comps[0].w : 0, "x",
               image->numcomps >= 1 ? image->comps[0].h : 0, " with ", image->numcomps, " components, the header says ",
               width, "x", height, " with ", components);
  const bool decoded = opj_decode(codec.get(), stream.get(), image.get()) && opj_end_decompress(codec.get(), stream.get());
  MEDVLP_CHECK(decoded, where, ": the JPEG 2000 codestream cannot be decoded (", error.empty() ? "no detail" : error, ")");

  Jpeg2000Image out;
  out.components = image->numcomps;
  MEDVLP_CHECK(out.components >= 1, where, ": a JPEG 2000 image without components");
  const opj_image_comp_t& first = image->comps[0];
  out.width = first.w;
  out.height = first.h;
  out.precision = static_cast<int>(first.prec);
  for (int64_t c = 0; c < out.components; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    MEDVLP_CHECK(comp.data != nullptr, where, ": JPEG 2000 component ", c, " was not decoded");
    MEDVLP_CHECK(comp.w == first.w && comp.h == first.h && comp.dx == 1 && comp.dy == 1, where, ": JPEG 2000 component ", c,
                 " is ", comp.w, "x", comp.h, " (subsampling ", comp.dx, "x", comp.dy, "), component 0 ", first.w, "x", first.h,
                 ": subsampled components are not supported");
    MEDVLP_CHECK(static_cast<int>(comp.prec) == out.precision && comp.sgnd == first.sgnd, where,
                 ": JPEG 2000 components differ in precision or sign");
  }
  const int64_t pixels = out.width * out.height;
  out.samples.resize(static_cast<size_t>(pixels * out.components));
  for (int64_t c = 0; c < out.components; ++c) {
    const OPJ_INT32* src = image->comps[c].data;
    for (int64_t i = 0; i < pixels; ++i) out.samples[static_cast<size_t>(i * out.components + c)] = src[i];
  }
  return out;
}

}  // namespace medvlp::io::detail
