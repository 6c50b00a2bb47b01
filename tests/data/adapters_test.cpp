// Dataset adapters on miniature replicas of each public dataset's layout, with the real column
// names, generated here. Also the CSV reader they share.
#include "medvlp/data/adapters.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/data/build.h"
#include "medvlp/data/manifest.h"
#include "medvlp/io/csv.h"
#include "medvlp/io/dicom.h"
#include "medvlp/io/files.h"
#include "medvlp/io/image.h"
#include "medvlp/io/nifti.h"

namespace medvlp::data {
namespace {

using testing_util::TempDir;

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

void write_image(const std::string& path, int64_t h = 24, int64_t w = 20) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  io::write_grey_png(path, torch::rand({1, h, w}), 8);
}

DatasetPtr build(const std::string& yaml, const std::string& split) {
  static std::vector<core::Config> keep;
  keep.push_back(core::Config::parse(yaml, "test.yaml"));
  return build_dataset(keep.back().root().at("data"), split);
}

const ManifestDataset& as_manifest(const DatasetPtr& ds) {
  const auto* m = dynamic_cast<const ManifestDataset*>(ds.get());
  EXPECT_NE(m, nullptr);
  return *m;
}

std::vector<std::string> ids(const DatasetPtr& ds) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < ds->size(); ++i) out.push_back(ds->get(i, 0).id);
  return out;
}

// Ids of a split, or none when the split came out empty (small replicas, hash splits).
std::vector<std::string> ids_of_split(const std::string& yaml, const std::string& split) {
  try {
    return ids(build(yaml, split));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no readable entries for split " + split), std::string::npos) << e.what();
    return {};
  }
}

TEST(Csv, QuotesLineBreaksBomAndGzip) {
  TempDir dir;
  const std::string text =
      "\xEF\xBB\xBFVolumeName,Findings_EN,Impressions_EN\r\n"
      "a.nii.gz,\"Nodule, 5 mm; \"\"stable\"\".\nSecond line.\",None\r\n"
      "\n"
      "b.nii.gz,,\"\"\n";
  write_text(dir.path() + "/t.csv", text);
  write_gzip(dir.path() + "/t.csv.gz", text);
  for (const std::string name : {"/t.csv", "/t.csv.gz"}) {
    const io::CsvTable t = io::read_csv(dir.path() + name);
    ASSERT_EQ(t.header, (std::vector<std::string>{"VolumeName", "Findings_EN", "Impressions_EN"}));
    ASSERT_EQ(t.rows.size(), 2u);
    EXPECT_EQ(t.rows[0][1], "Nodule, 5 mm; \"stable\".\nSecond line.");
    EXPECT_EQ(t.rows[1][0], "b.nii.gz");
    EXPECT_EQ(t.rows[1][2], "");
    EXPECT_EQ(t.lines[1], 5);
    EXPECT_EQ(t.column("Impressions_EN"), 2u);
    EXPECT_ERROR_CONTAINS(t.column("Findings"), "no column \"Findings\" (columns: VolumeName, Findings_EN");
  }
  write_text(dir.path() + "/open.csv", "a,b\n1,\"never closed\n");
  EXPECT_ERROR_CONTAINS(io::read_csv(dir.path() + "/open.csv"), "open.csv:2: unterminated quoted field");
  write_text(dir.path() + "/wide.csv", "a,b\n1,2\n1,2,3\n");
  EXPECT_ERROR_CONTAINS(io::read_csv(dir.path() + "/wide.csv"), "wide.csv:3: row has 3 fields but the header has 2");
  EXPECT_ERROR_CONTAINS(io::read_csv(dir.path() + "/none.csv"), "none.csv: cannot open CSV file");
}

