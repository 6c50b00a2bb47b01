#include "medvlp/io/nifti.h"

#include <gtest/gtest.h>

#include <zlib.h>

#include <cstring>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/io/files.h"

using namespace medvlp::io;
using medvlp::testing_util::TempDir;

namespace {
Volume oblique_volume() {
  Volume v;
  v.data = torch::arange(4 * 5 * 6, torch::kFloat32).view({4, 5, 6}) - 100.0f;
  // An LPI-like, slightly rotated affine.
  v.affine = {{{-0.9, 0.05, 0.0, 10.0}, {0.04, -0.8, 0.1, 20.0}, {0.0, 0.08, -2.0, -30.0}, {0, 0, 0, 1}}};
  return v;
}
}  // namespace

TEST(Nifti, RoundTripsDataAndAffineInBothContainers) {
  TempDir dir;
  const Volume v = oblique_volume();
  for (const std::string name : {"/v.nii", "/v.nii.gz"}) {
    write_nifti(dir.path() + name, v);
    const Volume back = read_nifti(dir.path() + name);
    EXPECT_TRUE(torch::equal(back.data, v.data)) << name;
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) EXPECT_NEAR(back.affine[r][c], v.affine[r][c], 1e-5) << name << r << c;
    EXPECT_NEAR(back.spacing[0], std::sqrt(0.01 + 4.0), 1e-5);
  }
  write_nifti(dir.path() + "/hu.nii.gz", v, "int16");
  EXPECT_TRUE(torch::equal(read_nifti(dir.path() + "/hu.nii.gz").data, v.data));
  EXPECT_ERROR_CONTAINS(write_nifti(dir.path() + "/v.img", v), "v.img: NIfTI file name must end in .nii or .nii.gz");
}

TEST(Nifti, ReorientationKeepsEveryVoxelsWorldPosition) {
  const Volume v = oblique_volume();
  EXPECT_EQ(axis_codes(v.affine), "LPI");
  const Volume ras = reorient_to_ras(v);
  EXPECT_EQ(axis_codes(ras.affine), "RAS");
  ASSERT_EQ(ras.data.sizes(), v.data.sizes());
  // Voxel (i,j,k) of the original lies at world A*(i,j,k,1); the RAS copy holds the same value at
  // the index whose world position is the same.
  auto world = [](const Affine& a, double i, double j, double k) {
    return std::array<double, 3>{a[0][0] * i + a[0][1] * j + a[0][2] * k + a[0][3],
                                 a[1][0] * i + a[1][1] * j + a[1][2] * k + a[1][3],
                                 a[2][0] * i + a[2][1] * j + a[2][2] * k + a[2][3]};
  };
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t i = 0; i < 6; ++i) {
        const int64_t ni = 5 - i, nj = 4 - j, nk = 3 - k;  // every axis flipped, none permuted
        EXPECT_EQ(ras.data[nk][nj][ni].item<float>(), v.data[k][j][i].item<float>());
        const auto a = world(v.affine, i, j, k), b = world(ras.affine, ni, nj, nk);
        for (int r = 0; r < 3; ++r) EXPECT_NEAR(a[r], b[r], 1e-9);
      }
  // A permuted layout (voxel axes point P, I, R) comes back as RAS with the axes swapped.
  Volume p;
  p.data = torch::rand({2, 3, 4});
  p.affine = {{{0, 0, 1.5, 0}, {-1, 0, 0, 0}, {0, -2, 0, 0}, {0, 0, 0, 1}}};
  EXPECT_EQ(axis_codes(p.affine), "PIR");
  const Volume pr = reorient_to_ras(p);
  EXPECT_EQ(axis_codes(pr.affine), "RAS");
  EXPECT_EQ(pr.data.sizes(), (std::vector<int64_t>{3, 4, 2}));
  EXPECT_NEAR(pr.spacing[0], 2.0, 1e-12);
  EXPECT_NEAR(pr.spacing[2], 1.5, 1e-12);
}

