// DICOM CT slices through DCMTK: Hounsfield units, lung windowing, metadata and series ordering.
//
// Per slice (read_dicom_slice):
//   HU = stored_value * RescaleSlope (0028,1053) + RescaleIntercept (0028,1052)   (defaults 1 and 0)
//   stored_value: BitsAllocated 8 or 16, the BitsStored bits ending at HighBit, sign-extended when
//   PixelRepresentation is 1. One sample per pixel (MONOCHROME1/2); the first frame of a multi-frame object.
//   Compressed transfer syntaxes (JPEG baseline/lossless, JPEG-LS, RLE) are decoded through DCMTK's codecs.
//   The HU image stays physical for MONOCHROME1 too (a photometric interpretation is a display rule).
//   Window to 8 bits (window_to_u8): t = (HU - (level - width/2)) / width, clamped to [0,1], v = round(255 t);
//   MONOCHROME1 inverts the windowed value (255 - v), so air is dark in every output.
//   Slice position along the patient axis: ImagePositionPatient (0020,0032) · (row × column direction of
//   ImageOrientationPatient (0020,0037)); else SliceLocation (0020,1041); else InstanceNumber (0020,0013).
//
// Per series (read_dicom_series): every regular file of a folder (not hidden, not DICOMDIR) is read; unreadable
// files, several SeriesInstanceUIDs or several slice sizes are errors that list them. Slices are ordered by
// position (ties by InstanceNumber, then file name). Gaps larger than 1.5x the median spacing and duplicate
// positions are counted as warnings, not errors.
//
// Built without DCMTK (CTDET_WITH_DICOM=0), read_dicom_slice / read_dicom_series throw ctdet::Error
// "built without DICOM support". window_to_u8 and order_dicom_slices work either way.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"

namespace ctdet {

struct DicomOptions {
  double window_level = -600;  // lung window (ecosystem.md §2.6)
  double window_width = 1500;
  bool keep_hu = true;         // false: DicomSlice::hu is left empty (saves memory when only the 8-bit is used)
};

enum class SlicePositionSource { kNone, kImagePosition, kSliceLocation, kInstanceNumber };
const char* slice_position_source_name(SlicePositionSource s);

struct DicomMeta {
  std::string patient_id, study_uid, series_uid, sop_instance_uid, study_date, modality;
  std::string photometric;       // "MONOCHROME1" / "MONOCHROME2"
  int rows = 0, columns = 0;
  int instance_number = 0;       // 0 when absent
  double rescale_slope = 1, rescale_intercept = 0;
  double pixel_spacing[2] = {0, 0};                  // (row spacing, column spacing) in mm; 0 when absent
  double orientation[6] = {1, 0, 0, 0, 1, 0};        // row direction cosines, column direction cosines
  double position[3] = {0, 0, 0};                    // ImagePositionPatient (mm)
  bool has_orientation = false, has_position = false;
  double slice_position = 0;                          // see the header comment
  SlicePositionSource position_source = SlicePositionSource::kNone;
};

struct DicomSlice {
  std::string path;
  DicomMeta meta;
  int width = 0, height = 0;
  std::vector<float> hu;  // (height, width) Hounsfield units, row-major; empty when !keep_hu
  Image windowed;         // 8-bit, 1 channel, (height, width): the window of DicomOptions
};

struct DicomSeries {
  std::string dir;
  std::vector<DicomSlice> slices;  // ordered by slice_position (ascending)
  double median_spacing = 0;       // median |position difference| between neighbours (0 with < 2 slices)
  int gaps = 0;                    // neighbour distances over 1.5x the median spacing (missing slices)
  int duplicate_positions = 0;     // neighbours at the same position
  std::vector<std::string> warnings;  // one line per gap / duplicate, naming the files
};

// The lung-window mapping of one HU value (header comment), inverted for MONOCHROME1.
inline uint8_t window_to_u8(double hu, double level, double width, bool invert = false) {
  double t = (hu - (level - width / 2)) / width;
  t = t < 0 ? 0 : (t > 1 ? 1 : t);
  int v = int(std::lround(t * 255.0));
  return uint8_t(invert ? 255 - v : v);
}

// Throws ctdet::Error naming the file for unreadable / unsupported objects (no pixel data, colour, > 16 bits).
DicomSlice read_dicom_slice(const std::string& path, const DicomOptions& opt = {});
DicomSeries read_dicom_series(const std::string& dir, const DicomOptions& opt = {});

// Series checks and ordering on already-read slices (what read_dicom_series does after reading).
// `where` names the series in messages.
DicomSeries order_dicom_slices(std::vector<DicomSlice> slices, const std::string& where);

}  // namespace ctdet
