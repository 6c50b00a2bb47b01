#include "medvlp/data/synthetic_cxr.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/data/rng.h"

namespace medvlp::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

enum Finding { kConsolidation, kEffusion, kPneumothorax, kNodule, kCardiomegaly, kAtelectasis, kEdema, kFracture };
enum Anatomy { kRUL, kRLL, kLUL, kLLL, kHeart, kMediastinum, kPleura, kBones, kNumAnatomies };
constexpr int kNumFindings = 8;

// Canonical frame: x in [0,1] left to right as displayed (patient's right on the image left),
// y in [0,1] top to bottom, body centred at x = 0.5.
struct Geometry {
  double rot = 0, scale = 1, dx = 0, dy = 0;  // patient pose in the film
  double heart_factor = 1.0;                  // heart width relative to normal
  double dia_right = 0.66, dia_left = 0.69;   // hemidiaphragm dome heights
  double lung_width = 0.125, lung_height = 0.29;
};

struct Lesions {
  bool present[kNumFindings] = {};
  int severity[kNumFindings] = {};  // 0 mild/small, 1 moderate, 2 severe/large
  int side[kNumFindings] = {};      // 0 right, 1 left, 2 bilateral
  int zone[kNumFindings] = {};      // 0 upper, 1 lower (lung findings)
  bool hedged[kNumFindings] = {};
  // Shape parameters drawn once per case.
  double cx[kNumFindings] = {}, cy[kNumFindings] = {}, p1[kNumFindings] = {}, p2[kNumFindings] = {};
  double blob_x[4] = {}, blob_y[4] = {}, blob_s[4] = {};
  int rib = 0;
  bool healing = false;
  double nodule_mm = 0;
};

double soft_inside(double signed_dist, double edge) { return std::clamp(0.5 - signed_dist / edge, 0.0, 1.0); }

// Approximate signed distance to an axis-aligned ellipse (negative inside).
double ellipse_sd(double x, double y, double cx, double cy, double a, double b) {
  const double r = std::sqrt(((x - cx) / a) * ((x - cx) / a) + ((y - cy) / b) * ((y - cy) / b));
  return (r - 1.0) * std::min(a, b);
}

double lung_center_x(int side) { return side == 0 ? 0.5 - 0.165 : 0.5 + 0.165; }
constexpr double kLungCenterY = 0.45;

double diaphragm_y(const Geometry& g, int side, double x) {
  const double base = side == 0 ? g.dia_right : g.dia_left;
  const double t = (x - lung_center_x(side)) / g.lung_width;
  return base + 0.05 * t * t;
}

double rib_y(int rib, double t) { return 0.17 + 0.062 * rib - 0.08 * t + 0.5 * t * t; }

double severity_scale(int severity) { return 0.75 + 0.3 * severity; }

void draw_lesions(const SyntheticCxrOptions& options, Rng& rng, Lesions* les) {
  const auto& p = options.prevalence;
  les->present[kEdema] = rng.bernoulli(p[kEdema]);
  // Edema travels with cardiomegaly and effusions, as in heart failure.
  const double cardio_p = les->present[kEdema] ? std::max(p[kCardiomegaly], 0.5) : p[kCardiomegaly];
  const double effusion_p = les->present[kEdema] ? std::max(p[kEffusion], 0.4) : p[kEffusion];
  les->present[kCardiomegaly] = rng.bernoulli(cardio_p);
  les->present[kEffusion] = rng.bernoulli(effusion_p);
  for (int f : {kConsolidation, kPneumothorax, kNodule, kAtelectasis, kFracture}) les->present[f] = rng.bernoulli(p[f]);
  for (int f = 0; f < kNumFindings; ++f) {
    les->severity[f] = static_cast<int>(rng.below(3));
    les->side[f] = static_cast<int>(rng.below(2));
    les->zone[f] = rng.bernoulli(f == kAtelectasis ? 0.8 : 0.5) ? 1 : 0;
    les->hedged[f] = les->present[f] && les->severity[f] == 0 && rng.bernoulli(options.hedge_rate * 3.0);
  }
  if (les->present[kEffusion] && rng.bernoulli(les->present[kEdema] ? 0.6 : 0.2)) les->side[kEffusion] = 2;
  les->side[kEdema] = 2;
  for (int f : {kConsolidation, kNodule, kAtelectasis}) {
    const int s = les->side[f];
    const double zone_y = les->zone[f] == 0 ? 0.33 : 0.56;
    les->cx[f] = lung_center_x(s) + rng.uniform(-0.045, 0.045);
    les->cy[f] = zone_y + rng.uniform(-0.04, 0.04);
  }
  for (int i = 0; i < 4; ++i) {
    les->blob_x[i] = rng.uniform(-0.04, 0.04);
    les->blob_y[i] = rng.uniform(-0.035, 0.035);
    les->blob_s[i] = rng.uniform(0.022, 0.042);
  }
  les->p1[kNodule] = rng.uniform(0.02, 0.04);  // radius: 1.4-2.8 cm on a 35 cm film
  les->nodule_mm = std::round(les->p1[kNodule] * 350.0);
  les->p1[kAtelectasis] = rng.uniform(-0.25, 0.25);  // angle
  les->p2[kAtelectasis] = rng.uniform(0.10, 0.16);   // length
  les->rib = 2 + static_cast<int>(rng.below(5));
  les->p1[kFracture] = rng.uniform(0.18, 0.32);  // position along the rib
  les->healing = rng.bernoulli(0.7);
}

