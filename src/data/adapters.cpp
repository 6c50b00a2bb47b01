#include "medvlp/data/adapters.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "../core/log.h"
#include "medvlp/core/error.h"
#include "medvlp/data/build.h"
#include "medvlp/data/manifest.h"
#include "medvlp/data/rng.h"
#include "medvlp/io/csv.h"
#include "medvlp/io/files.h"

namespace medvlp::data {

namespace {

// The first of `names` under `dir` that exists (datasets ship some tables both plain and gzipped,
// and renamed them between releases); throws listing what was looked for.
std::string find_table(const std::string& dir, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (io::path_exists(dir + "/" + n)) return dir + "/" + n;
    if (io::path_exists(dir + "/" + n + ".gz")) return dir + "/" + n + ".gz";
  }
  std::string tried;
  for (const auto& n : names) tried += (tried.empty() ? "" : ", ") + n;
  throw Error(dir + ": none of " + tried + " (.gz) found");
}

std::string parse_split_name(const std::string& split) {
  MEDVLP_CHECK(split == "train" || split == "val" || split == "test", "unknown split \"", split,
               "\"; expected train, val or test");
  return split;
}

// CheXpert-style label cells: 1.0 present, 0.0 absent, -1.0 uncertain, blank unmentioned (-1).
float label_cell(const std::string& cell, const std::string& uncertain) {
  if (cell.empty()) return -1.f;
  const double v = std::strtod(cell.c_str(), nullptr);
  if (v > 0.5) return 1.f;
  if (v < -0.5) return uncertain == "ones" ? 1.f : uncertain == "zeros" ? 0.f : -1.f;
  return 0.f;
}

struct Common {
  std::string root;
  std::vector<std::string> findings;
  ManifestDataset::Options options;
  double val_fraction = 0, test_fraction = 0;
  uint64_t seed = 0;
};

// Keys every adapter shares: root, findings (a subset of the dataset's, in any order), missing.
Common read_common(const core::ConfigNode& node, const std::vector<std::string>& known, double val, double test) {
  Common c;
  c.root = node.get_string("root");
  if (!io::path_exists(c.root)) node.fail("root", "folder " + c.root + " does not exist");
  c.findings = node.get_strings("findings", known);
  for (const auto& f : c.findings)
    if (std::find(known.begin(), known.end(), f) == known.end())
      node.fail("findings", "\"" + f + "\" is not a label of this dataset; known: " + core::join(known));
  c.options.findings = c.findings;
  c.options.missing = node.get_choice("missing", "skip", {"skip", "fail"}) == "fail" ? MissingPolicy::kFail
                                                                                     : MissingPolicy::kSkip;
  c.options.non_finite = node.get_choice("non_finite", "error", {"error", "zero"}) == "zero" ? NonFinitePolicy::kZero
                                                                                             : NonFinitePolicy::kError;
  c.val_fraction = node.get_double("val_fraction", val, 0.0, 1.0);
  c.test_fraction = node.get_double("test_fraction", test, 0.0, 1.0);
  if (c.val_fraction + c.test_fraction >= 1.0) node.fail("val_fraction", "val_fraction + test_fraction must be < 1");
  c.seed = static_cast<uint64_t>(node.get_int("split_seed", 0, 0));
  return c;
}

// Maps a dataset's columns to the configured findings: position in `findings` of each known label.
std::vector<int64_t> label_slots(const std::vector<std::string>& findings, const std::vector<std::string>& known) {
  std::vector<int64_t> slot(known.size(), -1);
  for (size_t k = 0; k < known.size(); ++k) {
    const auto it = std::find(findings.begin(), findings.end(), known[k]);
    if (it != findings.end()) slot[k] = it - findings.begin();
  }
  return slot;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  MEDVLP_CHECK(in, path, ": cannot open");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

DatasetPtr finish(const std::string& name, const Common& c, std::vector<ManifestEntry> entries,
                  const std::string& split) {
  core::log_info(name, " (", c.root, ") ", split, ": ", entries.size(), " entries listed");
  auto ds = std::make_shared<ManifestDataset>(name + " " + c.root, std::move(entries), c.options);
  MEDVLP_CHECK(ds->size() > 0, name, " ", c.root, ": no readable entries for split ", split);
  return ds;
}

// ---- MIMIC-CXR-JPG ----

DatasetPtr make_mimic_cxr(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  Common c = read_common(node, chexpert_findings(), 0, 0);
  const std::string reports = node.get_string("reports", c.root);
  // MIMIC-CXR-JPG ships without the reports (they are a separate archive, MIMIC-CXR): "none" reads
  // images and labels alone.
  const bool with_reports = reports != "none";
  const std::string label_source = node.get_choice("labels", "chexpert", {"chexpert", "negbio"});
  const std::string uncertain = node.get_choice("uncertain", "keep", {"keep", "ones", "zeros"});
  const auto views = node.get_strings("views", {"PA", "AP"});
  const std::string wanted = split == "val" ? "validate" : split;

  const io::CsvTable splits = io::read_csv(find_table(c.root, {"mimic-cxr-2.0.0-split.csv"}));
  const io::CsvTable meta = io::read_csv(find_table(c.root, {"mimic-cxr-2.0.0-metadata.csv"}));
  const io::CsvTable labels = io::read_csv(find_table(c.root, {"mimic-cxr-2.0.0-" + label_source + ".csv"}));

  std::set<std::string> in_split;
  {
    const size_t dicom = splits.column("dicom_id"), s = splits.column("split");
    for (const auto& r : splits.rows)
      if (r[s] == wanted) in_split.insert(r[dicom]);
  }
  std::map<std::string, std::vector<float>> study_labels;
  {
    const size_t study = labels.column("study_id");
    std::vector<size_t> cols;
    for (const auto& f : chexpert_findings()) cols.push_back(labels.column(f));
    const auto slot = label_slots(c.findings, chexpert_findings());
    for (const auto& r : labels.rows) {
      std::vector<float> l(c.findings.size(), -1.f);
      for (size_t k = 0; k < cols.size(); ++k)
        if (slot[k] >= 0) l[static_cast<size_t>(slot[k])] = label_cell(r[cols[k]], uncertain);
      study_labels[r[study]] = std::move(l);
    }
  }
  const size_t dicom = meta.column("dicom_id"), subject = meta.column("subject_id"), study = meta.column("study_id"),
               view = meta.column("ViewPosition");
  std::vector<ManifestEntry> entries;
  for (size_t i = 0; i < meta.rows.size(); ++i) {
    const auto& r = meta.rows[i];
    if (!in_split.count(r[dicom])) continue;
    if (!views.empty() && std::find(views.begin(), views.end(), r[view]) == views.end()) continue;
    MEDVLP_CHECK(r[subject].size() >= 2, meta.path, ":", meta.lines[i], ": subject_id \"", r[subject], "\" too short");
    const std::string dir = "files/p" + r[subject].substr(0, 2) + "/p" + r[subject] + "/s" + r[study];
    ManifestEntry e;
    e.where = meta.path + ":" + std::to_string(meta.lines[i]);
    e.id = r[dicom];
    e.patient_id = r[subject];
    e.image_path = c.root + "/" + dir + "/" + r[dicom] + ".jpg";
    if (with_reports) e.report_path = reports + "/" + dir + ".txt";
    const auto it = study_labels.find(r[study]);
    if (it != study_labels.end()) e.labels = it->second;
    entries.push_back(std::move(e));
  }
  // Without the report archive every entry would be dropped as missing, one warning each: say why once.
  if (with_reports && !entries.empty()) {
    const size_t probe = std::min<size_t>(entries.size(), 20);
    size_t found = 0;
    for (size_t i = 0; i < probe; ++i) found += io::path_exists(entries[i].report_path);
    if (found == 0)
      node.fail("reports", "none of the first " + std::to_string(probe) + " reports exists (e.g. " +
                               entries[0].report_path + "); MIMIC-CXR-JPG ships without them: point data.reports at the "
                               "folder holding MIMIC-CXR's files/pNN/pSUBJECT/sSTUDY.txt, or set data.reports: none to read "
                               "images and labels without reports");
  }
  return finish("mimic_cxr", c, std::move(entries), split);
}

// ---- CheXpert ----

DatasetPtr make_chexpert(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  Common c = read_common(node, chexpert_findings(), 0, 0);
  const std::string uncertain = node.get_choice("uncertain", "keep", {"keep", "ones", "zeros"});
  const auto views = node.get_strings("views", {"Frontal"});
  std::string table = c.root + (split == "train" ? "/train.csv" : split == "val" ? "/valid.csv" : "/test.csv");
  if (split == "test" && !io::path_exists(table)) {
    core::log_warn("chexpert: ", table, " not found; the test split reads valid.csv, so the val and test splits are the "
                   "same images and test figures are not held out (validation picked thresholds and checkpoints on "
                   "them); put the CheXpert test set's test.csv beside valid.csv for held-out figures");
    table = c.root + "/valid.csv";
  }
  const io::CsvTable t = io::read_csv(table);
  const size_t path = t.column("Path");
  const int64_t view = t.find_column("Frontal/Lateral");
  const auto slot = label_slots(c.findings, chexpert_findings());
  std::vector<int64_t> cols;
  for (const auto& f : chexpert_findings()) cols.push_back(t.find_column(f));
  // Paths start with the folder name the archive unpacks to ("CheXpert-v1.0-small/train/patient00001/..."),
  // which need not be `root`'s name: the part from train/, valid/ or test/ on is taken under `root`.
  const auto under_root = [](const std::string& p) {
    const auto first = p.find('/');
    if (first == std::string::npos) return p;
    const std::string head = p.substr(0, first);
    if (head == "train" || head == "valid" || head == "test") return p;
    const std::string rest = p.substr(first + 1);
    for (const char* part : {"train/", "valid/", "test/"})
      if (rest.rfind(part, 0) == 0) return rest;
    return p;
  };
  std::vector<ManifestEntry> entries;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    if (view >= 0 && !views.empty() && std::find(views.begin(), views.end(), r[view]) == views.end()) continue;
    ManifestEntry e;
    e.where = t.path + ":" + std::to_string(t.lines[i]);
    const std::string& p = r[path];
    e.image_path = c.root + "/" + under_root(p);
    e.id = p;
    const auto pat = p.find("patient");
    e.patient_id = pat == std::string::npos ? p : p.substr(pat, p.find('/', pat) - pat);
    e.labels.assign(c.findings.size(), -1.f);
    for (size_t k = 0; k < cols.size(); ++k)
      if (slot[k] >= 0 && cols[k] >= 0) e.labels[static_cast<size_t>(slot[k])] = label_cell(r[cols[k]], uncertain);
    entries.push_back(std::move(e));
  }
  return finish("chexpert", c, std::move(entries), split);
}

// ---- NIH ChestX-ray14 ----

DatasetPtr make_nih_cxr14(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  Common c = read_common(node, nih_cxr14_findings(), 0.1, 0);
  const io::CsvTable t = io::read_csv(find_table(c.root, {"Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"}));
  const std::string list = c.root + (split == "test" ? "/test_list.txt" : "/train_val_list.txt");
  const auto listed = read_lines(list);
  const std::set<std::string> in_list(listed.begin(), listed.end());

  // Images sit in images/ or, as distributed, in images_001/images ... images_012/images.
  std::map<std::string, std::string> where_is;
  for (const auto& entry : std::filesystem::directory_iterator(c.root)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("images", 0) != 0) continue;
    for (const auto& dir : {entry.path(), entry.path() / "images"}) {
      if (!std::filesystem::is_directory(dir)) continue;
      for (const auto& f : std::filesystem::directory_iterator(dir))
        if (f.is_regular_file()) where_is.emplace(f.path().filename().string(), f.path().string());
    }
  }
  // Boxes: "Bbox [x,y,w,h]" is one header cell split by the commas into "Bbox [x", "y", "w", "h]".
  std::map<std::string, std::vector<Box>> boxes;
  const std::string box_table = c.root + "/BBox_List_2017.csv";
  if (io::path_exists(box_table)) {
    const io::CsvTable b = io::read_csv(box_table);
    const size_t img = b.column("Image Index"), label = b.column("Finding Label"), x = b.column("Bbox [x"),
                 y = b.column("y"), w = b.column("w"), h = b.column("h]");
    for (const auto& r : b.rows) {
      const std::string name = r[label] == "Infiltrate" ? "Infiltration" : r[label];  // the two tables disagree
      const auto k = std::find(c.findings.begin(), c.findings.end(), name);
      if (k == c.findings.end()) continue;
      const float x0 = std::stof(r[x]), y0 = std::stof(r[y]);
      boxes[r[img]].push_back({k - c.findings.begin(), x0, y0, x0 + std::stof(r[w]), y0 + std::stof(r[h])});
    }
  }
  const size_t img = t.column("Image Index"), labels = t.column("Finding Labels"), patient = t.column("Patient ID");
  std::vector<ManifestEntry> entries;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    if (!in_list.count(r[img])) continue;
    if (split != "test" && hash_split(r[patient], c.val_fraction, 0, c.seed) != split) continue;
    ManifestEntry e;
    e.where = t.path + ":" + std::to_string(t.lines[i]);
    e.id = r[img];
    e.patient_id = r[patient];
    const auto found = where_is.find(r[img]);
    e.image_path = found != where_is.end() ? found->second : c.root + "/images/" + r[img];
    // Every finding is decided: listed ones present, the rest absent ("No Finding" lists none).
    e.labels.assign(c.findings.size(), 0.f);
    size_t start = 0;
    while (start <= r[labels].size()) {
      const size_t bar = std::min(r[labels].find('|', start), r[labels].size());
      const std::string name = r[labels].substr(start, bar - start);
      const auto k = std::find(c.findings.begin(), c.findings.end(), name);
      if (k != c.findings.end()) e.labels[static_cast<size_t>(k - c.findings.begin())] = 1.f;
      start = bar + 1;
    }
    const auto b = boxes.find(r[img]);
    if (b != boxes.end()) e.boxes = b->second;
    entries.push_back(std::move(e));
  }
  return finish("nih_cxr14", c, std::move(entries), split);
}

