// DICOM reading: HU from rescale, lung window, MONOCHROME1, bit masking / sign extension, slice position,
// series ordering, gap warnings and the errors for mixed series, mixed sizes and unreadable files.
// Test files are written here with DCMTK (skips when built without it).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/dicom.h"
#include "nn/error.h"
#include "tests/test_util.h"

#if CTDET_WITH_DICOM
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#endif

namespace fs = std::filesystem;
using namespace ctdet;

namespace {

fs::path scratch(const std::string& name) {
  fs::path p = fs::path(CTDET_BINARY_DIR) / "test_dicom_scratch" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Hand formula of the window, written independently of window_to_u8: linear ramp from L-W/2 to L+W/2.
double window_ref(double hu, double L, double W) {
  double lo = L - W / 2, hi = L + W / 2;
  if (hu <= lo) return 0;
  if (hu >= hi) return 255;
  return std::floor((hu - lo) * 255.0 / W + 0.5);
}

}  // namespace

TEST(Dicom, WindowHandValues) {
  // Lung window L=-600, W=1500: [-1350, 150] -> [0, 255].
  EXPECT_EQ(window_to_u8(-2000, -600, 1500), 0);
  EXPECT_EQ(window_to_u8(-1350, -600, 1500), 0);
  EXPECT_EQ(window_to_u8(150, -600, 1500), 255);
  EXPECT_EQ(window_to_u8(3000, -600, 1500), 255);
  EXPECT_EQ(window_to_u8(-1050, -600, 1500), 51);  // 300/1500*255 = 51
  EXPECT_EQ(window_to_u8(-1050, -600, 1500, true), 204);
  EXPECT_EQ(window_to_u8(-600, -600, 1500), 128);  // 127.5 rounds up
  double worst = 0;
  for (int hu = -2048; hu <= 3071; hu += 7)
    worst = std::max(worst, std::abs(window_to_u8(hu, -600, 1500) - window_ref(hu, -600, 1500)));
  std::printf("[err] window_to_u8 vs hand ramp over HU -2048..3071: max_abs=%.1f\n", worst);
  EXPECT_EQ(worst, 0);
}

#if !CTDET_WITH_DICOM

TEST(Dicom, BuiltWithout) {
  try {
    read_dicom_slice("x.dcm");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::printf("error: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("built without DICOM support"), std::string::npos);
  }
  GTEST_SKIP() << "built without DICOM (DCMTK not found): only the error path and the window are tested";
}

#else

namespace {

struct Spec {
  int w = 5, h = 4;
  int bits_alloc = 16, bits_stored = 16, high_bit = 15, pixrep = 0;
  std::vector<uint16_t> px;  // raw stored words (8-bit: low byte used)
  std::string photometric = "MONOCHROME2";
  std::string slope = "1", intercept = "-1024";  // empty: tag absent
  std::string patient = "P001", study = "1.2.826.0.1.3680043.2.1125.1", series = "1.2.826.0.1.3680043.2.1125.1.2";
  std::string date = "20200415";
  std::string ipp = "-150\\-170\\0", iop = "1\\0\\0\\0\\1\\0", slice_location, instance;
  std::string spacing = "0.7\\0.75";
};

void write_dicom(const fs::path& path, const Spec& s) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  char uid[100];
  ASSERT_TRUE(ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage).good());
  ASSERT_TRUE(ds->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT)).good());
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_PatientID, s.patient.c_str());
  ds->putAndInsertString(DCM_StudyInstanceUID, s.study.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, s.series.c_str());
  ds->putAndInsertString(DCM_StudyDate, s.date.c_str());
  if (!s.ipp.empty()) ds->putAndInsertString(DCM_ImagePositionPatient, s.ipp.c_str());
  if (!s.iop.empty()) ds->putAndInsertString(DCM_ImageOrientationPatient, s.iop.c_str());
  if (!s.slice_location.empty()) ds->putAndInsertString(DCM_SliceLocation, s.slice_location.c_str());
  if (!s.instance.empty()) ds->putAndInsertString(DCM_InstanceNumber, s.instance.c_str());
  if (!s.spacing.empty()) ds->putAndInsertString(DCM_PixelSpacing, s.spacing.c_str());
  if (!s.slope.empty()) ds->putAndInsertString(DCM_RescaleSlope, s.slope.c_str());
  if (!s.intercept.empty()) ds->putAndInsertString(DCM_RescaleIntercept, s.intercept.c_str());
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, s.photometric.c_str());
  ds->putAndInsertUint16(DCM_Rows, Uint16(s.h));
  ds->putAndInsertUint16(DCM_Columns, Uint16(s.w));
  ds->putAndInsertUint16(DCM_BitsAllocated, Uint16(s.bits_alloc));
  ds->putAndInsertUint16(DCM_BitsStored, Uint16(s.bits_stored));
  ds->putAndInsertUint16(DCM_HighBit, Uint16(s.high_bit));
  ds->putAndInsertUint16(DCM_PixelRepresentation, Uint16(s.pixrep));
  ASSERT_EQ(s.px.size(), size_t(s.w) * s.h);
  if (s.bits_alloc == 16) {
    ASSERT_TRUE(ds->putAndInsertUint16Array(DCM_PixelData, s.px.data(), s.px.size()).good());
  } else {
    std::vector<Uint8> b(s.px.size() + (s.px.size() & 1), 0);
    for (size_t i = 0; i < s.px.size(); ++i) b[i] = Uint8(s.px[i]);
    ASSERT_TRUE(ds->putAndInsertUint8Array(DCM_PixelData, b.data(), b.size()).good());
  }
  OFCondition st = ff.saveFile(path.string().c_str(), EXS_LittleEndianExplicit);
  ASSERT_TRUE(st.good()) << st.text();
}

