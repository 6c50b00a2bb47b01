#include "medvlp/io/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <new>

#include <torch/torch.h>

#include "../core/large_tensor.h"
#include "jpeg2000.h"
#include "medvlp/core/error.h"

namespace medvlp::io {
namespace {

constexpr double kMaxPixelBytes = 2.0 * (1 << 30);

// DCMTK's codec list is global; registering once per process is enough and thread-safe after.
// DCMTK's own logger would print a second, less specific, copy of every error we report.
void init_dcmtk() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    // Elements written with VR UN (anonymizers, archives, converters that lost the VR) take their
    // dictionary VR, as pydicom's replace_un_with_known_vr does: read as raw bytes, a Rescale Slope
    // of "1.94" would come out as 31 and a modality as "50\\54", silently.
    dcmEnableUnknownVRConversion.set(OFTrue);
    // An uncompressed dataset whose VR encoding contradicts its meta header is read as it is
    // encoded, as pydicom does (compressed ones: load_implicit_under_explicit_meta).
    dcmAutoDetectDatasetXfer.set(OFTrue);
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

// An element left as raw bytes (UN or OB where a text or number is expected: a private tag, an
// undefined length, a dictionary that lacks it) would read as hex digits; it counts as absent.
bool raw_bytes(DcmElement* el) {
  const DcmEVR vr = el->ident();
  return vr == EVR_UN || vr == EVR_OB;
}

std::string get_string(DcmItem* ds, const DcmTagKey& tag) {
  DcmElement* el = nullptr;
  if (ds->findAndGetElement(tag, el).bad() || el == nullptr || raw_bytes(el)) return {};
  OFString s;
  if (el->getOFStringArray(s).bad()) return {};
  std::string out = s.c_str();
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
  return out;
}

std::vector<double> get_doubles(DcmItem* ds, const DcmTagKey& tag) {
  std::vector<double> out;
  DcmElement* el = nullptr;
  if (ds->findAndGetElement(tag, el).bad() || el == nullptr || raw_bytes(el)) return out;
  const unsigned long n = el->getVM();
  for (unsigned long i = 0; i < n; ++i) {
    Float64 v = 0;
    if (el->getFloat64(v, i).bad()) {
      // DS/IS values go through their string form; an unparsable one makes the whole tag absent.
      OFString s;
      if (el->getOFString(s, i).bad()) return {};
      try {
        v = std::stod(s.c_str());
      } catch (const std::exception&) {
        return {};
      }
    }
    out.push_back(v);
  }
  return out;
}

int64_t get_int(DcmItem* ds, const DcmTagKey& tag, int64_t fallback) {
  const auto v = get_doubles(ds, tag);
  // Out-of-range values (a corrupt IS) become -1 so that the range checks reject them.
  if (v.empty()) return fallback;
  return std::isfinite(v[0]) && std::abs(v[0]) < 1e15 ? static_cast<int64_t>(v[0]) : -1;
}

struct Loaded {
  DcmFileFormat file;
  DcmDataset* ds = nullptr;
  E_TransferSyntax xfer = EXS_Unknown;
  bool implicit_under_explicit_meta = false;
};

// The transfer syntax the file meta header names; EXS_Unknown without one. DCMTK reads the meta
// header before the dataset, so it is there even when the dataset failed to parse.
E_TransferSyntax stated_syntax(DcmFileFormat& file) {
  OFString uid;
  DcmMetaInfo* meta = file.getMetaInfo();
  if (meta == nullptr || meta->findAndGetOFString(DCM_TransferSyntaxUID, uid).bad()) return EXS_Unknown;
  return DcmXfer(uid.c_str()).getXfer();
}

// Where the dataset of a Part 10 file starts when its first element carries no VR (implicit VR
// encoding); 0 when it does, or when the meta header (128-byte preamble, "DICM", explicit-VR
// little-endian group 0002 elements) cannot be walked by hand.
uint64_t implicit_dataset_offset(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<unsigned char, 132> head{};
  if (!in.read(reinterpret_cast<char*>(head.data()), head.size()) || std::memcmp(head.data() + 128, "DICM", 4) != 0)
    return 0;
  uint64_t at = head.size();
  for (;;) {
    std::array<unsigned char, 8> el{};
    if (!in.read(reinterpret_cast<char*>(el.data()), el.size())) return 0;
    if ((el[0] | (el[1] << 8)) != 0x0002) return std::isupper(el[4]) && std::isupper(el[5]) ? 0 : at;
    const std::string vr(reinterpret_cast<const char*>(el.data()) + 4, 2);
    uint64_t length = el[6] | (el[7] << 8);
    uint64_t header = 8;
    if (vr == "OB" || vr == "OW" || vr == "OF" || vr == "OD" || vr == "OL" || vr == "OV" || vr == "SQ" ||
        vr == "UN" || vr == "UT" || vr == "UC" || vr == "UR") {
      std::array<unsigned char, 4> l32{};
      if (!in.read(reinterpret_cast<char*>(l32.data()), l32.size())) return 0;
      length = static_cast<uint64_t>(l32[0]) | (l32[1] << 8) | (l32[2] << 16) | (static_cast<uint64_t>(l32[3]) << 24);
      header = 12;
    }
    if (length == 0xFFFFFFFFu) return 0;
    at += header + length;
    if (!in.seekg(static_cast<std::streamoff>(at))) return 0;
  }
}

// Some archives write an implicit-VR dataset under a meta header that names an explicit-VR
// (often compressed) transfer syntax. DCMTK reads the dataset as the meta header says and fails
// ("Invalid tag"); pydicom sees that the bytes after the first tag are no VR and reads implicit.
// DCMTK's own detection (dcmAutoDetectDatasetXfer) covers uncompressed syntaxes only, so this
// reads the dataset as implicit VR and gives encapsulated pixel data back the meta header's
// syntax, so that its decoder still applies. True when the file is such a file and was read.
bool load_implicit_under_explicit_meta(Loaded* l, const std::string& path, bool header_only) {
  const DcmXfer stated(stated_syntax(l->file));
  if (stated.getXfer() == EXS_Unknown || !stated.isExplicitVR() || !stated.isLittleEndian() ||
      stated.getStreamCompression() != ESC_none)
    return false;
  const uint64_t offset = implicit_dataset_offset(path);
  if (offset == 0) return false;  // explicit VR as stated: the failure has another cause
  DcmInputFileStream stream(path.c_str(), static_cast<offile_off_t>(offset));
  if (stream.status().bad()) return false;
  DcmDataset* ds = l->file.getDataset();
  ds->clear();
  ds->transferInit();
  const OFCondition st = header_only
                             ? ds->readUntilTag(stream, EXS_LittleEndianImplicit, EGL_noChange, DCM_MaxReadLength,
                                                DCM_PixelData)
                             : ds->read(stream, EXS_LittleEndianImplicit, EGL_noChange, DCM_MaxReadLength);
  ds->transferEnd();
  if (st.bad() && st != EC_StreamNotifyClient) return false;
  if (!header_only && stated.isEncapsulated()) {
    DcmElement* el = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, el).good() && el != nullptr) {
      auto* pixels = dynamic_cast<DcmPixelData*>(el);
      DcmPixelSequence* sequence = nullptr;
      if (pixels != nullptr &&
          pixels->getEncapsulatedRepresentation(EXS_LittleEndianImplicit, nullptr, sequence).good() &&
          sequence != nullptr) {
        // putOriginalRepresentation deletes the representation that owns `sequence`: hand it a copy.
        pixels->putOriginalRepresentation(stated.getXfer(), nullptr, new DcmPixelSequence(*sequence));
      }
    }
  }
  l->ds = ds;
  l->xfer = stated.getXfer();
  l->implicit_under_explicit_meta = true;
  return true;
}