// ---- RSNA Pneumonia Detection ----

DatasetPtr make_rsna_pneumonia(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  Common c = read_common(node, {"pneumonia"}, 0.1, 0.1);
  const io::CsvTable t = io::read_csv(find_table(c.root, {"stage_2_train_labels.csv"}));
  const std::string images = node.get_string("images", c.root + "/stage_2_train_images");
  const size_t id = t.column("patientId"), x = t.column("x"), y = t.column("y"), w = t.column("width"),
               h = t.column("height"), target = t.column("Target");
  // One row per box; a negative image has one row with empty coordinates.
  std::vector<ManifestEntry> entries;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    if (hash_split(r[id], c.val_fraction, c.test_fraction, c.seed) != split) continue;
    auto [it, fresh] = index.emplace(r[id], entries.size());
    if (fresh) {
      ManifestEntry e;
      e.where = t.path + ":" + std::to_string(t.lines[i]);
      e.id = e.patient_id = r[id];
      e.image_path = images + "/" + r[id] + ".dcm";
      e.labels = {0.f};
      entries.push_back(std::move(e));
    }
    ManifestEntry& e = entries[it->second];
    if (r[target] == "1") {
      e.labels = {1.f};
      MEDVLP_CHECK(!r[x].empty() && !r[w].empty(), t.path, ":", t.lines[i], ": Target 1 without a box");
      const float x0 = std::stof(r[x]), y0 = std::stof(r[y]);
      e.boxes.push_back({0, x0, y0, x0 + std::stof(r[w]), y0 + std::stof(r[h])});
    }
  }
  return finish("rsna_pneumonia", c, std::move(entries), split);
}

