#include "io/dicom.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>

#include "nn/error.h"

#if CTDET_WITH_DICOM
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#endif

namespace ctdet {

const char* slice_position_source_name(SlicePositionSource s) {
  switch (s) {
    case SlicePositionSource::kImagePosition: return "ImagePositionPatient";
    case SlicePositionSource::kSliceLocation: return "SliceLocation";
    case SlicePositionSource::kInstanceNumber: return "InstanceNumber";
    default: return "none";
  }
}

// ---- series ordering (no DCMTK needed) -------------------------------------------------------------
DicomSeries order_dicom_slices(std::vector<DicomSlice> slices, const std::string& where) {
  DicomSeries s;
  s.dir = where;
  CTDET_CHECK(!slices.empty(), "DICOM series '", where, "': no slices");

  // Mixed series: list each SeriesInstanceUID with its count and one file.
  std::map<std::string, std::pair<int, std::string>> series;
  for (auto& sl : slices) {
    auto& e = series[sl.meta.series_uid];
    if (e.first++ == 0) e.second = sl.path;
  }
  if (series.size() > 1) {
    std::string list;
    for (auto& [uid, e] : series)
      list += str("\n  SeriesInstanceUID '", uid, "': ", e.first, " file(s), e.g. '", e.second, "'");
    CTDET_FAIL("DICOM series '", where, "': the folder mixes ", series.size(), " series:", list);
  }
  // Mixed sizes.
  std::map<std::pair<int, int>, std::pair<int, std::string>> sizes;
  for (auto& sl : slices) {
    auto& e = sizes[{sl.width, sl.height}];
    if (e.first++ == 0) e.second = sl.path;
  }
  if (sizes.size() > 1) {
    std::string list;
    for (auto& [wh, e] : sizes)
      list += str("\n  ", wh.first, "x", wh.second, ": ", e.first, " file(s), e.g. '", e.second, "'");
    CTDET_FAIL("DICOM series '", where, "': slices of different sizes:", list);
  }

  std::stable_sort(slices.begin(), slices.end(), [](const DicomSlice& a, const DicomSlice& b) {
    if (a.meta.slice_position != b.meta.slice_position) return a.meta.slice_position < b.meta.slice_position;
    if (a.meta.instance_number != b.meta.instance_number) return a.meta.instance_number < b.meta.instance_number;
    return a.path < b.path;
  });
  const size_t n = slices.size();
  if (n >= 2) {
    std::vector<double> d(n - 1);
    for (size_t i = 0; i + 1 < n; ++i) d[i] = slices[i + 1].meta.slice_position - slices[i].meta.slice_position;
    std::vector<double> sorted = d;
    std::sort(sorted.begin(), sorted.end());
    const size_t m = sorted.size();
    s.median_spacing = m % 2 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
    for (size_t i = 0; i + 1 < n; ++i) {
      if (d[i] == 0) {
        ++s.duplicate_positions;
        s.warnings.push_back(str("duplicate slice position ", slices[i].meta.slice_position, ": '", slices[i].path,
                                 "' and '", slices[i + 1].path, "'"));
      } else if (s.median_spacing > 0 && d[i] > 1.5 * s.median_spacing) {
        ++s.gaps;
        s.warnings.push_back(str("gap of ", d[i], " mm (median spacing ", s.median_spacing, ") between '",
                                 slices[i].path, "' and '", slices[i + 1].path, "': missing slice(s)?"));
      }
    }
  }
  s.slices = std::move(slices);
  return s;
}

#if CTDET_WITH_DICOM
namespace {

void register_codecs_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

std::string get_string(DcmDataset* ds, const DcmTagKey& tag) {
  OFString v;
  if (ds->findAndGetOFString(tag, v).good()) {
    std::string s = v.c_str();
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
  }
  return "";
}

// Reads `count` values of a DS/IS element; false when absent or shorter.
bool get_doubles(DcmDataset* ds, const DcmTagKey& tag, double* out, int count) {
  for (int i = 0; i < count; ++i) {
    Float64 v = 0;
    if (!ds->findAndGetFloat64(tag, v, unsigned(i)).good()) return false;
    out[i] = v;
  }
  return true;
}

}  // namespace

DicomSlice read_dicom_slice(const std::string& path, const DicomOptions& opt) {
  register_codecs_once();
  DcmFileFormat ff;
  OFCondition st = ff.loadFile(path.c_str());
  CTDET_CHECK(st.good(), "DICOM '", path, "': cannot read: ", st.text());
  DcmDataset* ds = ff.getDataset();
  CTDET_CHECK(ds != nullptr, "DICOM '", path, "': no dataset");

  DicomSlice out;
  out.path = path;
  DicomMeta& m = out.meta;
  m.patient_id = get_string(ds, DCM_PatientID);
  m.study_uid = get_string(ds, DCM_StudyInstanceUID);
  m.series_uid = get_string(ds, DCM_SeriesInstanceUID);
  m.sop_instance_uid = get_string(ds, DCM_SOPInstanceUID);
  m.study_date = get_string(ds, DCM_StudyDate);
  m.modality = get_string(ds, DCM_Modality);
  m.photometric = get_string(ds, DCM_PhotometricInterpretation);

  Uint16 rows = 0, cols = 0, bits_alloc = 0, bits_stored = 0, high_bit = 0, pixrep = 0, spp = 1;
  CTDET_CHECK(ds->findAndGetUint16(DCM_Rows, rows).good() && rows > 0, "DICOM '", path, "': missing Rows");
  CTDET_CHECK(ds->findAndGetUint16(DCM_Columns, cols).good() && cols > 0, "DICOM '", path, "': missing Columns");
  CTDET_CHECK(ds->findAndGetUint16(DCM_BitsAllocated, bits_alloc).good(), "DICOM '", path,
              "': missing BitsAllocated");
  if (!ds->findAndGetUint16(DCM_BitsStored, bits_stored).good()) bits_stored = bits_alloc;
  if (!ds->findAndGetUint16(DCM_HighBit, high_bit).good()) high_bit = Uint16(bits_stored - 1);
  ds->findAndGetUint16(DCM_PixelRepresentation, pixrep);
  ds->findAndGetUint16(DCM_SamplesPerPixel, spp);
  CTDET_CHECK(spp == 1, "DICOM '", path, "': SamplesPerPixel ", spp, " (only grayscale CT is supported)");
  CTDET_CHECK(m.photometric.empty() || m.photometric == "MONOCHROME1" || m.photometric == "MONOCHROME2", "DICOM '",
              path, "': PhotometricInterpretation '", m.photometric, "' (need MONOCHROME1 or MONOCHROME2)");
  CTDET_CHECK(bits_alloc == 8 || bits_alloc == 16, "DICOM '", path, "': BitsAllocated ", bits_alloc,
              " (need 8 or 16)");
  CTDET_CHECK(bits_stored >= 1 && bits_stored <= bits_alloc && high_bit < bits_alloc && high_bit + 1 >= bits_stored,
              "DICOM '", path, "': inconsistent BitsStored ", bits_stored, " / HighBit ", high_bit,
              " for BitsAllocated ", bits_alloc);
  m.rows = rows;
  m.columns = cols;
  out.height = rows;
  out.width = cols;

  Sint32 inst = 0;
  if (ds->findAndGetSint32(DCM_InstanceNumber, inst).good()) m.instance_number = int(inst);
  else {
    std::string s = get_string(ds, DCM_InstanceNumber);
    if (!s.empty()) m.instance_number = std::atoi(s.c_str());
  }
  double v = 0;
  if (get_doubles(ds, DCM_RescaleSlope, &v, 1)) m.rescale_slope = v;
  if (get_doubles(ds, DCM_RescaleIntercept, &v, 1)) m.rescale_intercept = v;
  get_doubles(ds, DCM_PixelSpacing, m.pixel_spacing, 2);
  m.has_orientation = get_doubles(ds, DCM_ImageOrientationPatient, m.orientation, 6);
  m.has_position = get_doubles(ds, DCM_ImagePositionPatient, m.position, 3);
  if (m.has_position && m.has_orientation) {
    const double* r = m.orientation;
    const double* c = m.orientation + 3;
    const double nrm[3] = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]};
    m.slice_position = nrm[0] * m.position[0] + nrm[1] * m.position[1] + nrm[2] * m.position[2];
    m.position_source = SlicePositionSource::kImagePosition;
  } else if (get_doubles(ds, DCM_SliceLocation, &v, 1)) {
    m.slice_position = v;
    m.position_source = SlicePositionSource::kSliceLocation;
  } else if (m.instance_number != 0) {
    m.slice_position = m.instance_number;
    m.position_source = SlicePositionSource::kInstanceNumber;
  }

  // Decompress when needed; then the pixel data is native little endian in memory.
  st = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  CTDET_CHECK(st.good() && ds->canWriteXfer(EXS_LittleEndianExplicit), "DICOM '", path,
              "': cannot decode the pixel data of transfer syntax '",
              DcmXfer(ds->getOriginalXfer()).getXferName(), "': ", st.text());

  const size_t npix = size_t(rows) * cols;
  std::vector<int32_t> stored(npix);
  const int shift = high_bit + 1 - bits_stored;
  const uint32_t mask = bits_stored >= 32 ? 0xffffffffu : ((1u << bits_stored) - 1u);
  auto decode = [&](uint32_t raw) -> int32_t {
    uint32_t u = (raw >> shift) & mask;
    if (pixrep == 1 && (u >> (bits_stored - 1)) & 1u) return int32_t(u) - int32_t(1u << bits_stored);
    return int32_t(u);
  };
  if (bits_alloc == 16) {
    const Uint16* px = nullptr;
    unsigned long count = 0;
    st = ds->findAndGetUint16Array(DCM_PixelData, px, &count);
    CTDET_CHECK(st.good() && px != nullptr, "DICOM '", path, "': no 16-bit PixelData: ", st.text());
    CTDET_CHECK(count >= npix, "DICOM '", path, "': PixelData has ", count, " values, need ", npix, " (",
                cols, "x", rows, ")");
    for (size_t i = 0; i < npix; ++i) stored[i] = decode(px[i]);
  } else {
    const Uint8* px = nullptr;
    unsigned long count = 0;
    st = ds->findAndGetUint8Array(DCM_PixelData, px, &count);
    if (!st.good() || px == nullptr) {  // 8-bit samples stored as OW: the bytes in file order
      const Uint16* px16 = nullptr;
      unsigned long count16 = 0;
      st = ds->findAndGetUint16Array(DCM_PixelData, px16, &count16);
      CTDET_CHECK(st.good() && px16 != nullptr, "DICOM '", path, "': no 8-bit PixelData: ", st.text());
      px = reinterpret_cast<const Uint8*>(px16);
      count = count16 * 2;
    }
    CTDET_CHECK(count >= npix, "DICOM '", path, "': PixelData has ", count, " bytes, need ", npix, " (", cols,
                "x", rows, ")");
    for (size_t i = 0; i < npix; ++i) stored[i] = decode(px[i]);
  }

  const bool invert = m.photometric == "MONOCHROME1";
  out.windowed = Image(cols, rows, 1, 8);
  if (opt.keep_hu) out.hu.resize(npix);
  CTDET_CHECK(opt.window_width > 0, "DICOM '", path, "': window width ", opt.window_width, " must be > 0");
  for (size_t i = 0; i < npix; ++i) {
    const double hu = double(stored[i]) * m.rescale_slope + m.rescale_intercept;
    if (opt.keep_hu) out.hu[i] = float(hu);
    out.windowed.data[i] = window_to_u8(hu, opt.window_level, opt.window_width, invert);
  }
  return out;
}

