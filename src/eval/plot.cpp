#include "medvlp/eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"

#if MEDVLP_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace medvlp::eval {

#if MEDVLP_WITH_OPENCV
bool charts_available() { return true; }
#else
bool charts_available() { return false; }
#endif

#if !MEDVLP_WITH_OPENCV
void write_line_chart(const std::string& path, const std::vector<Series>&, const ChartOptions&) {
  throw Error(path + ": cannot draw a chart: medvlp was built without OpenCV (MEDVLP_WITH_OPENCV=OFF)");
}
#else
namespace {

// Tableau-like colours, BGR.
const cv::Scalar kColours[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},  {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};

// Round tick steps (1, 2, 5 x 10^k) giving about `count` ticks over [lo, hi].
double tick_step(double lo, double hi, int count) {
  const double raw = (hi - lo) / count;
  const double base = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * base >= raw) return m * base;
  return 10 * base;
}

std::string tick_label(double v, double step) {
  char buf[32];
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), std::abs(v) < step * 1e-6 ? 0.0 : v);
  return buf;
}

}  // namespace

void write_line_chart(const std::string& path, const std::vector<Series>& series, const ChartOptions& o) {
  MEDVLP_CHECK(o.width >= 200 && o.height >= 150, path, ": a chart needs at least 200x150 pixels");
  double x0 = o.x_min, x1 = o.x_max, y0 = o.y_min, y1 = o.y_max;
  if (x0 == x1 || y0 == y1) {
    double dx0 = std::numeric_limits<double>::infinity(), dx1 = -dx0, dy0 = dx0, dy1 = -dx0;
    for (const auto& s : series)
      for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        dx0 = std::min(dx0, s.x[i]);
        dx1 = std::max(dx1, s.x[i]);
        dy0 = std::min(dy0, s.y[i]);
        dy1 = std::max(dy1, s.y[i]);
      }
    if (!std::isfinite(dx0)) dx0 = 0, dx1 = 1, dy0 = 0, dy1 = 1;
    if (x0 == x1) x0 = dx0, x1 = dx1 > dx0 ? dx1 : dx0 + 1;
    if (y0 == y1) {
      const double pad = dy1 > dy0 ? 0.05 * (dy1 - dy0) : 0.5;
      y0 = dy0 - pad, y1 = dy1 + pad;
    }
  }
  cv::Mat img(o.height, o.width, CV_8UC3, cv::Scalar(255, 255, 255));
  const int left = 80, right = 20 + 200, top = 54, bottom = 60;  // the legend sits right of the plot
  const int pw = o.width - left - right, ph = o.height - top - bottom;
  const auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * pw)); };
  const auto py = [&](double y) { return top + ph - static_cast<int>(std::lround((y - y0) / (y1 - y0) * ph)); };
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const cv::Scalar ink(40, 40, 40), grid(225, 225, 225);
  // Grid and ticks.
  const double xs = tick_step(x0, x1, 8), ys = tick_step(y0, y1, 6);
  for (double t = std::ceil(x0 / xs) * xs; t <= x1 + xs * 1e-9; t += xs) {
    cv::line(img, {px(t), top}, {px(t), top + ph}, grid, 1);
    const std::string label = tick_label(t, xs);
    cv::putText(img, label, {px(t) - 4 * static_cast<int>(label.size()), top + ph + 18}, font, 0.4, ink, 1, cv::LINE_AA);
  }
  for (double t = std::ceil(y0 / ys) * ys; t <= y1 + ys * 1e-9; t += ys) {
    cv::line(img, {left, py(t)}, {left + pw, py(t)}, grid, 1);
    const std::string label = tick_label(t, ys);
    cv::putText(img, label, {left - 8 - 8 * static_cast<int>(label.size()), py(t) + 4}, font, 0.4, ink, 1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {left + pw, top + ph}, ink, 1);
  if (o.diagonal)
    cv::line(img, {px(std::max(x0, y0)), py(std::max(x0, y0))}, {px(std::min(x1, y1)), py(std::min(x1, y1))},
             cv::Scalar(160, 160, 160), 1, cv::LINE_AA);
  cv::putText(img, o.title, {left, 22}, font, 0.6, ink, 1, cv::LINE_AA);
  cv::putText(img, o.x_label, {left + pw / 2 - 4 * static_cast<int>(o.x_label.size()), o.height - 16}, font, 0.5, ink, 1,
              cv::LINE_AA);
  cv::putText(img, o.y_label, {8, top - 8}, font, 0.45, ink, 1, cv::LINE_AA);
  // Curves, clipped to the plot, and the legend.
  cv::Mat plot = img(cv::Rect(left, top, pw + 1, ph + 1));
  for (size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = kColours[k % (sizeof kColours / sizeof kColours[0])];
    std::vector<cv::Point> points;
    const auto flush = [&] {
      if (points.size() >= 2) cv::polylines(plot, points, false, colour, 2, cv::LINE_AA);
      else if (points.size() == 1) cv::circle(plot, points[0], 3, colour, cv::FILLED, cv::LINE_AA);
      points.clear();
    };
    const auto& s = series[k];
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        continue;
      }
      points.emplace_back(px(s.x[i]) - left, py(s.y[i]) - top);
    }
    flush();
    const int ly = top + 12 + 20 * static_cast<int>(k);
    if (ly > top + ph) continue;  // more series than the legend has room for
    cv::line(img, {left + pw + 12, ly - 4}, {left + pw + 36, ly - 4}, colour, 2, cv::LINE_AA);
    cv::putText(img, s.name.substr(0, 26), {left + pw + 42, ly}, font, 0.42, ink, 1, cv::LINE_AA);
  }
  std::vector<uchar> png;
  MEDVLP_CHECK(cv::imencode(".png", img, png), path, ": PNG encoding failed");
  io::write_file_atomic(path, std::string(png.begin(), png.end()));
}
#endif

}  // namespace medvlp::eval
