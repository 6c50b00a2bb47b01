#include "medvlp/io/volume.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <ATen/Parallel.h>
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

namespace {

// The RAS affine for a volume whose voxels were flipped and permuted by orientation `o`.
// `dhw` is the original shape.
Volume with_ras_affine(const Affine& affine, at::IntArrayRef dhw, const Orientation& o, at::Tensor data) {
  // Voxel axis a (0=i/W, 1=j/H, 2=k/D) lives in tensor dim 2-a.
  const int64_t n[3] = {dhw[2], dhw[1], dhw[0]};
  // old_index = T * new_index: old_a = n_a - 1 - new_{world[a]} when flipped, else new_{world[a]}.
  Affine t{};
  t[3][3] = 1.0;
  for (int a = 0; a < 3; ++a) {
    t[a][o.world[a]] = o.sign[a];
    if (o.sign[a] < 0) t[a][3] = static_cast<double>(n[a] - 1);
  }
  Volume out;
  out.data = std::move(data);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      double sum = 0;
      for (int k = 0; k < 4; ++k) sum += affine[r][k] * t[k][c];
      out.affine[r][c] = sum;
    }
  out.spacing = affine_spacing(out.affine);
  return out;
}

std::vector<int64_t> ras_permutation(const Orientation& o) {
  // New voxel axis o.world[a] is old axis a: new tensor dim (2 - world[a]) takes old dim (2 - a).
  std::vector<int64_t> perm(3);
  for (int a = 0; a < 3; ++a) perm[2 - o.world[a]] = 2 - a;
  return perm;
}

std::vector<int64_t> flip_dims(const Orientation& o) {
  std::vector<int64_t> dims;
  for (int a = 0; a < 3; ++a)
    if (o.sign[a] < 0) dims.push_back(2 - a);
  return dims;
}

// Reverses a contiguous float [D,H,W] tensor along `dims` by swapping in place: no second volume.
void flip_in_place(at::Tensor& data, const std::vector<int64_t>& dims) {
  const int64_t d = data.size(0), h = data.size(1), w = data.size(2);
  float* p = data.data_ptr<float>();
  for (int64_t dim : dims) {
    if (dim == 2) {
      at::parallel_for(0, d * h, 256, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) std::reverse(p + r * w, p + (r + 1) * w);
      });
    } else if (dim == 1) {
      at::parallel_for(0, d, 1, [&](int64_t b, int64_t e) {
        for (int64_t z = b; z < e; ++z)
          for (int64_t y = 0; y < h / 2; ++y)
            std::swap_ranges(p + (z * h + y) * w, p + (z * h + y + 1) * w, p + (z * h + h - 1 - y) * w);
      });
    } else {
      for (int64_t z = 0; z < d / 2; ++z) std::swap_ranges(p + z * h * w, p + (z + 1) * h * w, p + (d - 1 - z) * h * w);
    }
  }
}

}  // namespace

Volume reorient_to_ras(const Volume& volume) {
  const Orientation o = io_orientation(volume.affine);
  at::Tensor data = volume.data;
  const auto dims = flip_dims(o);
  if (!dims.empty()) data = data.flip(dims);
  return with_ras_affine(volume.affine, volume.data.sizes(), o, data.permute(ras_permutation(o)).contiguous());
}

Volume reorient_to_ras(Volume&& volume) {
  const bool sole_owner = volume.data.defined() && volume.data.dim() == 3 &&
                          volume.data.scalar_type() == at::kFloat && volume.data.is_contiguous() &&
                          volume.data.use_count() == 1 && volume.data.storage().use_count() == 1;
  if (!sole_owner) return reorient_to_ras(static_cast<const Volume&>(volume));
  const Orientation o = io_orientation(volume.affine);
  const std::vector<int64_t> dhw(volume.data.sizes().begin(), volume.data.sizes().end());
  at::Tensor data = std::move(volume.data);
  flip_in_place(data, flip_dims(o));
  const auto perm = ras_permutation(o);
  if (perm != std::vector<int64_t>{0, 1, 2}) data = data.permute(perm).contiguous();
  return with_ras_affine(volume.affine, dhw, o, std::move(data));
}

}  // namespace medvlp::io