TEST(Adapters, MimicCxrJpg) {
  TempDir dir;
  const std::string r = dir.path();
  write_gzip(r + "/mimic-cxr-2.0.0-metadata.csv.gz",
             "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
             "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
             "PatientOrientationCodeSequence_CodeMeaning\n"
             "d1,10000032,50414267,CHEST (PA AND LAT),PA,24,20,21800506,213014.531,CHEST (PA AND LAT),postero-anterior,Erect\n"
             "d2,10000032,50414267,CHEST (PA AND LAT),LATERAL,24,20,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect\n"
             "d3,10000764,57375967,CHEST (PORTABLE AP),AP,24,20,21321015,85607.39,CHEST (PORTABLE AP),antero-posterior,\n"
             "d4,11000011,51029426,CHEST (PORTABLE AP),AP,24,20,21840203,164720.015,CHEST (PORTABLE AP),antero-posterior,\n"
             "d5,12000022,52000000,CHEST (PA AND LAT),PA,24,20,21840203,164720.015,CHEST (PA AND LAT),postero-anterior,\n");
  write_gzip(r + "/mimic-cxr-2.0.0-split.csv.gz",
             "dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\nd2,50414267,10000032,train\n"
             "d3,57375967,10000764,train\nd4,51029426,11000011,validate\nd5,52000000,12000022,train\n");
  write_text(r + "/mimic-cxr-2.0.0-chexpert.csv",
             "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
             "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices\n"
             "10000032,50414267,,1.0,,,,,,,,-1.0,,,0.0,\n"
             "10000764,57375967,,,1.0,,,,,,,,,-1.0,,\n");
  for (const auto& [subject, study, dicom] : std::vector<std::array<std::string, 3>>{
           {"10000032", "50414267", "d1"}, {"10000764", "57375967", "d3"}, {"11000011", "51029426", "d4"}}) {
    const std::string d = r + "/files/p" + subject.substr(0, 2) + "/p" + subject + "/s" + study;
    io::make_directories(d);
    io::write_grey_png(d + "/" + dicom + ".jpg", torch::rand({1, 24, 20}));
    write_text(d + ".txt", "FINAL REPORT\n FINDINGS: study " + study + ".\n");
  }
  // d5's image is missing: skipped and counted.
  const std::string cfg = "data: {name: mimic_cxr, root: " + r + ", findings: [Cardiomegaly, Pleural Effusion, Pneumothorax]";
  const DatasetPtr train = build(cfg + "}", "train");
  EXPECT_EQ(ids(train), (std::vector<std::string>{"d1", "d3"}));  // lateral d2 left out
  EXPECT_EQ(as_manifest(train).skipped(), 1);
  const Sample s = train->get(0, 0);
  EXPECT_EQ(s.patient_id, "10000032");
  EXPECT_NE(s.report.find("FINDINGS: study 50414267."), std::string::npos);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 24, 20}));
  EXPECT_TRUE(s.labels.equal(torch::tensor({1.f, -1.f, 0.f})));
  EXPECT_TRUE(build(cfg + ", uncertain: ones}", "train")->get(0, 0).labels.equal(torch::tensor({1.f, 1.f, 0.f})));
  EXPECT_EQ(ids(build(cfg + "}", "val")), (std::vector<std::string>{"d4"}));
  EXPECT_ERROR_CONTAINS(build(cfg + ", missing: fail}", "train"), "d5.jpg does not exist");
  EXPECT_ERROR_CONTAINS(build("data: {name: mimic_cxr, root: " + r + ", findings: [Pneumonitis]}", "train"),
                        "\"Pneumonitis\" is not a label of this dataset");
  // MIMIC-CXR-JPG without the separate report archive: a clear error, or images and labels alone.
  EXPECT_ERROR_CONTAINS(build(cfg + ", reports: " + r + "/elsewhere}", "train"),
                        "reports: none of the first 3 reports exists");
  const DatasetPtr no_reports = build(cfg + ", reports: none}", "train");
  EXPECT_EQ(ids(no_reports), (std::vector<std::string>{"d1", "d3"}));
  EXPECT_EQ(no_reports->get(0, 0).report, "");
  EXPECT_TRUE(no_reports->get(0, 0).labels.equal(s.labels));
}

