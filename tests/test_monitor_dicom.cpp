// `ctdet monitor` on DICOM studies: a phantom series from io/synth is converted to one DICOM series per study (HU from
// the 8-bit lung window, stored with rescale intercept -1024, axial orientation, pixel spacing 0.7 mm, positions
// from the manifest's z with the apex superior). The monitor must then read the studies through DCMTK, order the
// slices apex first, segment in HU with its HU thresholds, and report the same zones and changes as on the PNG
// series, with areas in mm^2 = 0.49 x the pixel areas.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/synth.h"
#include "nn/error.h"
#include "test_util.h"
#include "train/monitor.h"

#if CTDET_WITH_DICOM
#include <dcmtk/dcmdata/dctk.h>
#endif

namespace ctdet {
namespace {

namespace fs = std::filesystem;

#if CTDET_WITH_DICOM
// 8-bit lung-window value -> HU (level -600, width 1500: 0 -> -1350 HU, 255 -> 150 HU), stored as HU + 1024.
uint16_t stored_from_u8(uint16_t v) { return uint16_t(std::lround(-1350.0 + double(v) * 1500.0 / 255.0 + 1024.0)); }

void write_slice(const fs::path& path, const Image& img, double z, const std::string& study_uid, int instance,
                 const std::string& patient = "S000") {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  char uid[100];
  ASSERT_TRUE(ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage).good());
  ASSERT_TRUE(ds->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT)).good());
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_PatientID, patient.c_str());
  ds->putAndInsertString(DCM_StudyInstanceUID, study_uid.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, (study_uid + ".1").c_str());
  ds->putAndInsertString(DCM_ImagePositionPatient, str("-100\\-100\\", z).c_str());
  ds->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  ds->putAndInsertString(DCM_PixelSpacing, "0.7\\0.7");
  ds->putAndInsertString(DCM_RescaleSlope, "1");
  ds->putAndInsertString(DCM_RescaleIntercept, "-1024");
  ds->putAndInsertString(DCM_InstanceNumber, std::to_string(instance).c_str());
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, Uint16(img.height));
  ds->putAndInsertUint16(DCM_Columns, Uint16(img.width));
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> px(size_t(img.width) * img.height);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) px[size_t(y) * img.width + x] = stored_from_u8(img.at(y, x, 0));
  ASSERT_TRUE(ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size()).good());
  ASSERT_TRUE(ff.saveFile(path.string().c_str(), EXS_LittleEndianExplicit).good());
}
#endif