struct Canvas {
  int64_t size;
  std::vector<float> density;
  std::vector<float> finding_map[kNumFindings];
  std::vector<float> anatomy[kNumAnatomies];
  explicit Canvas(int64_t s) : size(s), density(static_cast<size_t>(s * s), 0.f) {
    for (auto& m : finding_map) m.assign(static_cast<size_t>(s * s), 0.f);
    for (auto& m : anatomy) m.assign(static_cast<size_t>(s * s), 0.f);
  }
};

void render(const Geometry& g, const Lesions& les, Canvas* canvas, Rng& rng) {
  const int64_t S = canvas->size;
  const double edge = 1.5 / static_cast<double>(S) / g.scale;
  const double cos_r = std::cos(g.rot), sin_r = std::sin(g.rot);

  // Vascular markings: segments fanning out from each hilum, drawn once per case.
  struct Vessel { double x0, y0, x1, y1, w; };
  std::vector<Vessel> vessels;
  for (int side = 0; side < 2; ++side) {
    const double hx = side == 0 ? 0.5 - 0.08 : 0.5 + 0.08;
    for (int k = 0; k < 12; ++k) {
      const double angle = (side == 0 ? kPi : 0.0) + (side == 0 ? 1 : -1) * rng.uniform(-1.1, 1.2);
      const double len = rng.uniform(0.09, 0.2);
      vessels.push_back({hx, 0.46, hx + len * std::cos(angle), 0.46 + len * std::sin(angle) * 1.3,
                         rng.uniform(0.003, 0.006)});
    }
  }
  const double vessel_gain = les.present[kEdema] ? 1.6 : 1.0;

  for (int64_t py = 0; py < S; ++py) {
    for (int64_t px = 0; px < S; ++px) {
      // Film pixel -> canonical body coordinates (undo pose).
      const double u = (static_cast<double>(px) + 0.5) / static_cast<double>(S) - 0.5 - g.dx;
      const double v = (static_cast<double>(py) + 0.5) / static_cast<double>(S) - 0.5 - g.dy;
      const double x = (cos_r * u + sin_r * v) / g.scale + 0.5;
      const double y = (-sin_r * u + cos_r * v) / g.scale + 0.5;
      const size_t idx = static_cast<size_t>(py * S + px);

      const double body = soft_inside(ellipse_sd(x, y, 0.5, 0.6, 0.45, 0.64), edge);
      if (body <= 0.0) continue;
      double d = 1.0 * body;

      const double heart_a = 0.105 * g.heart_factor;
      const double heart = soft_inside(ellipse_sd(x, y, 0.5 + 0.03 + 0.35 * (heart_a - 0.105), 0.6, heart_a, 0.095), edge);
      const double mediastinum =
          std::max(soft_inside(std::max(std::abs(x - 0.5) - 0.052, std::max(0.12 - y, y - 0.62)), edge),
                   soft_inside(ellipse_sd(x, y, 0.55, 0.3, 0.032, 0.03), edge));
      const double spine = soft_inside(std::abs(x - 0.5) - 0.026, edge);

      double lung_total = 0.0;
      for (int side = 0; side < 2; ++side) {
        const double lcx = lung_center_x(side);
        const double shape = soft_inside(ellipse_sd(x, y, lcx, kLungCenterY, g.lung_width, g.lung_height), edge);
        double dia = diaphragm_y(g, side, x);
        if (les.present[kAtelectasis] && les.side[kAtelectasis] == side) dia -= 0.03;  // volume loss
        const double above_dia = soft_inside(y - dia, edge);
        double lung = shape * above_dia * (1.0 - heart) * (1.0 - mediastinum);
        if (lung <= 0.0) continue;
        lung_total += lung;
        const bool upper = y < kLungCenterY;
        canvas->anatomy[side == 0 ? (upper ? kRUL : kRLL) : (upper ? kLUL : kLLL)][idx] = static_cast<float>(lung > 0.5);
        const double r = std::sqrt(((x - lcx) / g.lung_width) * ((x - lcx) / g.lung_width) +
                                   ((y - kLungCenterY) / g.lung_height) * ((y - kLungCenterY) / g.lung_height));
        const bool lateral = (side == 0) == (x < lcx);
        if (r > 0.86 && lateral && lung > 0.5) canvas->anatomy[kPleura][idx] = 1.f;
        if (y > dia - 0.03 && lung > 0.5) canvas->anatomy[kPleura][idx] = 1.f;

        double air = 0.75 * lung;
        double markings = 0.0;
        for (const auto& ves : vessels) {
          if ((ves.x0 < 0.5) != (side == 0)) continue;
          const double vx = ves.x1 - ves.x0, vy = ves.y1 - ves.y0;
          const double t = std::clamp(((x - ves.x0) * vx + (y - ves.y0) * vy) / (vx * vx + vy * vy), 0.0, 1.0);
          const double dist = std::hypot(x - ves.x0 - t * vx, y - ves.y0 - t * vy);
          markings = std::max(markings, (1.0 - 0.7 * t) * soft_inside(dist - ves.w * (1.0 - 0.5 * t), edge));
        }
        markings *= 0.14 * vessel_gain * lung;

        // Pneumothorax: a lateral-apical rim of free air with no markings, edged by the pleural line.
        if (les.present[kPneumothorax] && les.side[kPneumothorax] == side && y < kLungCenterY + 0.12) {
          const double depth = (0.16 + 0.09 * les.severity[kPneumothorax]);
          const double rim = soft_inside((1.0 - depth) - r, 0.02);
          const double line = std::exp(-std::pow((r - (1.0 - depth)) / 0.012, 2.0));
          markings *= 1.0 - rim;
          const double extra = (0.2 * rim + (-0.35) * line * (lateral ? 1.0 : 0.0)) * lung;
          air += extra;
          canvas->finding_map[kPneumothorax][idx] = static_cast<float>(std::max(rim, line) * lung);
        }
        // Pleural effusion: dependent fluid with a meniscus rising laterally.
        if (les.present[kEffusion] && (les.side[kEffusion] == side || les.side[kEffusion] == 2)) {
          const double height = 0.05 + 0.055 * les.severity[kEffusion];
          const double lateral_t = std::clamp((side == 0 ? lcx - x : x - lcx) / g.lung_width, -1.0, 1.0);
          const double level = dia - height - 0.045 * std::max(0.0, lateral_t);
          const double fluid = soft_inside(level - y, 0.018) * shape * (1.0 - heart);
          air -= 0.72 * fluid;
          canvas->finding_map[kEffusion][idx] = static_cast<float>(std::max<double>(canvas->finding_map[kEffusion][idx], fluid));
        }
        d -= air;
        d += markings;
      }
      lung_total = std::min(lung_total, 1.0);
      d += 0.35 * mediastinum + 0.42 * heart * (1.0 - mediastinum * 0.5) + 0.3 * spine;
      canvas->anatomy[kHeart][idx] = static_cast<float>(heart > 0.5);
      if (les.present[kCardiomegaly]) canvas->finding_map[kCardiomegaly][idx] = static_cast<float>(heart);
      canvas->anatomy[kMediastinum][idx] = static_cast<float>(mediastinum > 0.5 && y < 0.62);

      // Ribs (posterior arcs) and clavicles.
      double bone = 0.0;
      for (int side = 0; side < 2; ++side) {
        const double t = side == 0 ? 0.5 - x : x - 0.5;
        if (t < 0.03 || t > 0.41) continue;
        for (int rib = 0; rib < 9; ++rib) {
          double ry = rib_y(rib, t);
          double keep = 1.0;
          if (les.present[kFracture] && les.side[kFracture] == side && les.rib == rib) {
            const double tf = les.p1[kFracture];
            if (t > tf) ry += 0.018;  // displaced lateral fragment
            keep = soft_inside(0.012 - std::abs(t - tf), edge) > 0.5 ? 0.0 : 1.0;
            double callus = les.healing ? soft_inside(ellipse_sd(t, y, tf, rib_y(rib, tf) + 0.009, 0.034, 0.026), edge) : 0.0;
            const double gap_mark = 1.0 - keep;
            canvas->finding_map[kFracture][idx] = static_cast<float>(std::max({gap_mark * soft_inside(std::abs(y - ry) - 0.02, edge), callus,
                                                                              static_cast<double>(canvas->finding_map[kFracture][idx])}));
            bone += 0.3 * callus;
          }
          bone = std::max(bone, 0.24 * keep * soft_inside(std::abs(y - ry) - 0.009, edge));
        }
        const double clav_y = 0.2 - 0.12 * t;
        bone = std::max(bone, 0.3 * soft_inside(std::abs(y - clav_y) - 0.011, edge) * (t < 0.3 ? 1.0 : 0.0));
      }
      d += bone;
      canvas->anatomy[kBones][idx] = static_cast<float>(bone > 0.1 || spine > 0.5);

      // Parenchymal findings, confined to the lungs.
      if (lung_total > 0.0) {
        if (les.present[kConsolidation]) {
          const int f = kConsolidation;
          double blob = 0.0;
          for (int i = 0; i < 4; ++i) {
            const double bx = les.cx[f] + les.blob_x[i], by = les.cy[f] + les.blob_y[i];
            blob += std::exp(-((x - bx) * (x - bx) + (y - by) * (y - by)) / (2.0 * les.blob_s[i] * les.blob_s[i]));
          }
          blob = std::min(blob, 1.3) * lung_total;
          d += 0.5 * severity_scale(les.severity[f]) * blob;
          canvas->finding_map[f][idx] = static_cast<float>(blob);
        }
        if (les.present[kNodule]) {
          const int f = kNodule;
          const double n = soft_inside(std::hypot(x - les.cx[f], y - les.cy[f]) - les.p1[f], edge) * lung_total;
          d += 0.9 * n;
          canvas->finding_map[f][idx] = static_cast<float>(n);
        }
        if (les.present[kAtelectasis]) {
          const int f = kAtelectasis;
          const double ca = std::cos(les.p1[f]), sa = std::sin(les.p1[f]);
          const double along = (x - les.cx[f]) * ca + (y - les.cy[f]) * sa;
          const double across = -(x - les.cx[f]) * sa + (y - les.cy[f]) * ca;
          const double thick = 0.011 + 0.005 * les.severity[f];
          const double band = soft_inside(std::max(std::abs(along) - les.p2[f] / 2, std::abs(across) - thick), edge) * lung_total;
          d += 0.55 * band;
          canvas->finding_map[f][idx] = static_cast<float>(band);
        }
        if (les.present[kEdema]) {
          const int f = kEdema;
          double haze = 0.0;
          for (double hx : {0.5 - 0.1, 0.5 + 0.1})
            haze += std::exp(-std::pow((x - hx) / 0.1, 2.0) / 2.0 - std::pow((y - 0.47) / 0.13, 2.0) / 2.0);
          haze *= lung_total;
          // Kerley B lines: short horizontal lines at the lateral bases.
          double kerley = 0.0;
          if (les.severity[f] > 0 && y > 0.55) {
            const double lateral_dist = std::min(std::abs(x - (lung_center_x(0) - g.lung_width)),
                                                 std::abs(x - (lung_center_x(1) + g.lung_width)));
            if (lateral_dist < 0.04 && std::fmod(y * 100.0, 2.5) < 0.6) kerley = lung_total;
          }
          d += (0.2 + 0.13 * les.severity[f]) * haze + 0.12 * kerley;
          canvas->finding_map[f][idx] = static_cast<float>(std::max(haze, kerley));
        }
      }
      canvas->density[idx] = static_cast<float>(d);
    }
  }
}