// ---- VinDr-CXR ----

DatasetPtr make_vindr_cxr(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  const std::string part = split == "test" ? "test" : "train";
  // The label names are the image-label table's columns; read them before validating `findings`.
  const std::string root = node.get_string("root");
  const io::CsvTable t = io::read_csv(find_table(root + "/annotations", {"image_labels_" + part + ".csv"}));
  // The training table says "Other diseases" where the test table says "Other disease": one name
  // for both, so that a findings list and the label vectors agree across splits.
  const auto canonical = [](const std::string& h) { return h == "Other disease" ? std::string("Other diseases") : h; };
  std::vector<std::string> known;
  for (const auto& h : t.header)
    if (h != "image_id" && h != "rad_id" && h != "No finding") known.push_back(canonical(h));
  Common c = read_common(node, known, 0.1, 0);
  const std::string vote = node.get_choice("vote", "majority", {"majority", "any"});
  const size_t image = t.column("image_id");
  std::vector<size_t> cols;
  for (const auto& f : c.findings)
    for (size_t h = 0; h < t.header.size(); ++h)
      if (canonical(t.header[h]) == f) cols.push_back(h);
  // Training images have one row per radiologist (three); test images one consensus row.
  std::map<std::string, std::pair<std::vector<int>, int>> votes;  // image -> (positive votes, raters)
  std::vector<std::string> order;
  std::map<std::string, int64_t> first_line;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    auto [it, fresh] = votes.emplace(r[image], std::make_pair(std::vector<int>(c.findings.size(), 0), 0));
    if (fresh) order.push_back(r[image]), first_line[r[image]] = t.lines[i];
    ++it->second.second;
    for (size_t k = 0; k < cols.size(); ++k) it->second.first[k] += r[cols[k]] == "1" || r[cols[k]] == "1.0";
  }
  std::map<std::string, std::vector<Box>> boxes;
  const std::string box_table = root + "/annotations/annotations_" + part + ".csv";
  if (io::path_exists(box_table)) {
    const io::CsvTable b = io::read_csv(box_table);
    const size_t img = b.column("image_id"), cls = b.column("class_name"), x0 = b.column("x_min"),
                 y0 = b.column("y_min"), x1 = b.column("x_max"), y1 = b.column("y_max");
    for (const auto& r : b.rows) {
      const auto k = std::find(c.findings.begin(), c.findings.end(), r[cls]);
      if (k == c.findings.end() || r[x0].empty()) continue;
      boxes[r[img]].push_back(
          {k - c.findings.begin(), std::stof(r[x0]), std::stof(r[y0]), std::stof(r[x1]), std::stof(r[y1])});
    }
  }
  std::vector<ManifestEntry> entries;
  for (const auto& id : order) {
    if (split != "test" && hash_split(id, c.val_fraction, 0, c.seed) != split) continue;
    const auto& [positive, raters] = votes[id];
    ManifestEntry e;
    e.where = t.path + ":" + std::to_string(first_line[id]);
    e.id = e.patient_id = id;  // VinDr-CXR publishes no patient ids
    e.image_path = root + "/" + part + "/" + id + ".dicom";
    e.labels.resize(c.findings.size());
    for (size_t k = 0; k < positive.size(); ++k)
      e.labels[k] = (vote == "any" ? positive[k] > 0 : 2 * positive[k] > raters) ? 1.f : 0.f;
    const auto b = boxes.find(id);
    if (b != boxes.end()) e.boxes = b->second;
    entries.push_back(std::move(e));
  }
  return finish("vindr_cxr", c, std::move(entries), split);
}