Spec ramp_spec(int w, int h, int base, int step) {
  Spec s;
  s.w = w;
  s.h = h;
  for (int i = 0; i < w * h; ++i) s.px.push_back(uint16_t(base + step * i));
  return s;
}

// error_of(f): the message of the ctdet::Error f must throw (tests/test_util.h expect_error).
inline std::string error_of(const std::function<void()>& f) { return ctdet::testing::expect_error(f); }

}  // namespace

TEST(Dicom, Unsigned16HuWindowAndMetadata) {
  fs::path dir = scratch("u16");
  Spec s = ramp_spec(7, 5, 0, 97);  // stored 0..3298 -> HU -1024..2274
  write_dicom(dir / "a.dcm", s);
  DicomSlice sl = read_dicom_slice((dir / "a.dcm").string());
  ASSERT_EQ(sl.width, 7);
  ASSERT_EQ(sl.height, 5);
  ASSERT_EQ(sl.hu.size(), 35u);
  std::vector<double> hu_ref, win_ref;
  for (uint16_t v : s.px) {
    hu_ref.push_back(double(v) * 1.0 - 1024.0);
    win_ref.push_back(window_ref(hu_ref.back(), -600, 1500));
  }
  auto e = ctdet::testing::compare(sl.hu, hu_ref);
  ctdet::testing::print_err("HU (slope 1, intercept -1024)", e);
  EXPECT_EQ(e.max_abs, 0);
  std::vector<double> win(sl.windowed.data.begin(), sl.windowed.data.end());
  auto ew = ctdet::testing::compare(win, win_ref);
  ctdet::testing::print_err("lung window (-600/1500) vs hand ramp", ew);
  EXPECT_EQ(ew.max_abs, 0);
  EXPECT_EQ(sl.windowed.channels, 1);
  EXPECT_EQ(sl.windowed.bit_depth, 8);
  const DicomMeta& m = sl.meta;
  EXPECT_EQ(m.patient_id, "P001");
  EXPECT_EQ(m.study_uid, s.study);
  EXPECT_EQ(m.series_uid, s.series);
  EXPECT_EQ(m.study_date, "20200415");
  EXPECT_EQ(m.modality, "CT");
  EXPECT_DOUBLE_EQ(m.pixel_spacing[0], 0.7);
  EXPECT_DOUBLE_EQ(m.pixel_spacing[1], 0.75);
  EXPECT_EQ(m.position_source, SlicePositionSource::kImagePosition);
  EXPECT_DOUBLE_EQ(m.slice_position, 0.0);
  EXPECT_DOUBLE_EQ(m.position[0], -150);
}

