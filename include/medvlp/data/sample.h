#pragma once
// Sample and Batch: what datasets produce and what models and losses consume.

#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

namespace medvlp::data {

/// A lesion box in pixel coordinates of the sample's image, for localization.
struct Box {
  int64_t finding = 0;  // index into the finding list
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

/// One image-report pair as a dataset returns it (CPU tensors).
/// labels use the report convention: 1 present, 0 absent, -1 uncertain or unmentioned.
struct Sample {
  std::string id;
  std::string patient_id;
  at::Tensor image;           // [C,H,W] float, or [C,D,H,W] for volumes
  std::vector<double> spacing;  // mm per pixel along (D,)H,W when known, else empty
  std::string report;
  at::Tensor labels;          // [K] float, from the report
  at::Tensor truth;           // [K] float, image ground truth where known (synthetic data), else undefined
  at::Tensor anatomy_masks;   // [A,H,W] or [A,D,H,W] float in {0,1}, or undefined
  std::vector<Box> boxes;
  /// [K,H,W] or [K,D,H,W] float {0,1}, one channel per finding: its lesions' pixels/voxels where
  /// known (the CT phantoms' evaluation splits, a manifest's "lesions"), all zero for a finding
  /// without one; undefined otherwise. Localization scores maps against these before any boxes.
  at::Tensor lesion_masks;
};

/// A collated batch. Fields a dataset cannot fill stay undefined/empty.
struct Batch {
  std::vector<std::string> ids;
  std::vector<std::string> patient_ids;
  std::vector<std::string> reports;
  at::Tensor images;          // [B,C,H,W]
  at::Tensor token_ids;       // [B,L] int64
  at::Tensor attention_mask;  // [B,L] int64, 1 on real tokens
  at::Tensor labels;          // [B,K] float in {1,0,-1}
  at::Tensor truth;           // [B,K] float, or undefined
  at::Tensor anatomy_masks;   // [B,A,H,W] or [B,A,D,H,W], or undefined
  std::vector<std::vector<Box>> boxes;

  // Text identities for the losses that pair equal or normal descriptions (fVLM). Tensors, not
  // strings, so that they gather across ranks and travel through safetensors (`medvlp loss-check`).
  at::Tensor report_hash;        // [B] int64, text_hash() of the report
  at::Tensor report_normal;      // [B] float, 1 when the report states no abnormality
  at::Tensor anatomy_abnormal;   // [B,A] float, 1 when the report finds the anatomy abnormal
  at::Tensor anatomy_text_hash;  // [B,A] int64, text_hash() of the anatomy's sentences
  at::Tensor anatomy_normal;     // [B,A] float, 1 when those sentences are the normal template
  at::Tensor anatomy_described;  // [B,A] float, 1 when they are the report's own sentences (not a template)
  at::Tensor entity_disease;     // [B,E] int64 disease id of each entity text (MedFILIP)
  at::Tensor entity_mask;        // [B,E] float, 1 on real entities

  // Text units of the structured reports (data.report), tokenized by the loader; undefined unless a
  // configured loss reads them. Masks are 1 on real tokens / real units.
  at::Tensor anatomy_ids, anatomy_attention;    // [B,A,La] int64: each anatomy's text (fVLM, ASG)
  at::Tensor sentence_ids, sentence_attention;  // [B,S,Ls] int64: the report's sentences (AFLoc)
  at::Tensor sentence_mask;                     // [B,S] float
  at::Tensor entity_ids, entity_attention;      // [B,E,Le] int64: entity texts (MedFILIP)
  at::Tensor tags;                              // [B,T] float in {1,0,-1}: tag targets from the triplets (ASG)

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
  /// Every tensor field (defined or not), for code that treats them alike (device moves, pinning).
  std::vector<at::Tensor*> tensors();
  /// Moves the tensors to `device` (non-blocking from pinned memory on CUDA).
  Batch to(const c10::Device& device, bool non_blocking = false) const;
};

/// A stable 63-bit hash of normalized text (lower case, collapsed white space): equal texts, equal hashes.
int64_t text_hash(const std::string& text);

/// Stacks samples into a batch (images must share a shape); tokens are filled by the loader.
Batch collate(const std::vector<Sample>& samples);

}  // namespace medvlp::data