void load(Loaded* l, const std::string& path, bool header_only) {
  init_dcmtk();
  {
    std::ifstream probe(path, std::ios::binary);
    MEDVLP_CHECK(probe.good(), path, ": cannot open DICOM file (missing or unreadable)");
  }
  const OFCondition st = header_only
                             ? l->file.loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                                        ERM_autoDetect, DCM_PixelData)
                             : l->file.loadFile(path.c_str());
  if (st.bad() && load_implicit_under_explicit_meta(l, path, header_only)) return;
  MEDVLP_CHECK(st.good(), path, ": not a readable DICOM file (", st.text(), ")");
  l->ds = l->file.getDataset();
  MEDVLP_CHECK(l->ds != nullptr, path, ": not a readable DICOM file (no dataset)");
  l->xfer = l->ds->getOriginalXfer();
  const DcmXfer stated(stated_syntax(l->file));
  if (stated.getXfer() != EXS_Unknown && stated.isExplicitVR() && !DcmXfer(l->xfer).isExplicitVR()) {
    l->implicit_under_explicit_meta = true;
    // Reported as the file states it, as pydicom does, unless the byte order differs too (the
    // decoder needs the order the values are stored in).
    if (stated.getByteOrder() == DcmXfer(l->xfer).getByteOrder()) l->xfer = stated.getXfer();
  }
}

DicomInfo info_of(const Loaded& l, const std::string& path) {
  DcmDataset* ds = l.ds;
  DicomInfo info;
  info.path = path;
  const DcmXfer x(l.xfer);
  info.transfer_syntax = x.getXferID();
  info.transfer_syntax_name = x.getXferName();
  // A file without meta header has no stated syntax: DCMTK guessed it, and we say so.
  if (info.transfer_syntax.empty()) info.transfer_syntax_name = "unknown";
  info.implicit_vr_under_explicit_meta = l.implicit_under_explicit_meta;
  info.modality = get_string(ds, DCM_Modality);
  info.photometric = get_string(ds, DCM_PhotometricInterpretation);
  info.view_position = get_string(ds, DCM_ViewPosition);
  info.patient_id = get_string(ds, DCM_PatientID);
  info.study_uid = get_string(ds, DCM_StudyInstanceUID);
  info.series_uid = get_string(ds, DCM_SeriesInstanceUID);
  info.sop_uid = get_string(ds, DCM_SOPInstanceUID);
  info.rows = get_int(ds, DCM_Rows, 0);
  info.columns = get_int(ds, DCM_Columns, 0);
  info.frames = get_int(ds, DCM_NumberOfFrames, 1);
  info.samples_per_pixel = get_int(ds, DCM_SamplesPerPixel, 1);
  info.bits_allocated = get_int(ds, DCM_BitsAllocated, 0);
  info.bits_stored = get_int(ds, DCM_BitsStored, info.bits_allocated);
  info.is_signed = get_int(ds, DCM_PixelRepresentation, 0) == 1;
  // pydicom rescales only when both values are present; so do we.
  const auto slope = get_doubles(ds, DCM_RescaleSlope), intercept = get_doubles(ds, DCM_RescaleIntercept);
  if (!slope.empty() && !intercept.empty()) {
    info.rescale_slope = slope[0];
    info.rescale_intercept = intercept[0];
  }
  DcmSequenceOfItems* seq = nullptr;
  info.has_modality_lut_sequence =
      ds->findAndGetSequence(DCM_ModalityLUTSequence, seq).good() && seq != nullptr && seq->card() > 0;
  auto spacing = get_doubles(ds, DCM_PixelSpacing);
  if (spacing.size() < 2) spacing = get_doubles(ds, DCM_ImagerPixelSpacing);
  if (spacing.size() >= 2) info.pixel_spacing = std::array<double, 2>{spacing[0], spacing[1]};
  info.window_center = get_doubles(ds, DCM_WindowCenter);
  info.window_width = get_doubles(ds, DCM_WindowWidth);
  info.voi_lut_function = get_string(ds, DCM_VOILUTFunction);
  if (info.voi_lut_function.empty()) info.voi_lut_function = "LINEAR";
  const auto pos = get_doubles(ds, DCM_ImagePositionPatient);
  if (pos.size() == 3) info.image_position = std::array<double, 3>{pos[0], pos[1], pos[2]};
  const auto ori = get_doubles(ds, DCM_ImageOrientationPatient);
  if (ori.size() == 6) info.image_orientation = std::array<double, 6>{ori[0], ori[1], ori[2], ori[3], ori[4], ori[5]};
  const auto thick = get_doubles(ds, DCM_SliceThickness);
  if (!thick.empty()) info.slice_thickness = thick[0];
  info.instance_number = get_int(ds, DCM_InstanceNumber, 0);
  return info;
}