// ---- CT-RATE ----

std::vector<double> parse_number_list(const std::string& cell, const std::string& where) {
  std::vector<double> out;
  std::string token;
  for (char ch : cell + ",") {
    if (ch == '[' || ch == ']' || ch == ' ' || ch == '"') continue;
    if (ch == ',') {
      if (!token.empty()) {
        char* end = nullptr;
        out.push_back(std::strtod(token.c_str(), &end));
        MEDVLP_CHECK(end && *end == '\0', where, ": \"", cell, "\" is not a list of numbers");
      }
      token.clear();
    } else {
      token += ch;
    }
  }
  return out;
}

DatasetPtr make_ct_rate(const core::ConfigNode& node, const std::string& split_in) {
  const std::string split = parse_split_name(split_in);
  Common c = read_common(node, ct_rate_findings(), 0.05, 0);
  c.options.canonical = node.get_choice("orientation", "ras", {"ras", "native"}) == "ras";
  const bool use_metadata = node.get_bool("use_metadata", true);
  // CT-RATE has train and valid volumes; its valid set is the usual test set, and val is a patient
  // split of train.
  const bool train_part = split != "test";
  // The current release keeps its volumes under train_fixed/ and valid_fixed/ (header-scaled to HU,
  // with corrected headers); the first release under train/ and valid/. Fixed ones are preferred.
  const std::string original = train_part ? "train" : "valid";
  const std::string volumes = node.get_choice("volumes", "auto", {"auto", "fixed", "original"});
  const std::string part = volumes == "original" ? original
                           : volumes == "fixed" || io::is_directory(c.root + "/" + original + "_fixed") ? original + "_fixed"
                                                                                                         : original;
  const io::CsvTable reports = io::read_csv(find_table(
      c.root + "/radiology_text_reports", {train_part ? "train_reports.csv" : "validation_reports.csv", "valid_reports.csv"}));
  std::map<std::string, std::vector<float>> labels;
  const std::string label_dir = c.root + "/multi_abnormality_labels";
  if (io::path_exists(label_dir)) {
    const io::CsvTable l = io::read_csv(
        find_table(label_dir, {train_part ? "train_predicted_labels.csv" : "valid_predicted_labels.csv",
                               "validation_predicted_labels.csv"}));
    const size_t name = l.column("VolumeName");
    std::vector<size_t> cols;
    for (const auto& f : c.findings) cols.push_back(l.column(f));
    for (const auto& r : l.rows) {
      std::vector<float> v(c.findings.size());
      for (size_t k = 0; k < cols.size(); ++k) v[k] = label_cell(r[cols[k]], "keep") > 0 ? 1.f : 0.f;
      labels[r[name]] = std::move(v);
    }
  }
  struct Meta {
    std::vector<double> spacing;
    double slope = 1, intercept = 0;
  };
  std::map<std::string, Meta> metadata;
  if (use_metadata) {
    const io::CsvTable m = io::read_csv(find_table(
        c.root + "/metadata", {train_part ? "train_metadata.csv" : "validation_metadata.csv", "valid_metadata.csv"}));
    const size_t name = m.column("VolumeName"), xy = m.column("XYSpacing"), z = m.column("ZSpacing"),
                 slope = m.column("RescaleSlope"), intercept = m.column("RescaleIntercept");
    for (size_t i = 0; i < m.rows.size(); ++i) {
      const auto& r = m.rows[i];
      const std::string where = m.path + ":" + std::to_string(m.lines[i]);
      const auto in_plane = parse_number_list(r[xy], where);
      MEDVLP_CHECK(in_plane.size() == 2 && !r[z].empty(), where, ": XYSpacing must be [row, column] and ZSpacing a number");
      Meta meta;
      // DICOM PixelSpacing is (row spacing, column spacing) = (h, w).
      meta.spacing = {std::stod(r[z]), in_plane[0], in_plane[1]};
      meta.slope = r[slope].empty() ? 1.0 : std::stod(r[slope]);
      meta.intercept = r[intercept].empty() ? 0.0 : std::stod(r[intercept]);
      metadata[r[name]] = meta;
    }
  }
  const size_t name = reports.column("VolumeName"), findings = reports.column("Findings_EN"),
               impressions = reports.column("Impressions_EN");
  std::vector<ManifestEntry> entries;
  for (size_t i = 0; i < reports.rows.size(); ++i) {
    const auto& r = reports.rows[i];
    const std::string& volume = r[name];  // e.g. train_12_a_2.nii.gz -> train/train_12/train_12_a/
    const auto p1 = volume.find('_', volume.find('_') + 1), p2 = volume.find('_', p1 + 1);
    const std::string where = reports.path + ":" + std::to_string(reports.lines[i]);
    MEDVLP_CHECK(p1 != std::string::npos && p2 != std::string::npos, where, ": VolumeName \"", volume,
                 "\" is not <part>_<patient>_<scan>_<recon>.nii.gz");
    const std::string patient = volume.substr(0, p1), scan = volume.substr(0, p2);
    if (train_part && hash_split(patient, c.val_fraction, 0, c.seed) != split) continue;
    ManifestEntry e;
    e.where = where;
    e.id = volume;
    e.patient_id = patient;
    e.image_path = c.root + "/" + part + "/" + patient + "/" + scan + "/" + volume;
    e.report = "FINDINGS: " + r[findings] + " IMPRESSION: " + r[impressions];
    const auto l = labels.find(volume);
    if (l != labels.end()) e.labels = l->second;
    if (use_metadata) {
      const auto m = metadata.find(volume);
      MEDVLP_CHECK(m != metadata.end(), where, ": volume ", volume, " has no row in the metadata table");
      e.spacing = m->second.spacing;
      e.slope = m->second.slope;
      e.intercept = m->second.intercept;
    }
    entries.push_back(std::move(e));
  }
  return finish("ct_rate", c, std::move(entries), split);
}

}  // namespace

