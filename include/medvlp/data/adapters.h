#pragma once
// Adapters that read public chest imaging datasets in the layout their publishers ship, unchanged.
//
// Each is a `data.name` in configs (see docs/data.md for every key):
//   mimic_cxr       MIMIC-CXR-JPG 2.0: metadata / split / chexpert (or negbio) CSVs (.csv or .csv.gz),
//                   files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg, reports from MIMIC-CXR's files/.../sSTUDY.txt
//   chexpert        CheXpert: train.csv / valid.csv (/ test.csv) with Path columns
//   nih_cxr14       NIH ChestX-ray14: Data_Entry_2017.csv, BBox_List_2017.csv, train_val_list.txt, test_list.txt,
//                   images/ or images_NNN/images/
//   rsna_pneumonia  RSNA Pneumonia Detection: stage_2_train_labels.csv (boxes), stage_2_train_images/*.dcm
//   vindr_cxr       VinDr-CXR: annotations/{image_labels,annotations}_{train,test}.csv, {train,test}/*.dicom
//   ct_rate         CT-RATE: radiology_text_reports/, multi_abnormality_labels/, metadata/ CSVs,
//                   {train,valid}/<patient>/<scan>/<volume>.nii.gz
// Datasets without an official split of their labelled images (validation for MIMIC-less sets,
// RSNA's test) split by a hash of the patient id, so a patient never straddles two splits.

#include <cstdint>
#include <string>
#include <vector>

namespace medvlp::data {

/// The label columns of the CheXpert labeller (CheXpert and MIMIC-CXR), in file order.
const std::vector<std::string>& chexpert_findings();
/// NIH ChestX-ray14's fourteen findings, as its Finding Labels column spells them.
const std::vector<std::string>& nih_cxr14_findings();
/// CT-RATE's eighteen multi-abnormality labels, as its label CSV's header spells them.
const std::vector<std::string>& ct_rate_findings();

/// Which split a patient falls in when a dataset has none: a stable hash of `patient_id` and
/// `seed` compared with the fractions. Returns "train", "val" or "test".
std::string hash_split(const std::string& patient_id, double val_fraction, double test_fraction, uint64_t seed = 0);

}  // namespace medvlp::data