TEST(MonitorDicom, SameZonesAndChangesAsThePngSeries) {
#if !CTDET_WITH_DICOM
  GTEST_SKIP() << "built without DCMTK (CTDET_DICOM=OFF)";
#else
  const fs::path dir = fs::temp_directory_path() / ("ctdet_monitor_dicom_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  SynthOptions o;
  o.out = (dir / "png").string();
  o.force = true;
  o.count = 6;
  o.studies = 3;
  o.size = 192;
  o.seed = 3;
  const SynthSummary sum = write_synth_series(o);
  const auto m = nlohmann::json::parse(read_file(sum.manifest_path));
  const std::vector<std::string> classes = default_class_names();

  // Ground-truth boxes as detections, for the PNG ids and for the DICOM ids.
  std::vector<Detection> png_dets, dcm_dets;
  nlohmann::json dm;
  dm["patient_id"] = m.value("patient_id", std::string("S000"));
  for (size_t s = 0; s < m["studies"].size(); ++s) {
    const auto& st = m["studies"][s];
    const std::string folder = st["folder"].get<std::string>(), dcm_dir = "dicom_" + std::to_string(s);
    fs::create_directories(dir / dcm_dir);
    int instance = 1;
    for (const auto& e : st["slices"]) {
      const std::string file = e.is_string() ? e.get<std::string>() : e["file"].get<std::string>();
      const double z = e.is_object() && e.contains("z") ? e["z"].get<double>() : double(instance);
      const Image img = read_image((fs::path(o.out) / folder / file).string());
      // Apex superior: larger manifest z (further from the apex) -> lower patient z.
      write_slice(dir / dcm_dir / (fs::path(file).stem().string() + ".dcm"), img, -100.0 * z,
                  "1.2.826.0.1.3680043.2.1125." + std::to_string(s + 1), instance++);
    }
    dm["studies"].push_back({{"date", st["date"]}, {"dicom_dir", dcm_dir}});
    for (const auto& l : st["lesions"]) {
      if (l["box"].is_null()) continue;
      Detection d;
      d.label = 1 + int(std::find(classes.begin(), classes.end(), l["label"].get<std::string>()) - classes.begin());
      d.score = 1;
      d.x1 = l["box"][0];
      d.y1 = l["box"][1];
      d.x2 = l["box"][2];
      d.y2 = l["box"][3];
      d.image_id = folder + "/" + l["slice"].get<std::string>();
      png_dets.push_back(d);
      d.image_id = dcm_dir + "/" + fs::path(l["slice"].get<std::string>()).stem().string() + ".dcm";
      dcm_dets.push_back(d);
    }
  }
  write_file_atomic((dir / "manifest_dicom.json").string(), dm.dump(1));

  const MonitorReport png = run_monitor(read_monitor_manifest(sum.manifest_path), detections_by_image(png_dets),
                                        load_monitor_image, monitor_options_u8(), classes);
  const MonitorSeries dseries = read_monitor_manifest((dir / "manifest_dicom.json").string());
  ASSERT_EQ(dseries.studies.size(), 3u);
  for (const auto& st : dseries.studies) ASSERT_TRUE(st.dicom);
  const MonitorReport dcm =
      run_monitor(dseries, detections_by_image(dcm_dets), load_monitor_image, MonitorOptions{}, classes);
  EXPECT_EQ(dcm.unit, "mm2");
  ASSERT_EQ(dcm.changes.size(), png.changes.size());
  double worst = 0;
  for (size_t i = 0; i < png.changes.size(); ++i) {
    const ZoneChange &a = png.changes[i], &b = dcm.changes[i];
    EXPECT_EQ(a.zone, b.zone) << i;
    EXPECT_EQ(a.label, b.label) << i;
    EXPECT_EQ(std::string(change_name(a.change)), std::string(change_name(b.change)))
        << monitor_zone_name(a.zone) << " " << a.date_after;
    for (auto [pa, mb] : {std::pair<double, double>{a.before, b.before}, {a.after, b.after}}) {
      const double rel = std::abs(mb / 0.49 - pa) / std::max(pa, 1.0);
      worst = std::max(worst, rel);
      EXPECT_LE(rel, 0.05) << monitor_zone_name(a.zone) << " px " << pa << " vs mm2 " << mb;
    }
  }
  std::printf("[err] monitor on DICOM (HU thresholds) vs PNG (8-bit window): %zu changes, same zones and kinds, "
              "worst area difference %.2f%% (mm2 / 0.49 vs px)\n", png.changes.size(), 100 * worst);

  // Bad input: a study of another patient given as the same patient is refused, naming both.
  {
    const auto& st = m["studies"][1];
    const auto& e = st["slices"][0];
    const std::string file = e.is_string() ? e.get<std::string>() : e["file"].get<std::string>();
    const Image img = read_image((fs::path(o.out) / st["folder"].get<std::string>() / file).string());
    write_slice(dir / "dicom_1" / (fs::path(file).stem().string() + ".dcm"), img, 0.0, "1.2.826.0.1.3680043.2.1125.2",
                1, "OTHER");
    try {
      read_monitor_manifest((dir / "manifest_dicom.json").string());
      ADD_FAILURE() << "a study of another patient was accepted";
    } catch (const Error& err) {
      std::printf("[error] %s\n", err.what());
      EXPECT_NE(std::string(err.what()).find("OTHER"), std::string::npos);
    }
  }
  fs::remove_all(dir);
#endif
}

}  // namespace
}  // namespace ctdet