TEST(Adapters, CheXpert) {
  TempDir dir;
  const std::string r = dir.path() + "/CheXpert-v1.0-small";
  const std::string header =
      "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
      "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,"
      "Support Devices\n";
  write_text(r + "/train.csv",
             header +
                 "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0\n"
                 "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,,,1.0,\n"
                 "CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg,Female,87,Lateral,,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,,,1.0,\n");
  write_text(r + "/valid.csv", header + "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n");
  write_image(r + "/train/patient00001/study1/view1_frontal.jpg");
  write_image(r + "/train/patient00002/study2/view1_frontal.jpg");
  write_image(r + "/valid/patient64541/study1/view1_frontal.jpg");
  const std::string cfg = "data: {name: chexpert, root: " + r + ", findings: [Edema, Cardiomegaly, Fracture]";
  const DatasetPtr train = build(cfg + "}", "train");
  ASSERT_EQ(train->size(), 2);
  const Sample s = train->get(1, 0);
  EXPECT_EQ(s.patient_id, "patient00002");
  EXPECT_TRUE(s.labels.equal(torch::tensor({-1.f, -1.f, 1.f})));
  EXPECT_TRUE(build(cfg + ", uncertain: zeros}", "train")->get(1, 0).labels.equal(torch::tensor({0.f, 0.f, 1.f})));
  EXPECT_EQ(build(cfg + ", views: []}", "train")->size(), 3 - 1);  // all views, but the lateral file is missing
  const DatasetPtr test = build(cfg + "}", "test");  // no test.csv: valid.csv
  ASSERT_EQ(test->size(), 1);
  EXPECT_TRUE(test->get(0, 0).labels.equal(torch::tensor({0.f, 1.f, 0.f})));
  // A copy under another folder name: the CSV paths still begin with "CheXpert-v1.0-small/".
  std::filesystem::copy(r, dir.path() + "/chexpert-copy", std::filesystem::copy_options::recursive);
  const DatasetPtr moved = build("data: {name: chexpert, root: " + dir.path() + "/chexpert-copy, findings: [Edema]}", "train");
  ASSERT_EQ(moved->size(), 2);
  EXPECT_EQ(moved->get(0, 0).image.sizes(), s.image.sizes());
}

TEST(Adapters, NihChestXray14) {
  TempDir dir;
  const std::string r = dir.path();
  write_text(r + "/Data_Entry_2017.csv",
             "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
             "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
             "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
             "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,\n"
             "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,\n"
             "00000003_000.png,Infiltration|Effusion,0,3,74,F,PA,2500,2048,0.168,0.168,\n"
             "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168,\n");
  write_text(r + "/BBox_List_2017.csv",
             "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
             "00000003_000.png,Infiltrate,10.5,4.25,6,8,,,\n"
             "00000003_000.png,Effusion,1,2,3,4,,,\n");
  write_text(r + "/train_val_list.txt", "00000001_000.png\n00000001_001.png\n00000002_000.png\n00000003_000.png\n");
  write_text(r + "/test_list.txt", "00000004_000.png\n");
  write_image(r + "/images_001/images/00000001_000.png");
  write_image(r + "/images_001/images/00000001_001.png");
  write_image(r + "/images_002/images/00000002_000.png");
  write_image(r + "/images_002/images/00000003_000.png");
  write_image(r + "/images_012/images/00000004_000.png");
  const std::string cfg = "data: {name: nih_cxr14, root: " + r;
  // val_fraction 0 keeps every train_val patient in train.
  const DatasetPtr train = build(cfg + ", val_fraction: 0}", "train");
  ASSERT_EQ(train->size(), 4);
  const auto& f = nih_cxr14_findings();
  auto label = [&](const Sample& s, const std::string& name) {
    return s.labels[std::find(f.begin(), f.end(), name) - f.begin()].item<float>();
  };
  const Sample s1 = train->get(1, 0);
  EXPECT_EQ(label(s1, "Cardiomegaly"), 1.f);
  EXPECT_EQ(label(s1, "Emphysema"), 1.f);
  EXPECT_EQ(label(s1, "Effusion"), 0.f);
  EXPECT_EQ(train->get(2, 0).labels.sum().item<float>(), 0.f);
  const Sample s3 = train->get(3, 0);
  ASSERT_EQ(s3.boxes.size(), 2u);
  EXPECT_EQ(f[static_cast<size_t>(s3.boxes[0].finding)], "Infiltration");
  EXPECT_FLOAT_EQ(s3.boxes[0].x0, 10.5f);
  EXPECT_FLOAT_EQ(s3.boxes[0].y1, 12.25f);
  EXPECT_EQ(ids(build(cfg + "}", "test")), (std::vector<std::string>{"00000004_000.png"}));
  // Patient-level split: both images of patient 1 land together.
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const std::string c = cfg + ", val_fraction: 0.5, split_seed: " + std::to_string(seed) + "}";
    auto tr = ids_of_split(c, "train"), va = ids_of_split(c, "val");
    EXPECT_EQ(tr.size() + va.size(), 4u);
    const bool a = std::count(tr.begin(), tr.end(), "00000001_000.png") > 0;
    const bool b = std::count(tr.begin(), tr.end(), "00000001_001.png") > 0;
    EXPECT_EQ(a, b) << seed;
  }
}