DicomSeries read_dicom_series(const std::string& dir, const DicomOptions& opt) {
  namespace fs = std::filesystem;
  std::error_code ec;
  CTDET_CHECK(fs::is_directory(dir, ec), "DICOM series: '", dir, "' is not a folder");
  std::vector<std::string> files;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || name == "DICOMDIR") continue;
    files.push_back(it->path().string());
  }
  CTDET_CHECK(!ec, "DICOM series: listing '", dir, "' failed: ", ec.message());
  CTDET_CHECK(!files.empty(), "DICOM series: '", dir, "' has no files");
  std::sort(files.begin(), files.end());
  std::vector<DicomSlice> slices;
  std::vector<std::string> bad;
  for (auto& f : files) {
    try {
      slices.push_back(read_dicom_slice(f, opt));
    } catch (const Error& e) {
      bad.push_back(e.what());
    }
  }
  if (!bad.empty()) {
    std::string list;
    for (auto& b : bad) list += "\n  " + b;
    CTDET_FAIL("DICOM series '", dir, "': ", bad.size(), " of ", files.size(), " file(s) unreadable:", list);
  }
  return order_dicom_slices(std::move(slices), dir);
}

#else  // !CTDET_WITH_DICOM

DicomSlice read_dicom_slice(const std::string& path, const DicomOptions&) {
  CTDET_FAIL("DICOM '", path, "': ctdet was built without DICOM support (install libdcmtk-dev and reconfigure)");
}
DicomSeries read_dicom_series(const std::string& dir, const DicomOptions&) {
  CTDET_FAIL("DICOM series '", dir,
             "': ctdet was built without DICOM support (install libdcmtk-dev and reconfigure)");
}

#endif

}  // namespace ctdet