// JPEG 2000 pixel data (which DCMTK's free toolkit cannot decode) through OpenJPEG: the fragments
// grouped into frames (one per frame, by the Basic Offset Table, or at each codestream start), each
// frame decoded and written as the stored words the uncompressed path reads. As pydicom with GDCM
// does, PixelRepresentation decides the sign when the codestream disagrees (its bits are read as
// two's complement: J2K_pixelrep_mismatch), a codestream precision above BitsStored widens it, and
// YBR_RCT/YBR_ICT come out as RGB (the decoder inverts the component transform).
std::vector<uint8_t> decode_jpeg2000_frames(const std::string& path, DcmElement* pixel_el, E_TransferSyntax xfer,
                                            DicomInfo* info) {
  auto* pixel_data = dynamic_cast<DcmPixelData*>(pixel_el);
  MEDVLP_CHECK(pixel_data != nullptr, path, ": PixelData is not pixel data");
  DcmPixelSequence* sequence = nullptr;
  const OFCondition st = pixel_data->getEncapsulatedRepresentation(xfer, nullptr, sequence);
  MEDVLP_CHECK(st.good() && sequence != nullptr, path, ": cannot read the JPEG 2000 fragments (", st.text(), ")");
  struct Fragment {
    const uint8_t* data;
    size_t size;
    uint64_t offset;  // from the first fragment's item tag, as the Basic Offset Table counts
  };
  std::vector<Fragment> fragments;
  std::vector<uint64_t> table;
  uint64_t offset = 0;
  for (unsigned long i = 0; i < sequence->card(); ++i) {
    DcmPixelItem* item = nullptr;
    MEDVLP_CHECK(sequence->getItem(item, i).good() && item != nullptr, path, ": cannot read pixel data item ", i);
    Uint8* p = nullptr;
    const Uint32 length = item->getLength();
    if (length > 0) MEDVLP_CHECK(item->getUint8Array(p).good() && p != nullptr, path, ": cannot read pixel data item ", i);
    if (i == 0) {
      for (Uint32 k = 0; k + 4 <= length; k += 4)
        table.push_back(static_cast<uint64_t>(p[k]) | static_cast<uint64_t>(p[k + 1]) << 8 |
                        static_cast<uint64_t>(p[k + 2]) << 16 | static_cast<uint64_t>(p[k + 3]) << 24);
      continue;
    }
    fragments.push_back({p, length, offset});
    offset += 8 + length;
  }
  MEDVLP_CHECK(!fragments.empty(), path, ": JPEG 2000 pixel data without fragments");
  const auto frames = static_cast<size_t>(info->frames);
  std::vector<std::vector<size_t>> groups;
  if (frames == 1) {
    groups.emplace_back();
    for (size_t i = 0; i < fragments.size(); ++i) groups.back().push_back(i);
  } else if (fragments.size() == frames) {
    for (size_t i = 0; i < frames; ++i) groups.push_back({i});
  } else if (table.size() == frames) {
    for (size_t f = 0; f < frames; ++f) {
      groups.emplace_back();
      const uint64_t end = f + 1 < frames ? table[f + 1] : UINT64_MAX;
      for (size_t i = 0; i < fragments.size(); ++i)
        if (fragments[i].offset >= table[f] && fragments[i].offset < end) groups.back().push_back(i);
    }
  } else {
    for (size_t i = 0; i < fragments.size(); ++i) {
      const bool starts = fragments[i].size >= 2 && fragments[i].data[0] == 0xFF && fragments[i].data[1] == 0x4F;
      if (starts || groups.empty()) groups.emplace_back();
      groups.back().push_back(i);
    }
  }
  MEDVLP_CHECK(groups.size() == frames, path, ": ", fragments.size(), " JPEG 2000 fragments could not be grouped into ",
               frames, " frames");
  MEDVLP_CHECK(info->bits_allocated == 8 || info->bits_allocated == 16, path, ": JPEG 2000 with BitsAllocated ",
               info->bits_allocated, " is not supported (expected 8 or 16)");
  const int64_t bytes = info->bits_allocated / 8;
  const int64_t frame_values = info->rows * info->columns * info->samples_per_pixel;
  std::vector<uint8_t> out(static_cast<size_t>(frame_values * static_cast<int64_t>(frames) * bytes));
  for (size_t f = 0; f < frames; ++f) {
    std::vector<uint8_t> joined;
    const uint8_t* data = fragments[groups[f].front()].data;
    size_t size = fragments[groups[f].front()].size;
    if (groups[f].size() > 1) {
      for (size_t i : groups[f]) joined.insert(joined.end(), fragments[i].data, fragments[i].data + fragments[i].size);
      data = joined.data();
      size = joined.size();
    }
    const std::string where = frames == 1 ? path : path + " frame " + std::to_string(f);
    const detail::Jpeg2000Image image =
        detail::decode_jpeg2000(data, size, info->columns, info->rows, info->samples_per_pixel, where);
    MEDVLP_CHECK(image.precision >= 1 && image.precision <= info->bits_allocated, where, ": JPEG 2000 precision ",
                 image.precision, " does not fit BitsAllocated ", info->bits_allocated);
    // A codestream wider than BitsStored keeps its bits (693_J2KI: 16-bit samples, BitsStored 14).
    if (f == 0) info->bits_stored = std::max<int64_t>(info->bits_stored, image.precision);
    uint8_t* dst = out.data() + static_cast<int64_t>(f) * frame_values * bytes;
    if (bytes == 1) {
      for (int64_t i = 0; i < frame_values; ++i) dst[i] = static_cast<uint8_t>(image.samples[static_cast<size_t>(i)]);
    } else {
      for (int64_t i = 0; i < frame_values; ++i) {
        const auto w = static_cast<uint16_t>(image.samples[static_cast<size_t>(i)]);
        std::memcpy(dst + 2 * i, &w, 2);  // host order, as the uncompressed path reads words
      }
    }
  }
  if (info->photometric == "YBR_RCT" || info->photometric == "YBR_ICT") info->photometric = "RGB";
  return out;
}