TEST(Adapters, RsnaPneumonia) {
  TempDir dir;
  const std::string r = dir.path();
  write_text(r + "/stage_2_train_labels.csv",
             "patientId,x,y,width,height,Target\n"
             "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n"
             "00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1\n"
             "00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1\n"
             "00704310-78a8-4b38-8475-49f4573b2dbb,323.0,577.0,160.0,104.0,1\n");
  for (const std::string id :
       {"0004cfab-14fd-4e49-80ba-63a80b6bddd6", "00436515-870c-4b36-a041-de91049b9ab4", "00704310-78a8-4b38-8475-49f4573b2dbb"}) {
    io::DicomWriteSpec spec;
    spec.values = torch::randint(0, 255, {32, 32}).to(torch::kFloat);
    spec.modality = "CR";
    spec.window_center = 128;
    spec.window_width = 256;
    io::make_directories(r + "/stage_2_train_images");
    io::write_dicom(r + "/stage_2_train_images/" + id + ".dcm", spec);
  }
  std::vector<std::string> all;
  for (const std::string split : {"train", "val", "test"}) {
    const auto got = ids_of_split("data: {name: rsna_pneumonia, root: " + r + ", val_fraction: 0.3, test_fraction: 0.3}", split);
    all.insert(all.end(), got.begin(), got.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), 3u) << "every patient in exactly one split";
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  const DatasetPtr ds = build("data: {name: rsna_pneumonia, root: " + r + ", val_fraction: 0, test_fraction: 0}", "train");
  ASSERT_EQ(ds->size(), 3);
  const Sample s = ds->get(1, 0);
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 32, 32}));
  EXPECT_EQ(s.labels.item<float>(), 1.f);
  ASSERT_EQ(s.boxes.size(), 2u);
  EXPECT_FLOAT_EQ(s.boxes[1].x1, 818.f);
  EXPECT_FLOAT_EQ(s.boxes[1].y1, 605.f);
  EXPECT_EQ(ds->get(0, 0).labels.item<float>(), 0.f);
  EXPECT_TRUE(ds->get(0, 0).boxes.empty());
}