TEST(Nifti, BadFilesGiveErrorsNamingTheFile) {
  TempDir dir;
  const std::string d = dir.path();
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/none.nii.gz"), "none.nii.gz: cannot open NIfTI file");
  write_nifti(d + "/v.nii", oblique_volume());
  const std::string bytes = read_file(d + "/v.nii");
  write_file_atomic(d + "/cut.nii", bytes.substr(0, bytes.size() - 17));
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/cut.nii"), "cut.nii: NIfTI file is truncated");
  write_file_atomic(d + "/header.nii", bytes.substr(0, 200));
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/header.nii"), "header.nii: not a readable NIfTI file");
  write_nifti(d + "/v.nii.gz", oblique_volume());
  const std::string gz = read_file(d + "/v.nii.gz");
  write_file_atomic(d + "/cut.nii.gz", gz.substr(0, gz.size() / 2));
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/cut.nii.gz"), "cut.nii.gz: not a readable NIfTI file");
  // Cut inside the voxel data, with either reader (the last bytes are then no gzip trailer).
  Volume noise;
  noise.data = torch::rand({16, 64, 64}) * 1000;
  noise.affine = diagonal_affine({1.0, 1.0, 1.0});
  write_nifti(d + "/noise.nii.gz", noise);
  const std::string ngz = read_file(d + "/noise.nii.gz");
  write_file_atomic(d + "/cut_data.nii.gz", ngz.substr(0, ngz.size() * 2 / 3));
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/cut_data.nii.gz"),
                        "cut_data.nii.gz: cannot read NIfTI voxel data (truncated or corrupt gzip stream)");
  // A one-member file whose compressed voxels are damaged but whose trailer is intact.
  std::string bad = ngz;
  for (size_t i = bad.size() / 2; i < bad.size() / 2 + 64; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5A);
  write_file_atomic(d + "/flipped.nii.gz", bad);
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/flipped.nii.gz"),
                        "flipped.nii.gz: cannot read NIfTI voxel data (truncated or corrupt gzip stream)");
  // A NIfTI-2 header with a negative dim[0] (found by nifti_fuzz: it smashed nifticlib's stack).
  std::string n2(540, '\0');
  const int32_t hdr = 540;
  const int64_t dim0 = -765;
  std::memcpy(&n2[0], &hdr, 4);
  std::memcpy(&n2[4], "n+2\0\r\n\032\n", 8);
  std::memcpy(&n2[16], &dim0, 8);
  write_file_atomic(d + "/neg.nii", n2 + std::string(64, '\0'));
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/neg.nii"), "neg.nii: not a readable NIfTI file (dim[0] is -765, expected 1..7)");
  // An ANALYZE-style header (no NIfTI magic) whose vox_offset is a huge float: nifticlib turns it
  // into a negative int offset (found by nifti_fuzz; it became a write before the buffer).
  std::string moved = bytes;
  const float vox_offset = 7.4e28f;
  std::memcpy(&moved[108], &vox_offset, 4);
  std::memset(&moved[344], 0, 4);
  gzFile f = gzopen((d + "/offset.nii.gz").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, moved.data(), static_cast<unsigned>(moved.size()));
  gzclose(f);
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/offset.nii.gz"),
                        "offset.nii.gz: NIfTI vox_offset gives data offset -2147483648, expected a non-negative byte offset");
  write_file_atomic(d + "/junk.nii.gz", "not gzip at all, just text");
  EXPECT_ERROR_CONTAINS(read_nifti(d + "/junk.nii.gz"), "junk.nii.gz: ");
}

TEST(Nifti, LargeVolumesAndMultiMemberGzipReadLikeSmallOnes) {
  // 64x128x128 floats: past the size where read_nifti inflates into a huge-page buffer.
  TempDir dir;
  const std::string d = dir.path();
  Volume v;
  v.data = torch::randint(-1024, 3000, {64, 128, 128}).to(torch::kFloat32);
  v.affine = diagonal_affine({2.0, 0.7, 0.7});
  v.affine[0][0] = -0.7;  // LPS-like: x and y flipped
  v.affine[1][1] = -0.7;
  write_nifti(d + "/big.nii.gz", v, "int16");
  write_nifti(d + "/big.nii", v, "int16");
  for (const std::string name : {"/big.nii.gz", "/big.nii"}) {
    Volume back = read_nifti(d + name);
    EXPECT_TRUE(torch::equal(back.data, v.data)) << name;
    // The volume is the sole owner of its buffer, so reorientation flips it where it lies.
    const void* before = back.data.data_ptr();
    const Volume ras = reorient_to_ras(std::move(back));
    EXPECT_EQ(ras.data.data_ptr(), before) << name;
    EXPECT_TRUE(torch::equal(ras.data, v.data.flip({1, 2}))) << name;
  }
  // bgzip and `cat a.gz b.gz` produce several gzip members; the trailer then sizes only the last.
  const std::string plain = read_file(d + "/big.nii");
  for (size_t part = 0; part < 3; ++part) {
    gzFile f = gzopen((d + "/members.nii.gz").c_str(), part == 0 ? "wb" : "ab");
    ASSERT_NE(f, nullptr);
    const size_t begin = plain.size() * part / 3, end = plain.size() * (part + 1) / 3;
    ASSERT_EQ(gzwrite(f, plain.data() + begin, static_cast<unsigned>(end - begin)), static_cast<int>(end - begin));
    gzclose(f);
  }
  EXPECT_TRUE(torch::equal(read_nifti(d + "/members.nii.gz").data, v.data));
}