bool has_decoder(E_TransferSyntax xfer) {
  switch (xfer) {
    case EXS_JPEGProcess1:
    case EXS_JPEGProcess2_4:
    case EXS_JPEGProcess14:
    case EXS_JPEGProcess14SV1:
    case EXS_JPEGLSLossless:
    case EXS_JPEGLSLossy:
    case EXS_RLELossless:
      return true;
    default:
      return false;
  }
}

// `n` 16-bit LUT entries as DCMTK holds them (host order) -> int32 values 0..65535.
at::Tensor unsigned_words(const Uint16* words, int64_t n) {
  return torch::from_blob(const_cast<Uint16*>(words), {n}, torch::kInt16).to(torch::kInt32).bitwise_and(0xFFFF);
}

// A lookup table applied as pydicom applies LUTs: stored values below the first mapped value take
// the first entry, values past the table the last.
at::Tensor look_up(const at::Tensor& lut, const at::Tensor& values, int64_t first, int64_t entries) {
  const at::Tensor index = (values.to(torch::kInt64) - first).clamp(0, entries - 1);
  return lut.index_select(0, index.flatten()).view(index.sizes());
}

// pydicom's apply_modality_lut for a Modality LUT Sequence: values below the first mapped value
// take the first entry, values past the table the last.
void apply_lut_sequence(DcmDataset* ds, const std::string& path, at::Tensor& values) {
  DcmItem* item = nullptr;
  MEDVLP_CHECK(ds->findAndGetSequenceItem(DCM_ModalityLUTSequence, item, 0).good() && item != nullptr, path,
               ": ModalityLUTSequence has no item");
  const auto desc = get_doubles(item, DCM_LUTDescriptor);
  MEDVLP_CHECK(desc.size() == 3, path, ": ModalityLUTSequence LUTDescriptor must have 3 values, got ", desc.size());
  const int64_t entries = desc[0] == 0 ? 65536 : static_cast<int64_t>(desc[0]);
  const int64_t first = static_cast<int64_t>(desc[1]);
  DcmElement* data = nullptr;
  MEDVLP_CHECK(item->findAndGetElement(DCM_LUTData, data).good() && data != nullptr, path,
               ": ModalityLUTSequence has no LUTData");
  Uint16* words = nullptr;
  MEDVLP_CHECK(data->getUint16Array(words).good() && words != nullptr, path, ": LUTData is not 16-bit");
  const int64_t have = static_cast<int64_t>(data->getLength() / 2);
  MEDVLP_CHECK(have >= entries, path, ": LUTData has ", have, " entries, LUTDescriptor says ", entries);
  values = look_up(unsigned_words(words, entries).to(torch::kFloat64), values, first, entries);
}