// ----------------------------------------------------------------------------- reports

const char* kSideWord[] = {"right", "left", "bilateral"};
const char* kLobe[2][2] = {{"right upper lobe", "right lower lobe"}, {"left upper lobe", "left lower lobe"}};
const char* kZone[2][2] = {{"right upper zone", "right lung base"}, {"left upper zone", "left lung base"}};
const char* kSeverity[] = {"mild", "moderate", "severe"};
const char* kSize[] = {"small", "moderate", "large"};
const char* kOrdinal[] = {"third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"};

std::string capitalize(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string location(Rng& rng, const Lesions& les, int f) {
  return rng.bernoulli(0.6) ? kLobe[les.side[f]][les.zone[f]] : kZone[les.side[f]][les.zone[f]];
}

// A phrase naming the finding as present, without a trailing period.
std::string positive_phrase(Rng& rng, const Lesions& les, int f) {
  const int sev = les.severity[f];
  switch (f) {
    case kConsolidation: {
      const std::string loc = location(rng, les, f);
      const char* forms[] = {"%s consolidation in the %l", "%s airspace consolidation in the %l",
                             "patchy consolidation in the %l", "%s airspace opacity in the %l consistent with consolidation"};
      std::string s = rng.pick(forms);
      s.replace(s.find("%l"), 2, loc);
      if (s.find("%s") != std::string::npos) s.replace(s.find("%s"), 2, kSeverity[sev]);
      return s;
    }
    case kEffusion: {
      if (les.side[f] == 2) return std::string(kSize[sev]) + (rng.bernoulli(0.5) ? " bilateral pleural effusions" : " bilateral effusions");
      const char* forms[] = {"%z %d pleural effusion", "%z %d effusion with blunting of the costophrenic angle",
                             "%z %d pleural effusion"};
      std::string s = rng.pick(forms);
      s.replace(s.find("%z"), 2, kSize[sev]);
      s.replace(s.find("%d"), 2, kSideWord[les.side[f]]);
      return s;
    }
    case kPneumothorax: {
      const char* forms[] = {"%z %d pneumothorax", "%z %d apical pneumothorax", "%d pneumothorax, %z in size"};
      std::string s = rng.pick(forms);
      s.replace(s.find("%z"), 2, kSize[sev]);
      s.replace(s.find("%d"), 2, kSideWord[les.side[f]]);
      return s;
    }
    case kNodule: {
      const std::string loc = location(rng, les, f);
      const std::string mm = std::to_string(static_cast<int>(les.nodule_mm)) + " mm";
      const char* forms[] = {"a %m nodule in the %l", "a %m pulmonary nodule projecting over the %l",
                             "a nodular opacity in the %l", "a well-circumscribed %m nodule in the %l"};
      std::string s = rng.pick(forms);
      s.replace(s.find("%l"), 2, loc);
      if (s.find("%m") != std::string::npos) s.replace(s.find("%m"), 2, mm);
      return s;
    }
    case kCardiomegaly: {
      const char* forms[] = {"%s cardiomegaly", "%s enlargement of the cardiac silhouette", "an enlarged heart",
                             "%s cardiomegaly"};
      std::string s = rng.pick(forms);
      if (s.find("%s") != std::string::npos) s.replace(s.find("%s"), 2, kSeverity[sev]);
      return s;
    }
    case kAtelectasis: {
      const std::string loc = location(rng, les, f);
      const char* forms[] = {"plate-like atelectasis in the %l", "%s atelectasis in the %l",
                             "linear atelectasis at the %l", "%s %d basilar atelectasis"};
      std::string s = rng.pick(forms);
      if (s.find("%l") != std::string::npos) s.replace(s.find("%l"), 2, loc);
      if (s.find("%s") != std::string::npos) s.replace(s.find("%s"), 2, kSeverity[sev]);
      if (s.find("%d") != std::string::npos) s.replace(s.find("%d"), 2, kSideWord[les.side[f]]);
      return s;
    }
    case kEdema: {
      const char* forms[] = {"%s pulmonary edema", "%s interstitial edema", "vascular congestion with %s pulmonary edema",
                             "%s pulmonary edema"};
      std::string s = rng.pick(forms);
      s.replace(s.find("%s"), 2, kSeverity[sev]);
      return s;
    }
    default: {
      const std::string side = kSideWord[les.side[f]];
      const std::string rib = kOrdinal[std::min(les.rib, 6)];
      if (les.healing && rng.bernoulli(0.6)) return "a healing fracture of the " + side + " " + rib + " rib";
      return rng.bernoulli(0.5) ? "an acute " + side + " " + rib + " rib fracture" : "a displaced " + side + " rib fracture";
    }
  }
}

std::string present_sentence(Rng& rng, const Lesions& les, int f) {
  std::string phrase = positive_phrase(rng, les, f);
  if (les.hedged[f]) {
    const int form = static_cast<int>(rng.below(3));
    if (form == 0) return "Possible " + phrase + ".";
    if (form == 1) return capitalize(phrase) + " cannot be excluded.";
    return "Findings may represent " + phrase + ".";
  }
  if (rng.bernoulli(0.4)) return "There is " + phrase + ".";
  if (phrase.rfind("a ", 0) == 0) phrase = phrase.substr(2);
  else if (phrase.rfind("an ", 0) == 0) phrase = phrase.substr(3);
  return capitalize(phrase) + ".";
}

std::string negated_sentence(Rng& rng, int f) {
  static const std::vector<std::vector<const char*>> forms = {
      {"No focal consolidation.", "There is no consolidation.", "No airspace consolidation is seen."},
      {"No pleural effusion.", "No pleural effusions are seen.", "There is no effusion."},
      {"No pneumothorax.", "There is no evidence of pneumothorax.", "No pneumothorax is identified."},
      {"No pulmonary nodules.", "No suspicious nodule is identified.", "There is no nodule."},
      {"Heart size is normal.", "The cardiac silhouette is not enlarged.", "No cardiomegaly."},
      {"No atelectasis.", "There is no atelectasis.", "No evidence of atelectasis."},
      {"No pulmonary edema.", "There is no evidence of edema.", "No interstitial edema."},
      {"No acute rib fracture.", "No displaced fracture is seen.", "There is no rib fracture."},
  };
  const auto& options = forms[static_cast<size_t>(f)];
  return options[static_cast<size_t>(rng.below(static_cast<int64_t>(options.size())))];
}

void write_report(const SyntheticCxrOptions& options, const Lesions& les, Rng& rng, CxrCase* out) {
  auto labels = out->report_labels.accessor<float, 1>();
  std::vector<std::string> sentences;
  for (int f = 0; f < kNumFindings; ++f) {
    labels[f] = -1.f;
    if (les.present[f]) {
      sentences.push_back(present_sentence(rng, les, f));
      labels[f] = les.hedged[f] ? -1.f : 1.f;
    }
  }
  std::vector<int> negated;
  for (int f = 0; f < kNumFindings; ++f)
    if (!les.present[f] && rng.bernoulli(options.negation_rate)) negated.push_back(f);
  // Effusion and pneumothorax are often negated together, as radiologists write them.
  if (std::count(negated.begin(), negated.end(), kEffusion) && std::count(negated.begin(), negated.end(), kPneumothorax) &&
      rng.bernoulli(0.6)) {
    sentences.push_back(rng.bernoulli(0.5) ? "No pleural effusion or pneumothorax." : "There is no pleural effusion or pneumothorax.");
    labels[kEffusion] = labels[kPneumothorax] = 0.f;
    negated.erase(std::remove_if(negated.begin(), negated.end(), [](int f) { return f == kEffusion || f == kPneumothorax; }),
                  negated.end());
  }
  for (int f : negated) {
    sentences.push_back(negated_sentence(rng, f));
    labels[f] = 0.f;
  }
  const bool lungs_clear = !les.present[kConsolidation] && !les.present[kNodule] && !les.present[kAtelectasis] &&
                           !les.present[kEdema] && !les.present[kEffusion] && !les.present[kPneumothorax];
  if (lungs_clear && rng.bernoulli(0.6)) {
    sentences.push_back(rng.bernoulli(0.5) ? "The lungs are clear." : "Lungs are well expanded and clear.");
    for (int f : {kConsolidation, kNodule, kAtelectasis, kEdema}) labels[f] = 0.f;
  }
  if (!les.present[kCardiomegaly] && rng.bernoulli(0.4)) {
    sentences.push_back("Cardiomediastinal silhouette is within normal limits.");
    labels[kCardiomegaly] = 0.f;
  }
  if (!les.present[kFracture] && rng.bernoulli(0.25)) {
    sentences.push_back("Visualized osseous structures are unremarkable.");
    labels[kFracture] = 0.f;
  }
  if (sentences.empty()) sentences.push_back("Frontal view of the chest.");
  // Radiologists usually lead with the positive findings, then list the negatives; keep that
  // order but swap neighbours now and then.
  for (size_t i = 1; i < sentences.size(); ++i)
    if (rng.bernoulli(0.2)) std::swap(sentences[i - 1], sentences[i]);
  out->findings_sentences = sentences;

  int positives = 0;
  for (int f = 0; f < kNumFindings; ++f) positives += les.present[f] && !les.hedged[f];
  if (positives == 0) {
    const char* normal[] = {"No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                            "Normal chest radiograph."};
    out->impression = rng.pick(normal);
  } else {
    std::string summary;
    for (int f = 0; f < kNumFindings; ++f) {
      if (!les.present[f] || les.hedged[f]) continue;
      std::string phrase = positive_phrase(rng, les, f);
      if (phrase.rfind("a ", 0) == 0) phrase = phrase.substr(2);
      else if (phrase.rfind("an ", 0) == 0) phrase = phrase.substr(3);
      summary += (summary.empty() ? capitalize(phrase) : ", " + phrase);
    }
    out->impression = summary + ".";
  }
}

std::vector<Box> boxes_from_maps(const Canvas& canvas) {
  std::vector<Box> boxes;
  const int64_t S = canvas.size;
  for (int f = 0; f < kNumFindings; ++f) {
    int64_t x0 = S, y0 = S, x1 = -1, y1 = -1;
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        if (canvas.finding_map[f][static_cast<size_t>(y * S + x)] > 0.3f) {
          x0 = std::min(x0, x); y0 = std::min(y0, y); x1 = std::max(x1, x); y1 = std::max(y1, y);
        }
    if (x1 >= 0) boxes.push_back({f, static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1 + 1), static_cast<float>(y1 + 1)});
  }
  return boxes;
}

uint64_t split_salt(Split split) {
  switch (split) {
    case Split::kTrain: return 0x7472;
    case Split::kVal: return 0x76616c;
    default: return 0x74657374;
  }
}

CxrCase render_case(const SyntheticCxrOptions& options, Split split, int64_t index, int64_t epoch) {
  MEDVLP_CHECK(options.image_size >= 32 && options.image_size <= 2048,
               "synthetic CXR: image_size must be in [32, 2048], got ", options.image_size);
  Rng rng(mix_seed(options.seed, split_salt(split), static_cast<uint64_t>(index)));
  Geometry g;
  g.rot = rng.uniform(-4.0, 4.0) * kPi / 180.0;
  g.scale = rng.uniform(0.86, 1.06);
  g.dx = rng.uniform(-0.04, 0.04);
  g.dy = rng.uniform(-0.03, 0.03);
  g.lung_width = 0.125 * rng.uniform(0.93, 1.07);
  g.lung_height = 0.29 * rng.uniform(0.94, 1.05);
  g.dia_right = rng.uniform(0.64, 0.68);
  g.dia_left = g.dia_right + rng.uniform(0.01, 0.04);
  Lesions les;
  draw_lesions(options, rng, &les);
  g.heart_factor = les.present[kCardiomegaly] ? 1.3 + 0.14 * les.severity[kCardiomegaly] + rng.uniform(-0.04, 0.04)
                                              : rng.uniform(0.88, 1.07);
  double gain = rng.uniform(0.85, 1.12), gamma = rng.uniform(0.8, 1.25), k = rng.uniform(1.4, 1.8);
  double noise_sigma = rng.uniform(0.008, 0.03);
  const uint64_t noise_seed = rng.next();
  const uint64_t text_seed = rng.next();
  const uint64_t vessel_seed = rng.next();

  if (options.augment && epoch >= 0) {
    Rng aug(mix_seed(options.seed, split_salt(split) ^ 0xa5a5, static_cast<uint64_t>(index), static_cast<uint64_t>(epoch) + 1));
    g.rot += aug.uniform(-3.0, 3.0) * kPi / 180.0;
    g.scale *= aug.uniform(0.95, 1.05);
    g.dx += aug.uniform(-0.02, 0.02);
    g.dy += aug.uniform(-0.02, 0.02);
    gain *= aug.uniform(0.92, 1.08);
    gamma *= aug.uniform(0.92, 1.08);
  }

  const int64_t S = options.image_size;
  Canvas canvas(S);
  Rng vessel_rng(vessel_seed);
  render(g, les, &canvas, vessel_rng);

  CxrCase out;
  out.image = torch::empty({1, S, S}, torch::kFloat);
  float* img = out.image.data_ptr<float>();
  Rng noise(options.augment && epoch >= 0 ? mix_seed(noise_seed, static_cast<uint64_t>(epoch)) : noise_seed);
  for (size_t i = 0; i < canvas.density.size(); ++i) {
    const double attenuation = 1.0 - std::exp(-k * std::max(0.0f, canvas.density[i]));
    const double value = gain * std::pow(attenuation, gamma) + 0.02 + noise_sigma * noise.normal();
    img[i] = static_cast<float>(std::clamp(value, 0.0, 1.0));
  }
  out.truth = torch::zeros({kNumFindings}, torch::kFloat);
  for (int f = 0; f < kNumFindings; ++f) out.truth[f] = les.present[f] ? 1.f : 0.f;
  out.report_labels = torch::full({kNumFindings}, -1.f, torch::kFloat);
  Rng text_rng(text_seed);
  write_report(options, les, text_rng, &out);
  if (options.shuffle_sentences && epoch >= 0) {
    Rng shuffle(mix_seed(text_seed, static_cast<uint64_t>(epoch) + 17));
    auto& s = out.findings_sentences;
    for (size_t i = s.size(); i > 1; --i) std::swap(s[i - 1], s[static_cast<size_t>(shuffle.below(static_cast<int64_t>(i)))]);
  }
  out.anatomy_masks = torch::empty({kNumAnatomies, S, S}, torch::kFloat);
  for (int a = 0; a < kNumAnatomies; ++a)
    std::copy(canvas.anatomy[a].begin(), canvas.anatomy[a].end(), out.anatomy_masks[a].data_ptr<float>());
  out.boxes = boxes_from_maps(canvas);
  return out;
}

}  // namespace

