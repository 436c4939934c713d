// CT phantom generator behind `ctdet synth`: axial chest-CT-like slices in Hounsfield-like values with
// lesions drawn by construction, so the boxes (and areas) are exact. Deterministic for a seed: every
// random number comes from a SplitMix64 stream seeded from (seed, slice index), never from std:: distributions
// (their output differs between standard libraries).
//
// Anatomy (HU): air -1000, subcutaneous fat -100, soft tissue 40, lungs -850 (slightly denser posteriorly),
// vessels +40 (branching trees from each hilum plus small cross-sections), heart/aorta 40-45, vertebra and
// ribs +700 cortex / +250 marrow, Gaussian noise sigma 10 HU.
// Lesions, always clipped to the lung mask:
//   GGO      hazy, target -500..-300, soft edge; ADDS density to the parenchyma but never darkens what is
//            denser than its target, so vessels stay visible through it (partly transparent)
//   CD       dense, target 0..+40, sharp-ish edge, hides vessels; 0-2 air bronchograms (dark lines, -900)
//   GGO+CD   a CD core (0.55 of the radius) inside a GGO halo
// A lesion's extent (its "support") is every lung pixel where its weight is > 0; the box is the support's
// bounding box with exclusive x2/y2 (the Box convention of io/annotations.h), area = support pixel count.
// Display: lung window level -600, width 1500: v = round(clamp((HU + 1350) / 1500, 0, 1) * 255).
//
// Dataset layout written by write_synth_dataset:
//   <out>/images/slice_00000.png ...     8-bit gray PNG, lung window
//   <out>/via_regions.csv                VIA 2.x CSV (faster_rcnn_spec.md §12.1), rect regions, region
//                                        attribute {"lesion": "GGO" | "CD" | "GGO+CD"}, file attribute
//                                        {"patient_id": "P000"} when patients > 0 (else {}), lesion-free
//                                        slices as one row with region_count 0, region_id 0, "{}","{}".
// Series layout (write_synth_series): one patient, S studies, the same K slice positions in each:
//   <out>/manifest.json                   all studies
//   <out>/study_00_2020-03-02/slice_000.png ..., via_regions.csv, manifest.json (that study)
// Each lesion has a trajectory: "grow" (scale 0.6 -> 1.2), "shrink" (1.2 -> 0.6), or "vanish" (1.0 shrinking,
// absent from the last study). The manifest gives per study its date, each lesion's true area in pixels and
// box, and area totals per lung zone: side "right"/"left" is the PATIENT's side (radiological convention:
// the patient's right lung is on the image left), and upper/middle/lower is the third of the slice stack
// (slice position z in [0,1], apex to base) the slice lies in.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/annotations.h"
#include "io/image.h"

namespace ctdet {

// Small deterministic RNG (SplitMix64) with hand-written uniform / normal.
struct SynthRng {
  uint64_t state;
  explicit SynthRng(uint64_t seed) : state(seed) {}
  uint64_t next();
  double uniform();                      // [0, 1)
  double uniform(double lo, double hi);  // [lo, hi)
  int below(int n);                      // 0..n-1
  double normal();                       // Box-Muller
};
uint64_t synth_mix_seed(uint64_t a, uint64_t b);

enum SynthLabel { kSynthGGO = 1, kSynthCD = 2, kSynthMixed = 3 };  // matches default_class_names()

// One lesion to draw. Geometry in normalised slice coordinates: u, v in [-1, 1] (x right, y down).
struct LesionSpec {
  int label = kSynthGGO;
  double cx = 0, cy = 0;   // centre
  double rx = 0.1, ry = 0.1, theta = 0;
  double scale = 1.0;      // growth factor applied to rx, ry (series mode)
  double target_hu = -400; // GGO / halo target; CD uses cd_hu
  double cd_hu = 20;
  uint64_t shape_seed = 0; // lobulation, texture, bronchograms
  std::string id;          // optional, series mode
};

struct SliceSpec {
  int size = 512;
  uint64_t anatomy_seed = 1;  // body and lung shape (one per patient)
  double z = 0.5;             // slice position, 0 apex .. 1 base
  uint64_t detail_seed = 1;   // vessels
  uint64_t noise_seed = 1;    // pixel noise (separate, so lesions can be compared on identical noise)
  std::vector<LesionSpec> lesions;
};

struct SynthLesion {
  int label = 0;
  Box box;              // exact support bounding box, x2/y2 exclusive; box.label = label
  int64_t area_px = 0;  // support pixels (inside the lung)
  bool patient_left = false;  // centroid on the image right half
  std::string id;
};

struct SynthSlice {
  int size = 0;
  std::vector<float> hu;        // (size, size)
  std::vector<uint8_t> lung;    // (size, size) 1 inside the lung mask
  std::vector<int16_t> lesion;  // (size, size) 0 none, k = index + 1 into lesions
  std::vector<SynthLesion> lesions;  // lesions with a non-empty support, in spec order
  Image window8() const;        // lung window -> 8-bit gray
};

uint8_t lung_window_u8(float hu);
SynthSlice render_slice(const SliceSpec& spec);

struct SynthOptions {
  std::string out;
  int count = 10;                  // dataset: images; series: slices per study
  int size = 512;
  uint64_t seed = 1;
  double negatives_fraction = 0.2; // exactly round(f * count) slices are lesion-free
  int patients = 0;                // 0: no patient grouping (file_attributes {})
  bool force = false;              // allow writing into a non-empty --out
  int studies = 4;                 // series mode
  std::string attribute = "lesion";
  std::function<void(int done, int total)> progress;  // optional
};

// Which dataset slices are lesion-free: exactly round(negatives_fraction * count), chosen by a seeded shuffle.
std::vector<uint8_t> synth_negative_flags(const SynthOptions& opt);
// The spec of dataset slice `index` (what write_synth_dataset renders), for tests and tools.
SliceSpec synth_dataset_spec(const SynthOptions& opt, int index, bool negative);
std::string synth_patient_id(const SynthOptions& opt, int index);  // "" when patients == 0

struct SynthSummary {
  int images = 0, negatives = 0;
  int per_class[4] = {0, 0, 0, 0};  // index = label
  std::string csv_path, manifest_path;
};
// Throw ctdet::Error if opt.out exists, is non-empty and opt.force is false, or on bad options.
SynthSummary write_synth_dataset(const SynthOptions& opt);
SynthSummary write_synth_series(const SynthOptions& opt);

// One VIA 2.x CSV field holding JSON: quotes doubled, wrapped in quotes.
std::string via_csv_json_field(const std::string& json);

}  // namespace ctdet