// PALETTE COLOR: stored indices -> R, G, B (and alpha when present) through the Palette Color
// Lookup Tables, as pydicom's apply_color_lut maps them: indices below the first mapped value take
// the first entry, those past the table the last; the entries' depth (8 or 16 bits) is the data
// length over the number of entries. values: [F,1,H,W] indices -> [F,C,H,W] LUT values.
at::Tensor apply_palette(DcmDataset* ds, const std::string& path, const at::Tensor& values, bool is_signed) {
  MEDVLP_CHECK(!ds->tagExists(DCM_SegmentedRedPaletteColorLookupTableData), path,
               ": segmented palette colour lookup tables are not supported");
  const auto desc = get_doubles(ds, DCM_RedPaletteColorLookupTableDescriptor);
  MEDVLP_CHECK(desc.size() == 3, path, ": RedPaletteColorLookupTableDescriptor must have 3 values, got ", desc.size());
  const int64_t entries = desc[0] == 0 ? 65536 : static_cast<int64_t>(desc[0]);
  int64_t first = static_cast<int64_t>(desc[1]);
  if (is_signed && first > 32767) first -= 65536;  // US/SS: signed pixels may map from a negative value
  std::vector<at::Tensor> channels;
  const DcmTagKey tables[] = {DCM_RedPaletteColorLookupTableData, DCM_GreenPaletteColorLookupTableData,
                              DCM_BluePaletteColorLookupTableData, DCM_AlphaPaletteColorLookupTableData};
  const char* names[] = {"Red", "Green", "Blue", "Alpha"};
  for (int c = 0; c < 4; ++c) {
    DcmElement* data = nullptr;
    if (ds->findAndGetElement(tables[c], data).bad() || data == nullptr) {
      MEDVLP_CHECK(c == 3, path, ": PALETTE COLOR without ", names[c], "PaletteColorLookupTableData");
      break;
    }
    const int64_t length = static_cast<int64_t>(data->getLength());
    MEDVLP_CHECK(length == entries || length == 2 * entries, path, ": ", names[c], "PaletteColorLookupTableData has ",
                 length, " bytes for ", entries, " entries (expected 8 or 16 bits per entry)");
    Uint16* words = nullptr;
    MEDVLP_CHECK(data->getUint16Array(words).good() && words != nullptr, path, ": cannot read ", names[c],
                 "PaletteColorLookupTableData");
    at::Tensor lut;
    if (length == 2 * entries) {
      lut = unsigned_words(words, entries);
    } else {
      // 8-bit entries packed two to a 16-bit OW word, the first in the low byte: read by words,
      // they are the same in either byte order (a big-endian file stores each word's high byte
      // first; DCMTK's dcmconv converts them so, and pydicom 2.3, taking the file's bytes in order,
      // reads such a file's entries pairwise swapped).
      const at::Tensor w = unsigned_words(words, (entries + 1) / 2);
      lut = torch::stack({w.bitwise_and(0xFF), w.bitwise_right_shift(8)}, 1).flatten().narrow(0, 0, entries);
    }
    channels.push_back(look_up(lut.to(torch::kFloat32), values.select(1, 0), first, entries));
  }
  return torch::stack(channels, 1);
}

// YBR_FULL -> RGB as pydicom's convert_color_space computes it: float32 products with its
// coefficients, + 0.5, floor, clipped to 0..255. ybr: [..., 3] values 0..255.
at::Tensor ybr_full_to_rgb(const at::Tensor& ybr) {
  const auto c = [](double v) { return static_cast<float>(v); };
  const at::Tensor m = torch::tensor({1.0f, 1.0f, 1.0f, 0.0f, c(-0.114 * 1.772 / 0.587), c(1.772), c(1.402),
                                      c(-0.299 * 1.402 / 0.587), 0.0f})
                           .view({3, 3});
  const at::Tensor centred = ybr.to(torch::kFloat32) - torch::tensor({0.0f, 128.0f, 128.0f});
  return (torch::matmul(centred, m) + 0.5f).floor_().clamp_(0.0f, 255.0f);
}

}  // namespace

bool looks_like_dicom(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[132];
  if (!in.read(buf, sizeof buf)) return false;
  return std::memcmp(buf + 128, "DICM", 4) == 0;
}

DicomInfo read_dicom_info(const std::string& path) {
  Loaded l;
  load(&l, path, /*header_only=*/true);
  return info_of(l, path);
}

