#include "medvlp/io/dicom.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "../testing_util.h"
#include "medvlp/io/ct_series.h"
#include "medvlp/io/files.h"

using namespace medvlp::io;
using medvlp::testing_util::TempDir;

namespace {

at::Tensor ramp(int64_t h, int64_t w, double lo, double hi) {
  return torch::linspace(lo, hi, h * w, torch::kFloat64).view({h, w});
}

// A synthetic axial CT series: slice k holds value 100*k + a ramp, at z = z0 + k*dz.
std::vector<std::string> write_series(const std::string& dir, int64_t n, double dz, const std::string& series_uid,
                                      const std::vector<int64_t>& skip = {}) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> paths;
  for (int64_t k = 0; k < n; ++k) {
    if (std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
    DicomWriteSpec s;
    s.values = ramp(6, 5, -1000, 200) + 100.0 * k;
    s.rescale_intercept = -1024;
    s.series_uid = series_uid;
    s.study_uid = "1.2.3.4";
    s.pixel_spacing = {0.7, 0.8};
    s.image_position = std::array<double, 3>{-100.0, -120.0, 50.0 + dz * k};
    // Instance numbers run backwards and file names are shuffled: order must come from positions.
    s.instance_number = n - k;
    const std::string path = dir + "/slice_" + std::to_string((k * 7) % n) + "_" + std::to_string(k) + ".dcm";
    write_dicom(path, s);
    paths.push_back(path);
  }
  return paths;
}

// Rewrites an explicit-VR little-endian Part 10 file's dataset with implicit VR (tag, 32-bit
// length, value), keeping its meta header, which still names explicit VR: what some archives
// hold. Written here from the standard's encoding rules (PS3.5 7.1.2/7.1.3), not by medvlp.
std::string implicit_dataset_under_explicit_meta(const std::string& bytes) {
  const auto u16 = [&](size_t at) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) |
                                           static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 8; };
  const auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
  const auto long_form = [](const std::string& vr) {
    return vr == "OB" || vr == "OW" || vr == "OF" || vr == "SQ" || vr == "UT" || vr == "UN";
  };
  std::string out = bytes.substr(0, 132);
  bool meta = true;
  for (size_t at = 132; at < bytes.size();) {
    const std::string vr = bytes.substr(at + 4, 2);
    const bool wide = long_form(vr);
    const uint32_t length = wide ? u32(at + 8) : u16(at + 6);
    const size_t header = wide ? 12 : 8;
    if (u16(at) != 0x0002) meta = false;
    if (meta) {
      out += bytes.substr(at, header + length);
    } else {
      out += bytes.substr(at, 4);
      for (int b = 0; b < 4; ++b) out += static_cast<char>((length >> (8 * b)) & 0xFF);
      out += bytes.substr(at + header, length);
    }
    at += header + length;
  }
  return out;
}

}  // namespace

TEST(Dicom, WritesAndReadsBackModalityValuesAndMetadata) {
  TempDir dir;
  DicomWriteSpec s;
  s.values = ramp(8, 9, -1024, 3071);
  s.values[2][3] = 40.0;
  s.rescale_slope = 1.0;
  s.rescale_intercept = -1024;
  s.modality = "CT";
  s.patient_id = "P7";
  s.pixel_spacing = {0.5, 0.6};
  s.image_position = std::array<double, 3>{1.5, -2.25, 30.0};
  s.window_center = 40;
  s.window_width = 400;
  write_dicom(dir.path() + "/a.dcm", s);
  EXPECT_TRUE(looks_like_dicom(dir.path() + "/a.dcm"));
  const DicomImage img = read_dicom(dir.path() + "/a.dcm");
  EXPECT_EQ(img.pixels.sizes(), (std::vector<int64_t>{1, 1, 8, 9}));
  EXPECT_TRUE(torch::allclose(img.pixels[0][0].to(torch::kFloat64), s.values.round(), 0, 1e-3));
  EXPECT_EQ(img.info.modality, "CT");
  EXPECT_EQ(img.info.patient_id, "P7");
  EXPECT_EQ(img.info.photometric, "MONOCHROME2");
  EXPECT_EQ(img.info.transfer_syntax, "1.2.840.10008.1.2.1");
  EXPECT_TRUE(img.info.is_signed);
  EXPECT_DOUBLE_EQ(img.info.rescale_intercept, -1024);
  ASSERT_TRUE(img.info.pixel_spacing.has_value());
  EXPECT_DOUBLE_EQ((*img.info.pixel_spacing)[1], 0.6);
  EXPECT_DOUBLE_EQ((*img.info.image_position)[1], -2.25);
  // Header-only reading agrees and does not need the pixels.
  const DicomInfo info = read_dicom_info(dir.path() + "/a.dcm");
  EXPECT_EQ(info.rows, 8);
  EXPECT_EQ(info.columns, 9);
  ASSERT_EQ(info.window_center.size(), 1u);
  EXPECT_DOUBLE_EQ(info.window_width[0], 400);
}