TEST(Adapters, VinDrCxr) {
  TempDir dir;
  const std::string r = dir.path();
  const std::string labels =
      "Aortic enlargement,Atelectasis,Calcification,Cardiomegaly,Clavicle fracture,Consolidation,Edema,Emphysema,"
      "Enlarged PA,ILD,Infiltration,Lung Opacity,Lung cavity,Lung cyst,Mediastinal shift,Nodule/Mass,Pleural effusion,"
      "Pleural thickening,Pneumothorax,Pulmonary fibrosis,Rib fracture,Other lesion,COPD,Lung tumor,Pneumonia,"
      "Tuberculosis,Other diseases,No finding";
  auto row = [](const std::string& id, const std::string& rad, std::vector<int> on) {
    std::string s = id + (rad.empty() ? "" : "," + rad);
    for (int k = 0; k < 28; ++k) s += std::find(on.begin(), on.end(), k) != on.end() ? ",1" : ",0";
    return s + "\n";
  };
  write_text(r + "/annotations/image_labels_train.csv",
             "image_id,rad_id," + labels + "\n" + row("img1", "R8", {3}) + row("img1", "R9", {3, 16}) +
                 row("img1", "R10", {3}) + row("img2", "R8", {27}) + row("img2", "R9", {27}) + row("img2", "R10", {27}));
  // The published test table spells one column differently ("Other disease").
  std::string test_labels = labels;
  test_labels.replace(test_labels.find("Other diseases"), 14, "Other disease");
  write_text(r + "/annotations/image_labels_test.csv", "image_id," + test_labels + "\n" + row("img3", "", {16, 26}));
  write_text(r + "/annotations/annotations_train.csv",
             "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
             "img1,R8,Cardiomegaly,691.0,1375.0,1653.0,1831.0\n"
             "img1,R9,Pleural effusion,10.0,20.0,30.0,40.0\n"
             "img2,R8,No finding,,,,\n");
  for (const std::string& p : {r + "/train/img1.dicom", r + "/train/img2.dicom", r + "/test/img3.dicom"}) {
    io::DicomWriteSpec spec;
    spec.values = torch::rand({16, 16}) * 1000;
    spec.modality = "DX";
    io::make_directories(std::filesystem::path(p).parent_path().string());
    io::write_dicom(p, spec);
  }
  const std::string cfg = "data: {name: vindr_cxr, root: " + r + ", val_fraction: 0, findings: [Cardiomegaly, Pleural effusion]";
  const DatasetPtr train = build(cfg + "}", "train");
  ASSERT_EQ(train->size(), 2);
  const Sample s = train->get(0, 0);
  EXPECT_TRUE(s.labels.equal(torch::tensor({1.f, 0.f}))) << "effusion: 1 of 3 radiologists";
  EXPECT_EQ(s.boxes.size(), 2u);
  EXPECT_TRUE(build(cfg + ", vote: any}", "train")->get(0, 0).labels.equal(torch::tensor({1.f, 1.f})));
  EXPECT_TRUE(build(cfg + "}", "test")->get(0, 0).labels.equal(torch::tensor({0.f, 1.f})));
  // One name for the column both tables spell differently: the same findings list reads both splits.
  const std::string other = "data: {name: vindr_cxr, root: " + r + ", val_fraction: 0, findings: [Pleural effusion, Other diseases]}";
  EXPECT_TRUE(build(other, "test")->get(0, 0).labels.equal(torch::tensor({1.f, 1.f})));
  EXPECT_TRUE(build(other, "train")->get(1, 0).labels.equal(torch::tensor({0.f, 0.f})));
  EXPECT_EQ(build(cfg.substr(0, cfg.find(", findings")) + "}", "test")->findings(),
            build(cfg.substr(0, cfg.find(", findings")) + "}", "train")->findings());
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{1, 16, 16}));
}