DicomImage read_dicom(const std::string& path) {
  Loaded l;
  load(&l, path, /*header_only=*/false);
  DicomImage out;
  out.info = info_of(l, path);
  DicomInfo& info = out.info;
  DcmDataset* ds = l.ds;
  const DcmXfer x(l.xfer);
  DcmElement* pixel_el = nullptr;
  MEDVLP_CHECK(ds->findAndGetElement(DCM_PixelData, pixel_el).good() && pixel_el != nullptr, path,
               ": no pixel data (PixelData (7FE0,0010) is missing; not an image object?)");
  // A corrupt header must not turn into a huge allocation inside a decoder.
  {
    const double claimed = static_cast<double>(std::max<int64_t>(info.rows, 0)) * std::max<int64_t>(info.columns, 0) *
                           std::max<int64_t>(info.frames, 0) * std::max<int64_t>(info.samples_per_pixel, 0) *
                           std::max<int64_t>(info.bits_allocated, 0) / 8.0;
    MEDVLP_CHECK(claimed <= kMaxPixelBytes, path, ": header claims ", claimed / (1 << 20),
                 " MiB of pixel data, more than the 2 GiB medvlp reads from one file");
  }
  std::vector<uint8_t> jpeg2000;  // decoded JPEG 2000 frames, as stored words
  if (x.isEncapsulated() && detail::is_jpeg2000_syntax(info.transfer_syntax)) {
    jpeg2000 = decode_jpeg2000_frames(path, pixel_el, l.xfer, &info);
  } else if (x.isEncapsulated()) {
    MEDVLP_CHECK(has_decoder(l.xfer), path, ": transfer syntax ", info.transfer_syntax_name, " (",
                 info.transfer_syntax, ") is not supported: DCMTK's free toolkit has no decoder for it");
    try {
      const OFCondition st = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
      MEDVLP_CHECK(st.good() && ds->canWriteXfer(EXS_LittleEndianExplicit), path, ": cannot decode ",
                   info.transfer_syntax_name, " pixel data (", st.text(), ")");
    } catch (const std::bad_alloc&) {
      throw Error(path + ": cannot decode pixel data: out of memory (header claims " + std::to_string(info.rows) +
                  "x" + std::to_string(info.columns) + "x" + std::to_string(info.frames) + ")");
    }
    // Decoders may convert colour models (YBR -> RGB) and planar configuration.
    info.photometric = get_string(ds, DCM_PhotometricInterpretation);
    MEDVLP_CHECK(ds->findAndGetElement(DCM_PixelData, pixel_el).good() && pixel_el != nullptr, path,
                 ": pixel data vanished while decoding");
  }
  MEDVLP_CHECK(info.rows > 0 && info.columns > 0, path, ": Rows and Columns must be positive, got ", info.rows, "x",
               info.columns);
  MEDVLP_CHECK(info.frames > 0, path, ": NumberOfFrames must be positive, got ", info.frames);
  MEDVLP_CHECK(info.bits_allocated == 8 || info.bits_allocated == 16 || info.bits_allocated == 32, path,
               ": BitsAllocated ", info.bits_allocated, " is not supported (expected 8, 16 or 32)");
  MEDVLP_CHECK(info.bits_stored >= 1 && info.bits_stored <= info.bits_allocated, path, ": BitsStored ",
               info.bits_stored, " must be within 1..BitsAllocated (", info.bits_allocated, ")");
  const bool mono = info.photometric == "MONOCHROME1" || info.photometric == "MONOCHROME2";
  const bool palette = info.photometric == "PALETTE COLOR";
  const bool ybr = info.photometric == "YBR_FULL" || info.photometric == "YBR_FULL_422";
  MEDVLP_CHECK(((mono || palette) && info.samples_per_pixel == 1) ||
                   ((info.photometric == "RGB" || ybr) && info.samples_per_pixel == 3),
               path, ": photometric interpretation '", info.photometric, "' with ", info.samples_per_pixel,
               " samples per pixel is not supported (expected MONOCHROME1/2 or PALETTE COLOR with 1 sample, RGB, "
               "YBR_FULL or YBR_FULL_422 with 3)");
  MEDVLP_CHECK(!ybr || (info.bits_allocated == 8 && !info.is_signed), path, ": ", info.photometric, " with ",
               info.bits_allocated, "-bit ", info.is_signed ? "signed " : "", "samples is not supported (expected 8-bit unsigned)");
  if (info.photometric == "YBR_FULL_422" && !x.isEncapsulated()) {
    // Uncompressed 4:2:2 (a decoder would have turned JPEG's into RGB): each pair of pixels is stored
    // as Y1 Y2 Cb Cr, the chroma shared, as pydicom's numpy handler expands it.
    const int64_t pixels = info.frames * info.rows * info.columns;
    const int64_t stored = (pixels + 1) / 2 * 4;
    const int64_t length = static_cast<int64_t>(pixel_el->getLength());
    MEDVLP_CHECK(length >= stored, path, ": YBR_FULL_422 pixel data is truncated: ", length, " bytes, expected ", stored);
    Uint8* p = nullptr;
    MEDVLP_CHECK(pixel_el->getUint8Array(p).good() && p != nullptr, path, ": cannot read 8-bit pixel data");
    at::Tensor ybr_values = torch::empty({pixels, 3}, torch::kUInt8);
    auto y = ybr_values.accessor<uint8_t, 2>();
    for (int64_t i = 0; i < pixels; ++i) {
      const int64_t pair = (i / 2) * 4;
      y[i][0] = p[pair + (i % 2)];
      y[i][1] = p[pair + 2];
      y[i][2] = p[pair + 3];
    }
    out.pixels = ybr_full_to_rgb(ybr_values).view({info.frames, info.rows, info.columns, 3}).permute({0, 3, 1, 2}).contiguous();
    return out;
  }
  const int64_t bytes = info.bits_allocated / 8;
  const int64_t frame_values = info.rows * info.columns * info.samples_per_pixel;
  const int64_t expected = frame_values * info.frames * bytes;
  const int64_t length = jpeg2000.empty() ? static_cast<int64_t>(pixel_el->getLength()) : static_cast<int64_t>(jpeg2000.size());
  MEDVLP_CHECK(length >= expected, path, ": pixel data is truncated: ", length, " bytes, expected ", expected, " (",
               info.frames, " frame(s) of ", info.rows, "x", info.columns, "x", info.samples_per_pixel, " at ",
               info.bits_allocated, " bits)");

  // One pass from the stored words to float: keep the stored bits, sign-extend them when
  // PixelRepresentation says signed, and apply the rescale in double precision (as pydicom does)
  // before rounding to float. (A chain of tensor ops here cost ~100x more on a 2560x2048 CR.)
  // DCMTK swaps 16-bit words to host order on access; 32-bit values of big-endian files arrive
  // as two swapped words, which are recombined.
  const uint32_t mask = info.bits_stored == 32 ? 0xFFFFFFFFu : (uint32_t{1} << info.bits_stored) - 1;
  const uint32_t sign = uint32_t{1} << (info.bits_stored - 1);
  const bool lut = info.has_modality_lut_sequence && mono;
  const double slope = mono && !lut ? info.rescale_slope : 1.0, intercept = mono && !lut ? info.rescale_intercept : 0.0;
  const auto value_of = [&](uint32_t u) {
    const double v = info.is_signed && (u & sign) ? static_cast<double>(u) - static_cast<double>(mask) - 1.0
                                                  : static_cast<double>(u);
    return static_cast<float>(v * slope + intercept);
  };
  const int64_t n = expected / bytes;
  const auto planar = jpeg2000.empty() ? get_int(ds, DCM_PlanarConfiguration, 0) : 0;  // the decoder interleaves
  const bool interleaved = info.samples_per_pixel > 1 && planar != 1;
  const std::vector<int64_t> shape =
      interleaved ? std::vector<int64_t>{info.frames, info.rows, info.columns, info.samples_per_pixel}
                  : std::vector<int64_t>{info.frames, info.samples_per_pixel, info.rows, info.columns};
  // The stored bytes are copied into the back of the float buffer and widened there
  // (core::widen_in_place): one buffer per image instead of DCMTK's copy plus ours, and for
  // uncompressed files DCMTK never loads the pixel data into memory at all.
  at::Tensor values = core::empty_large(shape, at::kFloat);
  float* dst = values.data_ptr<float>();
  unsigned char* raw = reinterpret_cast<unsigned char*>(dst) + (4 - bytes) * n;
  if (!jpeg2000.empty()) {
    std::memcpy(raw, jpeg2000.data(), static_cast<size_t>(expected));
  } else if (!x.isEncapsulated() && !pixel_el->valueLoaded()) {
    // Words arrive in host order (16-bit swapping for big-endian files, as getUint16Array does).
    const OFCondition st =
        pixel_el->getPartialValue(raw, 0, static_cast<Uint32>(expected), nullptr, gLocalByteOrder);
    MEDVLP_CHECK(st.good(), path, ": cannot read pixel data (", st.text(), ")");
  } else if (bytes == 1) {
    Uint8* p = nullptr;
    MEDVLP_CHECK(pixel_el->getUint8Array(p).good() && p != nullptr, path, ": cannot read 8-bit pixel data");
    std::memmove(raw, p, static_cast<size_t>(expected));
  } else {
    Uint16* p = nullptr;
    MEDVLP_CHECK(pixel_el->getUint16Array(p).good() && p != nullptr, path, ": cannot read pixel data words");
    std::memmove(raw, p, static_cast<size_t>(expected));
  }
  // Integer slope and intercept (CR/DX: 1 and 0; CT: 1 and -1024) keep every result of up to 16
  // stored bits an integer below 2^24: int32 arithmetic then gives exactly the float of the
  // double formula, in a loop the compiler vectorizes. Sign extension without a branch:
  // (u ^ sign) - sign is u - 2^bits when the sign bit is set.
  const bool integral = bytes <= 2 && slope == std::floor(slope) && intercept == std::floor(intercept) &&
                        std::abs(slope) * 65536.0 + std::abs(intercept) < 16777216.0;
  const auto islope = integral ? static_cast<int32_t>(slope) : 0, iintercept = integral ? static_cast<int32_t>(intercept) : 0;
  const auto isign = static_cast<int32_t>(info.is_signed ? sign : 0), imask = static_cast<int32_t>(mask & 0xFFFF);
  const auto integer_value = [=](int32_t w) {
    return static_cast<float>((((w & imask) ^ isign) - isign) * islope + iintercept);
  };
  if (integral && bytes == 1) {
    core::widen_in_place<uint8_t>(raw, dst, n, [&](uint8_t w) { return integer_value(w); });
  } else if (integral) {
    core::widen_in_place<uint16_t>(raw, dst, n, [&](uint16_t w) { return integer_value(w); });
  } else if (bytes <= 2) {
    // Every stored value (at most 16 bits) maps through one table computed with the same
    // double-precision formula: the same floats, without per-pixel double arithmetic.
    std::vector<float> table(static_cast<size_t>(mask) + 1);
    for (uint32_t u = 0; u <= mask; ++u) table[u] = value_of(u);
    if (bytes == 1)
      core::widen_in_place<uint8_t>(raw, dst, n, [&](uint8_t w) { return table[w & mask]; });
    else
      core::widen_in_place<uint16_t>(raw, dst, n, [&](uint16_t w) { return table[w & mask]; });
  } else {
    // 32-bit values of big-endian files arrive as two swapped 16-bit words, which are recombined.
    const bool big = x.getByteOrder() == EBO_BigEndian;
    const int lo = big ? 1 : 0, hi = big ? 0 : 1;
    core::widen_in_place<std::array<uint16_t, 2>>(raw, dst, n, [&](const std::array<uint16_t, 2>& w) {
      return value_of((static_cast<uint32_t>(w[hi]) << 16 | w[lo]) & mask);
    });
  }
  if (interleaved) values = values.permute({0, 3, 1, 2});
  if (lut) {
    at::Tensor v64 = values.to(torch::kFloat64);
    apply_lut_sequence(ds, path, v64);
    values = v64.to(torch::kFloat32);
  }
  if (palette) values = apply_palette(ds, path, values, info.is_signed);
  if (ybr) values = ybr_full_to_rgb(values.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  out.pixels = values.contiguous();
  return out;
}

at::Tensor to_display(const DicomImage& image, const VoiOptions& options, int64_t frame) {
  const DicomInfo& info = image.info;
  MEDVLP_CHECK(frame >= 0 && frame < image.pixels.size(0), info.path, ": frame ", frame, " out of range (",
               image.pixels.size(0), " frames)");
  at::Tensor x = image.pixels[frame].to(torch::kFloat64);
  double c = 0, w = 0;
  bool windowed = false;
  if (options.center && options.width) {
    c = *options.center;
    w = *options.width;
    windowed = true;
  } else if (!info.window_center.empty() && !info.window_width.empty() && info.window_width[0] > 0) {
    c = info.window_center[0];
    w = info.window_width[0];
    windowed = true;
  }
  at::Tensor y;
  if (!windowed) {
    const double lo = x.min().item<double>(), hi = x.max().item<double>();
    y = hi > lo ? (x - lo) / (hi - lo) : torch::zeros_like(x);
  } else if (info.voi_lut_function == "SIGMOID") {
    MEDVLP_CHECK(w > 0, info.path, ": window width must be positive, got ", w);
    y = torch::sigmoid(4.0 * (x - c) / w);
  } else if (info.voi_lut_function == "LINEAR_EXACT") {
    MEDVLP_CHECK(w > 0, info.path, ": window width must be positive, got ", w);
    y = ((x - c) / w + 0.5).clamp(0.0, 1.0);
  } else {
    MEDVLP_CHECK(w >= 1, info.path, ": window width must be at least 1 for a LINEAR VOI function, got ", w);
    y = w > 1 ? ((x - (c - 0.5)) / (w - 1) + 0.5).clamp(0.0, 1.0) : x.gt(c - 0.5).to(torch::kFloat64);
  }
  if (options.invert_monochrome1 && info.photometric == "MONOCHROME1") y = 1.0 - y;
  return y.to(torch::kFloat32).contiguous();
}

namespace {

// Decimal strings (DS) hold at most 16 characters.
std::string ds_string(std::initializer_list<double> values) {
  std::string out;
  for (double v : values) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.8g", v);
    if (!out.empty()) out += "\\";
    out += buf;
  }
  return out;
}

std::string new_uid() {
  char uid[100];
  dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
  return uid;
}

}  // namespace

