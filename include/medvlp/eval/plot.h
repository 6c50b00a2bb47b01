#pragma once
// Line charts as PNG (ROC curves, training and validation curves), drawn with OpenCV so that a run
// folder can be looked at without a plotting stack.

#include <string>
#include <vector>

namespace medvlp::eval {

/// One polyline of a chart.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

/// Axes and labels of a chart. Limits left equal (lo == hi) follow the data.
struct ChartOptions {
  std::string title, x_label, y_label;
  double x_min = 0, x_max = 0, y_min = 0, y_max = 0;
  bool diagonal = false;  // the chance line of a ROC chart
  int width = 900, height = 600;
};

/// Writes `series` as a PNG line chart with a legend (atomically). Non-finite points are skipped.
/// medvlp::Error names the path when it cannot be written or medvlp was built without OpenCV.
void write_line_chart(const std::string& path, const std::vector<Series>& series, const ChartOptions& options);

/// Whether this build can draw charts (OpenCV).
bool charts_available();

}  // namespace medvlp::eval