TEST(Adapters, CtRate) {
  TempDir dir;
  const std::string r = dir.path() + "/dataset";
  const auto& f = ct_rate_findings();
  std::string label_header = "VolumeName";
  for (const auto& n : f) label_header += "," + n;
  write_text(r + "/radiology_text_reports/train_reports.csv",
             "VolumeName,ClinicalInformation_EN,Technique_EN,Findings_EN,Impressions_EN\n"
             "train_1_a_1.nii.gz,Cough.,\"Non-contrast, 1 mm.\",\"Trachea is normal. A 5 mm nodule, right lung.\","
             "\"Nodule.\"\n"
             "train_2_a_1.nii.gz,,,No effusion.,Normal.\n");
  write_text(r + "/radiology_text_reports/validation_reports.csv",
             "VolumeName,ClinicalInformation_EN,Technique_EN,Findings_EN,Impressions_EN\nvalid_1_a_1.nii.gz,,,Clear.,Normal.\n");
  std::string l1 = "train_1_a_1.nii.gz", l2 = "train_2_a_1.nii.gz", l3 = "valid_1_a_1.nii.gz";
  for (size_t k = 0; k < f.size(); ++k) {
    l1 += f[k] == "Lung nodule" ? ",1" : ",0";
    l2 += ",0";
    l3 += f[k] == "Cardiomegaly" ? ",1" : ",0";
  }
  write_text(r + "/multi_abnormality_labels/train_predicted_labels.csv", label_header + "\n" + l1 + "\n" + l2 + "\n");
  write_text(r + "/multi_abnormality_labels/valid_predicted_labels.csv", label_header + "\n" + l3 + "\n");
  const std::string meta_header =
      "VolumeName,Manufacturer,SeriesDescription,ManufacturerModelName,PatientSex,PatientAge,ReconstructionDiameter,"
      "XYSpacing,ZSpacing,RescaleIntercept,RescaleSlope,RescaleType,NumberofSlices,Rows,Columns\n";
  write_text(r + "/metadata/train_metadata.csv",
             meta_header + "train_1_a_1.nii.gz,SIEMENS,Lung,Somatom,M,063Y,350.0,\"[0.75, 0.8]\",1.5,-1024,1,HU,6,8,10\n" +
                 "train_2_a_1.nii.gz,SIEMENS,Lung,Somatom,F,055Y,350.0,\"[0.7, 0.7]\",2.0,-1024,1,HU,6,8,10\n");
  write_text(r + "/metadata/validation_metadata.csv",
             meta_header + "valid_1_a_1.nii.gz,PHILIPS,Lung,Ingenuity,F,041Y,350.0,\"[0.6, 0.6]\",1.0,-1024,1,HU,6,8,10\n");
  // Volumes store raw values (HU + 1024) with a unit-spacing header, as in CT-RATE's first release.
  const at::Tensor hu = torch::arange(6 * 8 * 10, torch::kFloat).view({6, 8, 10}) - 200;
  for (const std::string v : {"train/train_1/train_1_a/train_1_a_1.nii.gz", "valid/valid_1/valid_1_a/valid_1_a_1.nii.gz"}) {
    io::Volume vol;
    vol.data = hu + 1024;
    vol.affine = io::diagonal_affine({1, 1, 1});
    io::make_directories(std::filesystem::path(r + "/" + v).parent_path().string());
    io::write_nifti(r + "/" + v, vol, "int16");
  }
  // train_2's volume is missing.
  const std::string cfg = "data: {name: ct_rate, root: " + r + ", val_fraction: 0";
  const DatasetPtr train = build(cfg + "}", "train");
  ASSERT_EQ(train->size(), 1);
  EXPECT_EQ(as_manifest(train).skipped(), 1);
  const Sample s = train->get(0, 0);
  EXPECT_EQ(s.patient_id, "train_1");
  EXPECT_EQ(s.report, "FINDINGS: Trachea is normal. A 5 mm nodule, right lung. IMPRESSION: Nodule.");
  EXPECT_TRUE(s.image[0].equal(hu));
  EXPECT_EQ(s.spacing, (std::vector<double>{1.5, 0.75, 0.8}));
  EXPECT_EQ(s.labels[std::find(f.begin(), f.end(), "Lung nodule") - f.begin()].item<float>(), 1.f);
  EXPECT_EQ(s.labels.sum().item<float>(), 1.f);
  const DatasetPtr test = build(cfg + "}", "test");
  ASSERT_EQ(test->size(), 1);
  EXPECT_EQ(test->get(0, 0).spacing, (std::vector<double>{1.0, 0.6, 0.6}));
  // Without the metadata the header decides.
  EXPECT_TRUE(build(cfg + ", use_metadata: false}", "train")->get(0, 0).image[0].equal(hu + 1024));
  // A resample step then works in millimetres.
  const DatasetPtr resampled = build(cfg + ", transforms: [{name: resample, spacing: [3.0, 1.5, 1.6]}]}", "train");
  EXPECT_EQ(resampled->get(0, 0).image.sizes(), (std::vector<int64_t>{1, 3, 4, 5}));
  // The current release: volumes under train_fixed/, header-scaled to HU (scl_inter -1024), read in
  // preference to train/; the metadata's rescale is not applied a second time.
  const std::string fixed = "train_fixed/train_1/train_1_a/train_1_a_1.nii.gz";
  io::Volume scaled;
  scaled.data = hu;
  scaled.affine = io::diagonal_affine({1, 1, 1});
  io::make_directories(std::filesystem::path(r + "/" + fixed).parent_path().string());
  io::write_nifti(r + "/" + fixed, scaled, "int16", 1.0, -1024.0);
  ASSERT_TRUE(io::nifti_rescales(r + "/" + fixed));
  EXPECT_FALSE(io::nifti_rescales(r + "/train/train_1/train_1_a/train_1_a_1.nii.gz"));
  const Sample f1 = build(cfg + "}", "train")->get(0, 0);
  EXPECT_TRUE(f1.image[0].equal(hu)) << "header-scaled HU, not rescaled again: min " << f1.image.min().item<float>();
  EXPECT_EQ(f1.spacing, (std::vector<double>{1.5, 0.75, 0.8}));
  // volumes: original reads the first release's folder even when the fixed one is there.
  std::filesystem::remove(r + "/train/train_1/train_1_a/train_1_a_1.nii.gz");
  EXPECT_ERROR_CONTAINS(build(cfg + ", volumes: original}", "train"), "no readable entries for split train");
  EXPECT_EQ(build(cfg + ", volumes: fixed}", "train")->size(), 1);
}

}  // namespace
}  // namespace medvlp::data