TEST(Dicom, SlopeInterceptMaskedBitsAndCustomWindow) {
  fs::path dir = scratch("slope");
  // 12 stored bits at HighBit 11 with junk in the top 4 bits (overlay bits must be masked off).
  Spec s = ramp_spec(6, 3, 100, 211);
  for (auto& v : s.px) v = uint16_t(v | 0xA000);
  s.bits_stored = 12;
  s.high_bit = 11;
  s.slope = "2.5";
  s.intercept = "-1000";
  write_dicom(dir / "b.dcm", s);
  DicomOptions opt;
  opt.window_level = 40;
  opt.window_width = 400;
  DicomSlice sl = read_dicom_slice((dir / "b.dcm").string(), opt);
  std::vector<double> hu_ref, win_ref;
  for (uint16_t v : s.px) {
    hu_ref.push_back(double(v & 0x0FFF) * 2.5 - 1000.0);
    win_ref.push_back(window_ref(hu_ref.back(), 40, 400));
  }
  auto e = ctdet::testing::compare(sl.hu, hu_ref);
  ctdet::testing::print_err("HU (12 of 16 bits, slope 2.5, intercept -1000)", e);
  EXPECT_EQ(e.max_abs, 0);
  std::vector<double> win(sl.windowed.data.begin(), sl.windowed.data.end());
  auto ew = ctdet::testing::compare(win, win_ref);
  ctdet::testing::print_err("soft-tissue window (40/400) vs hand ramp", ew);
  EXPECT_EQ(ew.max_abs, 0);
}

TEST(Dicom, Signed12BitSignExtensionAndMonochrome1) {
  fs::path dir = scratch("s12");
  Spec s;
  s.w = 4;
  s.h = 1;
  s.bits_stored = 12;
  s.high_bit = 11;
  s.pixrep = 1;
  s.px = {0x0F00, 0x07FF, 0x0800, 0x0001};  // -256, 2047, -2048, 1 as 12-bit two's complement
  s.intercept = "0";
  write_dicom(dir / "m2.dcm", s);
  s.photometric = "MONOCHROME1";
  write_dicom(dir / "m1.dcm", s);
  DicomSlice a = read_dicom_slice((dir / "m2.dcm").string());
  DicomSlice b = read_dicom_slice((dir / "m1.dcm").string());
  const double hu_ref[4] = {-256, 2047, -2048, 1};
  auto e = ctdet::testing::compare(a.hu.data(), hu_ref, 4);
  ctdet::testing::print_err("HU signed 12-bit", e);
  EXPECT_EQ(e.max_abs, 0);
  // MONOCHROME1: HU unchanged (physical), the 8-bit display inverted.
  auto e1 = ctdet::testing::compare(b.hu.data(), hu_ref, 4);
  EXPECT_EQ(e1.max_abs, 0);
  EXPECT_EQ(b.meta.photometric, "MONOCHROME1");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(a.windowed.data[i], window_ref(hu_ref[i], -600, 1500)) << i;
    EXPECT_EQ(b.windowed.data[i], 255 - a.windowed.data[i]) << i;
  }
}

TEST(Dicom, EightBitSignedPixels) {
  fs::path dir = scratch("s8");
  Spec s;
  s.w = 3;
  s.h = 2;
  s.bits_alloc = 8;
  s.bits_stored = 8;
  s.high_bit = 7;
  s.pixrep = 1;
  s.px = {0, 1, 127, 128, 200, 255};  // signed: 0 1 127 -128 -56 -1
  s.slope = "10";
  s.intercept = "-500";
  write_dicom(dir / "c.dcm", s);
  DicomSlice sl = read_dicom_slice((dir / "c.dcm").string());
  const double ref[6] = {-500, -490, 770, -1780, -1060, -510};
  auto e = ctdet::testing::compare(sl.hu.data(), ref, 6);
  ctdet::testing::print_err("HU signed 8-bit, slope 10", e);
  EXPECT_EQ(e.max_abs, 0);
}

TEST(Dicom, SeriesOrderedByPositionAlongNormal) {
  fs::path dir = scratch("series_axial");
  // Files named so that name order != position order; z positions 2.5 mm apart.
  const double z[5] = {10, -2.5, 5, 0, 2.5};
  for (int i = 0; i < 5; ++i) {
    Spec s = ramp_spec(4, 4, i * 10, 1);
    s.ipp = str("-150\\-170\\", z[i]);
    s.instance = std::to_string(i + 1);
    write_dicom(dir / str("slice_", i, ".dcm"), s);
  }
  // A 10 mm jump (7.5 -> missing) between 5 and 10: one gap warning.
  DicomSeries sr = read_dicom_series(dir.string());
  ASSERT_EQ(sr.slices.size(), 5u);
  const double want[5] = {-2.5, 0, 2.5, 5, 10};
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(sr.slices[i].meta.slice_position, want[i]) << i;
  EXPECT_DOUBLE_EQ(sr.median_spacing, 2.5);
  EXPECT_EQ(sr.gaps, 1);
  EXPECT_EQ(sr.duplicate_positions, 0);
  for (auto& w : sr.warnings) std::printf("warning: %s\n", w.c_str());
  ASSERT_EQ(sr.warnings.size(), 1u);
  EXPECT_NE(sr.warnings[0].find("slice_0.dcm"), std::string::npos);

  // Coronal orientation: rows along +x, columns along -z -> normal (0, 1, 0): position is the y coordinate.
  fs::path dir2 = scratch("series_coronal");
  const double y[3] = {30, -10, 10};
  for (int i = 0; i < 3; ++i) {
    Spec s = ramp_spec(4, 4, 0, 1);
    s.iop = "1\\0\\0\\0\\0\\-1";
    s.ipp = str("7\\", y[i], "\\-50");
    write_dicom(dir2 / str("c", i, ".dcm"), s);
  }
  DicomSeries cr = read_dicom_series(dir2.string());
  ASSERT_EQ(cr.slices.size(), 3u);
  EXPECT_DOUBLE_EQ(cr.slices[0].meta.slice_position, -10);
  EXPECT_DOUBLE_EQ(cr.slices[1].meta.slice_position, 10);
  EXPECT_DOUBLE_EQ(cr.slices[2].meta.slice_position, 30);
  EXPECT_EQ(cr.gaps, 0);
}