void write_dicom(const std::string& path, const DicomWriteSpec& spec) {
  init_dcmtk();
  MEDVLP_CHECK(spec.values.defined() && spec.values.dim() == 2, path, ": write_dicom expects [H,W] values");
  MEDVLP_CHECK(spec.rescale_slope != 0, path, ": rescale slope must not be 0");
  const at::Tensor stored = ((spec.values.to(torch::kCPU, torch::kFloat64) - spec.rescale_intercept) / spec.rescale_slope)
                                .round()
                                .clamp(-32768, 32767)
                                .to(torch::kInt16)
                                .contiguous();
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  auto put = [&](const DcmTagKey& tag, const std::string& value) {
    MEDVLP_CHECK(ds->putAndInsertString(tag, value.c_str()).good(), path, ": cannot set DICOM tag ",
                 DcmTag(tag).getTagName(), " to '", value, "'");
  };
  put(DCM_SOPClassUID, spec.modality == "CT" ? UID_CTImageStorage : UID_SecondaryCaptureImageStorage);
  put(DCM_SOPInstanceUID, spec.sop_uid.empty() ? new_uid() : spec.sop_uid);
  put(DCM_StudyInstanceUID, spec.study_uid.empty() ? new_uid() : spec.study_uid);
  put(DCM_SeriesInstanceUID, spec.series_uid.empty() ? new_uid() : spec.series_uid);
  put(DCM_Modality, spec.modality);
  put(DCM_PatientID, spec.patient_id);
  put(DCM_InstanceNumber, std::to_string(spec.instance_number));
  put(DCM_PhotometricInterpretation, "MONOCHROME2");
  put(DCM_PixelSpacing, ds_string({spec.pixel_spacing[0], spec.pixel_spacing[1]}));
  put(DCM_RescaleSlope, ds_string({spec.rescale_slope}));
  put(DCM_RescaleIntercept, ds_string({spec.rescale_intercept}));
  const auto& o = spec.image_orientation;
  put(DCM_ImageOrientationPatient, ds_string({o[0], o[1], o[2], o[3], o[4], o[5]}));
  if (spec.image_position) {
    const auto& p = *spec.image_position;
    put(DCM_ImagePositionPatient, ds_string({p[0], p[1], p[2]}));
  }
  if (spec.slice_thickness) put(DCM_SliceThickness, ds_string({*spec.slice_thickness}));
  if (spec.window_center && spec.window_width) {
    put(DCM_WindowCenter, ds_string({*spec.window_center}));
    put(DCM_WindowWidth, ds_string({*spec.window_width}));
  }
  const auto rows = static_cast<Uint16>(stored.size(0)), cols = static_cast<Uint16>(stored.size(1));
  MEDVLP_CHECK(stored.size(0) <= 65535 && stored.size(1) <= 65535, path, ": image too large for DICOM");
  ds->putAndInsertUint16(DCM_Rows, rows);
  ds->putAndInsertUint16(DCM_Columns, cols);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 1);
  MEDVLP_CHECK(ds->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16*>(stored.data_ptr<int16_t>()),
                                           static_cast<unsigned long>(stored.numel()))
                   .good(),
               path, ": cannot store pixel data");
  const std::string tmp = path + ".partial";
  const OFCondition st = file.saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
  MEDVLP_CHECK(st.good(), path, ": cannot write DICOM file (", st.text(), ")");
  MEDVLP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp, " into place");
}

}  // namespace medvlp::io
