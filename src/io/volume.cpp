#include "medvlp/io/volume.h"

#include <cmath>
#include <string>

#include <torch/torch.h>

namespace medvlp::io {
namespace {

// nibabel's io_orientation: for each voxel axis, the world axis it points to and the sign, found
// greedily on the closest orthogonal matrix to the affine's normalized 3x3 part.
struct Orientation {
  std::array<int, 3> world{0, 1, 2};
  std::array<int, 3> sign{1, 1, 1};
};

Orientation io_orientation(const Affine& a) {
  at::Tensor rs = torch::empty({3, 3}, torch::kFloat64);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) rs[r][c] = a[r][c];
  at::Tensor norms = rs.pow(2).sum(0).sqrt();
  norms = torch::where(norms.eq(0), torch::ones_like(norms), norms);
  rs = rs / norms;
  at::Tensor u, s, v;
  std::tie(u, s, v) = torch::svd(rs);
  at::Tensor r = u.matmul(v.t());
  Orientation o;
  std::array<bool, 3> row_used{false, false, false}, col_used{false, false, false};
  auto acc = r.accessor<double, 2>();
  for (int step = 0; step < 3; ++step) {
    double best = -1;
    int br = 0, bc = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        if (!row_used[i] && !col_used[j] && std::abs(acc[i][j]) > best) {
          best = std::abs(acc[i][j]);
          br = i;
          bc = j;
        }
    row_used[br] = col_used[bc] = true;
    o.world[bc] = br;
    o.sign[bc] = acc[br][bc] < 0 ? -1 : 1;
  }
  return o;
}

}  // namespace

Affine diagonal_affine(const std::array<double, 3>& spacing_dhw) {
  Affine a{};
  a[0][0] = spacing_dhw[2];
  a[1][1] = spacing_dhw[1];
  a[2][2] = spacing_dhw[0];
  a[3][3] = 1.0;
  return a;
}

std::array<double, 3> affine_spacing(const Affine& a) {
  std::array<double, 3> out{};
  for (int c = 0; c < 3; ++c) out[2 - c] = std::sqrt(a[0][c] * a[0][c] + a[1][c] * a[1][c] + a[2][c] * a[2][c]);
  return out;
}

std::string axis_codes(const Affine& affine) {
  static const char* labels[3][2] = {{"L", "R"}, {"P", "A"}, {"I", "S"}};
  const Orientation o = io_orientation(affine);
  std::string out;
  for (int i = 0; i < 3; ++i) out += labels[o.world[i]][o.sign[i] > 0 ? 1 : 0];
  return out;
}

Volume reorient_to_ras(const Volume& volume) {
  const Orientation o = io_orientation(volume.affine);
  // Voxel axis a (0=i/W, 1=j/H, 2=k/D) lives in tensor dim 2-a.
  const int64_t n[3] = {volume.data.size(2), volume.data.size(1), volume.data.size(0)};
  at::Tensor data = volume.data;
  std::vector<int64_t> flip_dims;
  for (int a = 0; a < 3; ++a)
    if (o.sign[a] < 0) flip_dims.push_back(2 - a);
  if (!flip_dims.empty()) data = data.flip(flip_dims);
  // New voxel axis o.world[a] is old axis a: new tensor dim (2 - world[a]) takes old dim (2 - a).
  std::vector<int64_t> perm(3);
  for (int a = 0; a < 3; ++a) perm[2 - o.world[a]] = 2 - a;
  data = data.permute(perm).contiguous();
  // old_index = T * new_index: old_a = n_a - 1 - new_{world[a]} when flipped, else new_{world[a]}.
  Affine t{};
  t[3][3] = 1.0;
  for (int a = 0; a < 3; ++a) {
    t[a][o.world[a]] = o.sign[a];
    if (o.sign[a] < 0) t[a][3] = static_cast<double>(n[a] - 1);
  }
  Volume out;
  out.data = data;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      double sum = 0;
      for (int k = 0; k < 4; ++k) sum += volume.affine[r][k] * t[k][c];
      out.affine[r][c] = sum;
    }
  out.spacing = affine_spacing(out.affine);
  return out;
}

}  // namespace medvlp::io
