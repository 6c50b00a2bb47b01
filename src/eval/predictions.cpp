#include "medvlp/eval/predictions.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "medvlp/core/error.h"
#include "medvlp/core/registry.h"
#include "medvlp/eval/metrics.h"
#include "medvlp/eval/plot.h"
#include "medvlp/io/csv.h"
#include "medvlp/io/files.h"

namespace medvlp::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string number(double v) {
  if (std::isnan(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double parse_cell(const io::CsvTable& t, size_t row, size_t col, bool label) {
  const std::string& cell = t.rows[row][col];
  const std::string where = t.path + ":" + std::to_string(t.lines[row]) + ": column \"" + t.header[col] + "\": ";
  if (cell.empty()) return kNaN;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(cell, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MEDVLP_CHECK(used == cell.size() && !std::isnan(v), where, "expected a number or an empty cell, got \"", cell, "\"");
  if (label)
    MEDVLP_CHECK(v == 1 || v == 0 || v == -1, where, "a label is 1, 0, -1 or empty, got \"", cell, "\"");
  else
    MEDVLP_CHECK(std::isfinite(v), where, "a score must be finite, got \"", cell, "\"");
  return v;
}

// NaN as JSON null in memory too, not only when dumped, so callers test is_null().
nlohmann::json num(double v) {
  if (std::isnan(v)) return nullptr;
  return v;
}

nlohmann::json interval_json(const Interval& i) {
  if (std::isnan(i.low)) return nullptr;
  return {i.low, i.high};
}

}  // namespace

void Predictions::validate() const {
  MEDVLP_CHECK(patient_ids.size() == ids.size(), "predictions: ", patient_ids.size(), " patient ids for ", ids.size(), " samples");
  MEDVLP_CHECK(scores.size() == findings.size() && labels.size() == findings.size(), "predictions: ", findings.size(),
               " findings but ", scores.size(), " score and ", labels.size(), " label columns");
  for (size_t k = 0; k < findings.size(); ++k)
    MEDVLP_CHECK(scores[k].size() == ids.size() && labels[k].size() == ids.size(), "predictions: finding \"",
                 findings[k], "\" has ", scores[k].size(), " scores and ", labels[k].size(), " labels for ", ids.size(),
                 " samples");
}

void write_predictions_csv(const std::string& path, const Predictions& p) {
  p.validate();
  std::ostringstream out;
  out << "id,patient_id";
  for (const auto& f : p.findings) out << "," << io::csv_field("score:" + f);
  for (const auto& f : p.findings) out << "," << io::csv_field("label:" + f);
  out << "\n";
  for (size_t i = 0; i < p.ids.size(); ++i) {
    out << io::csv_field(p.ids[i]) << "," << io::csv_field(p.patient_ids[i]);
    for (const auto& column : p.scores) out << "," << number(column[i]);
    for (const auto& column : p.labels) out << "," << number(column[i]);
    out << "\n";
  }
  io::write_file_atomic(path, out.str());
}

Predictions read_predictions_csv(const std::string& path) {
  const io::CsvTable t = io::read_csv(path);
  Predictions p;
  const size_t id = t.column("id"), patient = t.column("patient_id");
  std::vector<size_t> score_cols, label_cols;
  for (size_t c = 0; c < t.header.size(); ++c) {
    const std::string& h = t.header[c];
    if (h.rfind("score:", 0) == 0) {
      p.findings.push_back(h.substr(6));
      score_cols.push_back(c);
    }
  }
  MEDVLP_CHECK(!p.findings.empty(), path, ": no \"score:<finding>\" columns (has: ", core::join(t.header), ")");
  for (const auto& f : p.findings) label_cols.push_back(t.column("label:" + f));
  p.scores.assign(p.findings.size(), {});
  p.labels.assign(p.findings.size(), {});
  for (size_t r = 0; r < t.rows.size(); ++r) {
    p.ids.push_back(t.rows[r][id]);
    p.patient_ids.push_back(t.rows[r][patient]);
    for (size_t k = 0; k < p.findings.size(); ++k) {
      const double s = parse_cell(t, r, score_cols[k], false);
      const double l = parse_cell(t, r, label_cols[k], true);
      MEDVLP_CHECK(!std::isnan(s) || std::isnan(l) || l == -1, t.path, ":", t.lines[r], ": finding \"", p.findings[k],
                   "\" has a label but no score");
      p.scores[k].push_back(s);
      p.labels[k].push_back(l);
    }
  }
  return p;
}

std::map<std::string, double> choose_thresholds(const Predictions& validation) {
  validation.validate();
  std::map<std::string, double> out;
  for (size_t k = 0; k < validation.findings.size(); ++k)
    out[validation.findings[k]] = BinaryScores(validation.scores[k], validation.labels[k]).f1_threshold();
  return out;
}

nlohmann::json summarize(const Predictions& p, const SummaryOptions& o) {
  p.validate();
  MEDVLP_CHECK(o.resamples >= 0, "metrics: the number of bootstrap resamples must be >= 0, got ", o.resamples);
  const size_t K = p.findings.size();
  std::vector<BinaryScores> binary;
  std::vector<double> threshold(K, kNaN);
  for (size_t k = 0; k < K; ++k) {
    binary.emplace_back(p.scores[k], p.labels[k]);
    const auto it = o.thresholds.find(p.findings[k]);
    if (it != o.thresholds.end()) threshold[k] = it->second;
  }
  for (const auto& [finding, t] : o.thresholds)
    MEDVLP_CHECK(std::find(p.findings.begin(), p.findings.end(), finding) != p.findings.end(), "metrics: a threshold for \"",
                 finding, "\", which the predictions do not have (they have: ", core::join(p.findings), ")");
  const bool thresholded = !o.thresholds.empty();
  // Averaged findings: both classes present in the whole set.
  std::vector<size_t> averaged;
  for (size_t k = 0; k < K; ++k)
    if (!std::isnan(binary[k].auroc())) averaged.push_back(k);

  // All statistics of one (re)sample, in a fixed layout: per finding auroc, auprc, accuracy, f1;
  // then the means auroc, auprc, accuracy, f1_macro, f1_micro.
  const size_t per = 4, means = 5;
  const auto statistics = [&](const std::vector<double>* w) {
    std::vector<double> s(K * per + means, kNaN);
    Confusion pooled;
    double sums[4] = {0, 0, 0, 0};
    for (size_t k = 0; k < K; ++k) {
      s[k * per + 0] = binary[k].auroc(w);
      s[k * per + 1] = binary[k].auprc(w);
      if (thresholded && !std::isnan(threshold[k])) {
        const Confusion c = binary[k].confusion(threshold[k], w);
        s[k * per + 2] = c.accuracy();
        s[k * per + 3] = c.f1();
      }
    }
    bool thresholds_complete = thresholded;
    for (size_t k : averaged) {
      for (size_t j = 0; j < per; ++j) sums[j] += s[k * per + j];  // NaN in any makes that mean NaN
      if (std::isnan(threshold[k])) thresholds_complete = false;
      else if (thresholded) pooled += binary[k].confusion(threshold[k], w);
    }
    if (!averaged.empty()) {
      const auto n = static_cast<double>(averaged.size());
      s[K * per + 0] = sums[0] / n;
      s[K * per + 1] = sums[1] / n;
      if (thresholds_complete) {
        s[K * per + 2] = sums[2] / n;
        s[K * per + 3] = sums[3] / n;
        s[K * per + 4] = pooled.f1();
      }
    }
    return s;
  };
  const std::vector<double> point = statistics(nullptr);
  std::vector<std::vector<double>> draws(point.size());
  GroupBootstrap bootstrap(p.patient_ids, o.seed);
  for (int64_t r = 0; r < o.resamples; ++r) {
    const std::vector<double> w = bootstrap.weights(r);
    const std::vector<double> s = statistics(&w);
    for (size_t i = 0; i < s.size(); ++i) draws[i].push_back(s[i]);
  }
  std::vector<Interval> ci(point.size(), Interval{kNaN, kNaN, 0});
  if (o.resamples > 0)
    for (size_t i = 0; i < point.size(); ++i)
      if (!std::isnan(point[i])) ci[i] = percentile_interval(draws[i], o.level);

  nlohmann::json findings = nlohmann::json::object();
  for (size_t k = 0; k < K; ++k) {
    nlohmann::json f = {{"auroc", num(point[k * per])},        {"auroc_ci", interval_json(ci[k * per])},
                        {"auprc", num(point[k * per + 1])},    {"auprc_ci", interval_json(ci[k * per + 1])},
                        {"positives", binary[k].positives()}, {"negatives", binary[k].negatives()}};
    if (thresholded) {
      const Confusion c = binary[k].confusion(threshold[k]);
      f["threshold"] = num(threshold[k]);
      f["accuracy"] = num(point[k * per + 2]);
      f["accuracy_ci"] = interval_json(ci[k * per + 2]);
      f["f1"] = num(point[k * per + 3]);
      f["f1_ci"] = interval_json(ci[k * per + 3]);
      f["precision"] = std::isnan(threshold[k]) ? nlohmann::json() : num(c.precision());
      f["recall"] = std::isnan(threshold[k]) ? nlohmann::json() : num(c.recall());
    }
    findings[p.findings[k]] = f;
  }
  std::vector<std::string> averaged_names;
  for (size_t k : averaged) averaged_names.push_back(p.findings[k]);
  const size_t m = K * per;
  nlohmann::json mean = {{"auroc", num(point[m])},     {"auroc_ci", interval_json(ci[m])},
                         {"auprc", num(point[m + 1])}, {"auprc_ci", interval_json(ci[m + 1])},
                         {"findings", averaged_names}};
  if (thresholded) {
    mean["accuracy"] = num(point[m + 2]);
    mean["accuracy_ci"] = interval_json(ci[m + 2]);
    mean["f1_macro"] = num(point[m + 3]);
    mean["f1_macro_ci"] = interval_json(ci[m + 3]);
    mean["f1_micro"] = num(point[m + 4]);
    mean["f1_micro_ci"] = interval_json(ci[m + 4]);
  }
  return {{"findings", findings},
          {"mean", mean},
          {"bootstrap",
           {{"resamples", o.resamples}, {"used", ci[m].used}, {"level", o.level}, {"seed", o.seed},
            {"patients", bootstrap.groups()}}}};
}

void write_roc_chart(const std::string& path, const Predictions& p, const std::string& title) {
  p.validate();
  std::vector<Series> curves;
  for (size_t k = 0; k < p.findings.size(); ++k) {
    const BinaryScores b(p.scores[k], p.labels[k]);
    auto [fpr, tpr] = b.roc_curve();
    if (fpr.empty()) continue;
    char name[96];
    std::snprintf(name, sizeof name, "%.18s %.3f", p.findings[k].c_str(), b.auroc());
    curves.push_back({name, std::move(fpr), std::move(tpr)});
  }
  ChartOptions o;
  o.title = title;
  o.x_label = "false positive rate";
  o.y_label = "true positive rate";
  o.x_min = 0, o.x_max = 1, o.y_min = 0, o.y_max = 1;
  o.diagonal = true;
  o.height = 700;
  write_line_chart(path, curves, o);
}

}  // namespace medvlp::eval