TEST(Dicom, VoiWindowFollowsTheStandardFormulas) {
  DicomImage img;
  img.info.path = "x.dcm";
  img.info.photometric = "MONOCHROME2";
  img.info.window_center = {40};
  img.info.window_width = {400};
  img.pixels = torch::tensor({-1000.0, -160.5, -159.5, 40.0, 239.5, 240.0, 3000.0}).view({1, 1, 1, 7});
  // LINEAR (PS3.3 C.11.2.1.2.1): x <= c-0.5-(w-1)/2 -> 0; x > c-0.5+(w-1)/2 -> 1.
  at::Tensor y = to_display(img).flatten().to(torch::kFloat64);
  const double c = 40, w = 400;
  for (int64_t i = 0; i < 7; ++i) {
    const double x = img.pixels.flatten()[i].item<double>();
    double want = (x - (c - 0.5)) / (w - 1) + 0.5;
    want = x <= c - 0.5 - (w - 1) / 2 ? 0.0 : x > c - 0.5 + (w - 1) / 2 ? 1.0 : want;
    EXPECT_NEAR(y[i].item<double>(), want, 1e-6) << x;
  }
  // A configured window wins over the file's; MONOCHROME1 is inverted.
  img.info.photometric = "MONOCHROME1";
  VoiOptions o;
  o.center = 0;
  o.width = 2001;
  y = to_display(img, o).flatten();
  EXPECT_NEAR(y[0].item<double>(), 1.0 - (-1000 + 0.5) / 2000.0 - 0.5, 1e-6);
  EXPECT_NEAR(y[6].item<double>(), 0.0, 1e-6);
  img.info.voi_lut_function = "SIGMOID";
  img.info.photometric = "MONOCHROME2";
  y = to_display(img).flatten();
  EXPECT_NEAR(y[3].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(y[4].item<double>(), 1.0 / (1.0 + std::exp(-4.0 * (239.5 - 40) / 400)), 1e-6);
  // No window at all: the image's own range.
  img.info.window_center.clear();
  img.info.voi_lut_function = "LINEAR";
  y = to_display(img).flatten();
  EXPECT_NEAR(y[0].item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(y[6].item<double>(), 1.0, 1e-6);
}

TEST(Dicom, BadFilesGiveOneLineErrorsNamingTheFile) {
  TempDir dir;
  const std::string d = dir.path();
  EXPECT_ERROR_CONTAINS(read_dicom(d + "/missing.dcm"), "missing.dcm: cannot open DICOM file");
  write_file_atomic(d + "/text.dcm", "this is a report, not an image\n");
  EXPECT_ERROR_CONTAINS(read_dicom(d + "/text.dcm"), "text.dcm: ");
  // A valid file cut inside its pixel data.
  DicomWriteSpec s;
  s.values = ramp(64, 64, 0, 1000);
  write_dicom(d + "/full.dcm", s);
  const std::string bytes = read_file(d + "/full.dcm");
  write_file_atomic(d + "/cut.dcm", bytes.substr(0, bytes.size() - 3000));
  try {
    read_dicom(d + "/cut.dcm");
    ADD_FAILURE() << "truncated file was accepted";
  } catch (const medvlp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cut.dcm"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  // Only the preamble.
  write_file_atomic(d + "/preamble.dcm", std::string(128, '\0') + "DICM");
  EXPECT_ERROR_CONTAINS(read_dicom(d + "/preamble.dcm"), "preamble.dcm: ");
}

TEST(Dicom, Jpeg2000DecodesAndASyntaxWithoutDecoderIsNamed) {
  // pydicom's JPEG 2000 file (its values are compared with pydicom's in tests/python/image_io_check.py).
  const std::string j2k = "/usr/lib/python3/dist-packages/pydicom/data/test_files/JPEG2000.dcm";
  if (!std::filesystem::exists(j2k)) MEDVLP_REFERENCE_MISSING("pydicom's test files are not installed (Debian: python3-pydicom)");
  const DicomImage image = read_dicom(j2k);
  EXPECT_EQ(image.pixels.sizes(), (std::vector<int64_t>{1, 1, 1024, 256}));
  EXPECT_EQ(image.info.transfer_syntax, "1.2.840.10008.1.2.4.91");
  // The same file relabelled JPEG 2000 Part 2 (multi-component), which nothing here decodes.
  TempDir dir;
  std::string bytes = read_file(j2k);
  const size_t at = bytes.find("1.2.840.10008.1.2.4.91");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 21] = '2';
  write_file_atomic(dir.path() + "/part2.dcm", bytes);
  EXPECT_ERROR_CONTAINS(read_dicom(dir.path() + "/part2.dcm"), "part2.dcm: transfer syntax ");
  EXPECT_ERROR_CONTAINS(read_dicom(dir.path() + "/part2.dcm"),
                        "(1.2.840.10008.1.2.4.92) is not supported: DCMTK's free toolkit has no decoder for it");
  // The header still reads.
  EXPECT_GT(read_dicom_info(dir.path() + "/part2.dcm").rows, 0);
}

TEST(Dicom, ReadsAnImplicitVrDatasetUnderAnExplicitVrMetaHeaderAsPydicomDoes) {
  TempDir dir;
  DicomWriteSpec s;
  s.values = ramp(7, 6, -1000, 500);
  s.rescale_intercept = -1024;
  s.modality = "CT";
  s.patient_id = "P9";
  write_dicom(dir.path() + "/explicit.dcm", s);
  const std::string path = dir.path() + "/implicit.dcm";
  write_file_atomic(path, implicit_dataset_under_explicit_meta(read_file(dir.path() + "/explicit.dcm")));
  const DicomImage want = read_dicom(dir.path() + "/explicit.dcm");
  const DicomImage got = read_dicom(path);
  EXPECT_TRUE(torch::equal(got.pixels, want.pixels));
  EXPECT_EQ(got.info.modality, "CT");
  EXPECT_EQ(got.info.patient_id, "P9");
  EXPECT_DOUBLE_EQ(got.info.rescale_intercept, -1024);
  EXPECT_EQ(got.info.transfer_syntax, "1.2.840.10008.1.2.1");  // the meta header's, as pydicom reports it
  EXPECT_TRUE(got.info.implicit_vr_under_explicit_meta);
  EXPECT_FALSE(want.info.implicit_vr_under_explicit_meta);
  EXPECT_TRUE(read_dicom_info(path).implicit_vr_under_explicit_meta);
  EXPECT_EQ(read_dicom_info(path).rows, 7);
}

TEST(CtSeries, OrdersSlicesByPositionAndBuildsTheAffine) {
  TempDir dir;
  write_series(dir.path() + "/s", 6, 2.5, "1.2.3.4.5");
  write_file_atomic(dir.path() + "/s/notes.txt", "not a DICOM file, skipped\n");
  const Volume v = read_ct_series(dir.path() + "/s");
  ASSERT_EQ(v.data.sizes(), (std::vector<int64_t>{6, 6, 5}));
  for (int64_t k = 0; k < 6; ++k)
    EXPECT_NEAR(v.data[k][0][0].item<double>(), -1000.0 + 100.0 * k, 1e-3) << "slice " << k;
  EXPECT_NEAR(v.spacing[0], 2.5, 1e-9);
  EXPECT_NEAR(v.spacing[1], 0.7, 1e-9);
  EXPECT_NEAR(v.spacing[2], 0.8, 1e-9);
  // LPS (x = -100, y = -120) becomes RAS (100, 120); columns step along x, rows along y.
  EXPECT_NEAR(v.affine[0][3], 100.0, 1e-9);
  EXPECT_NEAR(v.affine[1][3], 120.0, 1e-9);
  EXPECT_NEAR(v.affine[2][3], 50.0, 1e-9);
  EXPECT_NEAR(v.affine[0][0], -0.8, 1e-9);
  EXPECT_NEAR(v.affine[1][1], -0.7, 1e-9);
  EXPECT_NEAR(v.affine[2][2], 2.5, 1e-9);
  EXPECT_EQ(axis_codes(v.affine), "LPS");
  const Volume ras = reorient_to_ras(v);
  EXPECT_EQ(axis_codes(ras.affine), "RAS");
  // Same voxel, same world position: the corner voxel (0,0,0) moved to (W-1, H-1, 0).
  EXPECT_NEAR(ras.data[0][5][4].item<double>(), v.data[0][0][0].item<double>(), 1e-6);
  EXPECT_NEAR(ras.affine[0][3] + ras.affine[0][0] * 4, v.affine[0][3], 1e-9);
}

TEST(CtSeries, ReportsMixedSeriesMissingSlicesAndDuplicates) {
  TempDir dir;
  write_series(dir.path() + "/mixed", 4, 2.0, "1.2.3.100");
  write_series(dir.path() + "/mixed", 3, 2.0, "1.2.3.200");
  EXPECT_ERROR_CONTAINS(read_ct_series(dir.path() + "/mixed"), "mixed series: 2 series in one folder");
  SeriesOptions pick;
  pick.series_uid = "1.2.3.200";
  EXPECT_EQ(read_ct_series(dir.path() + "/mixed", pick).data.size(0), 3);

  write_series(dir.path() + "/gap", 8, 2.0, "1.2.3.300", {4});
  EXPECT_ERROR_CONTAINS(read_ct_series(dir.path() + "/gap"), "missing slice(s) between positions 56 and 60 mm");
  SeriesOptions lax;
  lax.allow_irregular = true;
  EXPECT_EQ(read_ct_series(dir.path() + "/gap", lax).data.size(0), 7);

  write_series(dir.path() + "/dup", 3, 2.0, "1.2.3.400");
  std::filesystem::copy_file(dir.path() + "/dup/slice_0_0.dcm", dir.path() + "/dup/copy.dcm");
  EXPECT_ERROR_CONTAINS(read_ct_series(dir.path() + "/dup"), "duplicate slice position");
  std::filesystem::create_directories(dir.path() + "/empty");
  EXPECT_ERROR_CONTAINS(read_ct_series(dir.path() + "/empty"), "empty: no DICOM image slices found");
}