TEST(Dicom, PositionFallbacks) {
  fs::path dir = scratch("fallback");
  Spec s = ramp_spec(2, 2, 0, 1);
  s.ipp = "";
  s.slice_location = "-42.5";
  s.instance = "7";
  write_dicom(dir / "loc.dcm", s);
  s.slice_location = "";
  write_dicom(dir / "inst.dcm", s);
  DicomSlice a = read_dicom_slice((dir / "loc.dcm").string());
  EXPECT_EQ(a.meta.position_source, SlicePositionSource::kSliceLocation);
  EXPECT_DOUBLE_EQ(a.meta.slice_position, -42.5);
  DicomSlice b = read_dicom_slice((dir / "inst.dcm").string());
  EXPECT_EQ(b.meta.position_source, SlicePositionSource::kInstanceNumber);
  EXPECT_DOUBLE_EQ(b.meta.slice_position, 7);
  EXPECT_EQ(b.meta.instance_number, 7);
}

TEST(Dicom, SeriesErrors) {
  {  // two series in one folder: both UIDs listed
    fs::path dir = scratch("mixed_series");
    Spec s = ramp_spec(3, 3, 0, 1);
    write_dicom(dir / "a.dcm", s);
    s.series = "1.2.3.999";
    s.ipp = "0\\0\\1";
    write_dicom(dir / "b.dcm", s);
    std::string msg = error_of([&] { read_dicom_series(dir.string()); });
    EXPECT_NE(msg.find("mixes 2 series"), std::string::npos);
    EXPECT_NE(msg.find("1.2.3.999"), std::string::npos);
    EXPECT_NE(msg.find(Spec().series), std::string::npos);
  }
  {  // different sizes
    fs::path dir = scratch("mixed_sizes");
    write_dicom(dir / "a.dcm", ramp_spec(3, 3, 0, 1));
    Spec s = ramp_spec(4, 3, 0, 1);
    s.ipp = "0\\0\\1";
    write_dicom(dir / "b.dcm", s);
    std::string msg = error_of([&] { read_dicom_series(dir.string()); });
    EXPECT_NE(msg.find("different sizes"), std::string::npos);
    EXPECT_NE(msg.find("4x3"), std::string::npos);
    EXPECT_NE(msg.find("b.dcm"), std::string::npos);
  }
  {  // an unreadable file is named
    fs::path dir = scratch("unreadable");
    write_dicom(dir / "a.dcm", ramp_spec(3, 3, 0, 1));
    std::ofstream(dir / "junk.dcm") << "this is not DICOM";
    std::string msg = error_of([&] { read_dicom_series(dir.string()); });
    EXPECT_NE(msg.find("junk.dcm"), std::string::npos);
    EXPECT_NE(msg.find("1 of 2"), std::string::npos);
  }
  {  // colour is refused, naming the file
    fs::path dir = scratch("rgb");
    Spec s = ramp_spec(3, 3, 0, 1);
    s.photometric = "RGB";
    write_dicom(dir / "rgb.dcm", s);
    std::string msg = error_of([&] { read_dicom_slice((dir / "rgb.dcm").string()); });
    EXPECT_NE(msg.find("rgb.dcm"), std::string::npos);
  }
  EXPECT_NE(error_of([] { read_dicom_series("/nonexistent/ctdet"); }).find("not a folder"), std::string::npos);
}

#endif