const std::vector<std::string>& chexpert_findings() {
  static const std::vector<std::string> names = {
      "Atelectasis",      "Cardiomegaly",     "Consolidation", "Edema",        "Enlarged Cardiomediastinum",
      "Fracture",         "Lung Lesion",      "Lung Opacity",  "No Finding",   "Pleural Effusion",
      "Pleural Other",    "Pneumonia",        "Pneumothorax",  "Support Devices"};
  return names;
}

const std::vector<std::string>& nih_cxr14_findings() {
  static const std::vector<std::string> names = {"Atelectasis", "Cardiomegaly",      "Effusion",  "Infiltration", "Mass",
                                                 "Nodule",      "Pneumonia",         "Pneumothorax", "Consolidation",
                                                 "Edema",       "Emphysema",         "Fibrosis",  "Pleural_Thickening",
                                                 "Hernia"};
  return names;
}

const std::vector<std::string>& ct_rate_findings() {
  static const std::vector<std::string> names = {
      "Medical material",     "Arterial wall calcification", "Cardiomegaly",      "Pericardial effusion",
      "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy",   "Emphysema",
      "Atelectasis",          "Lung nodule",                 "Lung opacity",      "Pulmonary fibrotic sequela",
      "Pleural effusion",     "Mosaic attenuation pattern",  "Peribronchial thickening", "Consolidation",
      "Bronchiectasis",       "Interlobular septal thickening"};
  return names;
}

std::string hash_split(const std::string& patient_id, double val_fraction, double test_fraction, uint64_t seed) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, then mixed: stable across platforms and runs
  for (unsigned char ch : patient_id) h = (h ^ ch) * 1099511628211ull;
  const double u = static_cast<double>(splitmix64(h ^ splitmix64(seed)) >> 11) * 0x1.0p-53;
  if (u < test_fraction) return "test";
  if (u < test_fraction + val_fraction) return "val";
  return "train";
}

MEDVLP_REGISTER(dataset_registry(), "mimic_cxr", make_mimic_cxr);
MEDVLP_REGISTER(dataset_registry(), "chexpert", make_chexpert);
MEDVLP_REGISTER(dataset_registry(), "nih_cxr14", make_nih_cxr14);
MEDVLP_REGISTER(dataset_registry(), "rsna_pneumonia", make_rsna_pneumonia);
MEDVLP_REGISTER(dataset_registry(), "vindr_cxr", make_vindr_cxr);
MEDVLP_REGISTER(dataset_registry(), "ct_rate", make_ct_rate);

}  // namespace medvlp::data