Split parse_split(const std::string& name) {
  if (name == "train") return Split::kTrain;
  if (name == "val") return Split::kVal;
  if (name == "test") return Split::kTest;
  throw Error("split \"" + name + "\": expected train, val or test");
}

std::string split_name(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kVal: return "val";
    default: return "test";
  }
}

const std::vector<std::string>& cxr_findings() {
  static const std::vector<std::string> names = {"consolidation", "pleural effusion", "pneumothorax", "nodule",
                                                 "cardiomegaly",  "atelectasis",      "edema",        "fracture"};
  return names;
}

const std::vector<std::string>& cxr_anatomies() {
  static const std::vector<std::string> names = {"right upper lung", "right lower lung", "left upper lung", "left lower lung",
                                                 "heart",            "mediastinum",      "pleura",          "bones"};
  return names;
}

std::string CxrCase::report() const {
  std::string text = "FINDINGS:";
  for (const auto& s : findings_sentences) text += " " + s;
  return text + " IMPRESSION: " + impression;
}

CxrCase render_cxr_case(const SyntheticCxrOptions& options, Split split, int64_t index) {
  return render_case(options, split, index, -1);
}

SyntheticCxrDataset::SyntheticCxrDataset(SyntheticCxrOptions options, Split split)
    : options_(std::move(options)), split_(split) {
  for (double p : options_.prevalence)
    MEDVLP_CHECK(p >= 0.0 && p <= 1.0, "synthetic CXR: prevalence must be in [0, 1], got ", p);
}

int64_t SyntheticCxrDataset::size() const {
  switch (split_) {
    case Split::kTrain: return options_.train_size;
    case Split::kVal: return options_.val_size;
    default: return options_.test_size;
  }
}

std::string SyntheticCxrDataset::patient_id(int64_t index) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "synthetic CXR ", split_name(split_), ": index ", index,
               " out of range [0, ", size(), ")");
  return split_name(split_) + "_" + std::to_string(index);
}

Sample SyntheticCxrDataset::get(int64_t index, int64_t epoch) const {
  MEDVLP_CHECK(index >= 0 && index < size(), "synthetic CXR ", split_name(split_), ": index ", index,
               " out of range [0, ", size(), ")");
  // Augmentation and sentence shuffling are for training only.
  const int64_t aug_epoch = split_ == Split::kTrain ? epoch : -1;
  CxrCase c = render_case(options_, split_, index, aug_epoch);
  Sample s;
  s.id = patient_id(index);
  s.patient_id = s.id;
  s.image = c.image;
  s.report = c.report();
  s.labels = c.report_labels;
  s.truth = c.truth;
  s.anatomy_masks = c.anatomy_masks;
  s.boxes = c.boxes;
  return s;
}

}  // namespace medvlp::data
