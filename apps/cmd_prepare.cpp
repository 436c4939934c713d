// `ctdet prepare`: annotations (VIA CSV/JSON, COCO, or label masks) + images -> train/val/test TFRecord
// shards of tf.train.Example (TF OD API keys), label_map.pbtxt and summary.json.
// Splits are made by patient when patient ids are known (never slice by slice within a patient) and are
// deterministic for a seed (own RNG, not std::shuffle, so every standard library gives the same split).
// Nothing existing is overwritten without --force; every file is written under a temporary name and
// renamed into place.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "io/atomic_file.h"
#include "io/coco.h"
#include "io/image.h"
#include "io/label_map.h"
#include "io/masks.h"
#include "io/tfrecord.h"
#include "io/via.h"
#include "nn/error.h"

namespace fs = std::filesystem;

namespace {

using namespace ctdet;

void prepare_usage() {
  std::printf(
      "usage: ctdet prepare --images DIR (--via-csv F | --via-json F | --coco F | --masks DIR) --out DIR [options]\n\n"
      "  --images DIR          folder of the images (PNG/JPEG) the annotations name\n"
      "  --via-csv F           VIA 2.x CSV export\n"
      "  --via-json F          VIA 2.x project / annotation JSON, or VIA 1.x JSON\n"
      "  --coco F              COCO detection dataset JSON\n"
      "  --masks DIR           label-mask PNGs named like the images (<stem>.png); lesions = 8-connected\n"
      "                        components; only GGO -> GGO, only CD -> CD, both -> GGO+CD\n"
      "  --out DIR             output folder: {train,val,test}-NNNNN-of-NNNNN.tfrecord, label_map.pbtxt,\n"
      "                        summary.json, splits.csv (image list per split), {split}_gt.json (COCO)\n"
      "  --split A,B,C         train,val,test fractions (default 0.7,0.15,0.15)\n"
      "  --seed N              split seed (default 0)\n"
      "  --shards N            shards per split (default 1)\n"
      "  --class-attr NAME     VIA region attribute with the class (default 'lesion', else the only one)\n"
      "  --label-map F         label_map.pbtxt with the classes (default GGO, CD, GGO+CD)\n"
      "  --skip-unknown        drop (and count) regions whose class is not in the label map\n"
      "  --patients CSV        file,patient_id lines (header optional) mapping images to patients\n"
      "  --min-area N          masks: smallest component in pixels (default 1)\n"
      "  --ggo-value V         masks: GGO pixel value (default 1)\n"
      "  --cd-value V          masks: consolidation pixel value (default 2)\n"
      "  --force               replace existing outputs\n");
}

long to_long(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  CTDET_CHECK(!v.empty() && end && *end == '\0', "prepare: ", flag, " expects an integer, got '", v, "'");
  return x;
}

// Width and height from the file header only (PNG IHDR, JPEG SOFn). False when not recognised.
bool probe_size(const std::string& b, int* w, int* h) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  const size_t n = b.size();
  if (n >= 24 && p[0] == 0x89 && p[1] == 'P' && p[2] == 'N' && p[3] == 'G' && std::memcmp(p + 12, "IHDR", 4) == 0) {
    *w = int((uint32_t(p[16]) << 24) | (uint32_t(p[17]) << 16) | (uint32_t(p[18]) << 8) | p[19]);
    *h = int((uint32_t(p[20]) << 24) | (uint32_t(p[21]) << 16) | (uint32_t(p[22]) << 8) | p[23]);
    return *w > 0 && *h > 0;
  }
  if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8) {
    size_t i = 2;
    while (i + 3 < n) {
      if (p[i] != 0xFF) return false;
      while (i < n && p[i] == 0xFF) ++i;  // fill bytes
      if (i >= n) return false;
      unsigned m = p[i++];
      if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length
      if (i + 1 >= n) return false;
      size_t len = (size_t(p[i]) << 8) | p[i + 1];
      bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
      if (sof) {
        if (i + 7 > n) return false;
        *h = int((p[i + 3] << 8) | p[i + 4]);
        *w = int((p[i + 5] << 8) | p[i + 6]);
        return *w > 0 && *h > 0;
      }
      if (m == 0xDA || m == 0xD9) return false;  // scan data before any frame header
      i += len;
    }
  }
  return false;
}

std::string image_format_name(const std::string& bytes) {
  switch (sniff_image_format(bytes.data(), bytes.size())) {
    case ImageFormat::kPng: return "png";
    case ImageFormat::kJpeg: return "jpeg";
    default: return "";
  }
}

// splitmix64: a tiny portable generator, so a seed gives the same split everywhere.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }  // bias is negligible for dataset sizes
};

std::map<std::string, std::string> read_patients_csv(const std::string& path) {
  std::string text = read_file(path);
  std::map<std::string, std::string> out;
  size_t pos = 0;
  int line = 0;
  while (pos <= text.size()) {
    size_t e = text.find('\n', pos);
    std::string l = text.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
    pos = e == std::string::npos ? text.size() + 1 : e + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l.empty()) continue;
    auto f = split_csv_record(l, str(path, ":", line));
    CTDET_CHECK(f.size() >= 2, path, ":", line, ": expected 'file,patient_id', found '", l, "'");
    if (line == 1 && (f[1] == "patient_id" || f[1] == "patient")) continue;  // header
    CTDET_CHECK(!f[0].empty() && !f[1].empty(), path, ":", line, ": empty file or patient id");
    CTDET_CHECK(!out.count(f[0]), path, ":", line, ": file '", f[0], "' listed twice");
    out[f[0]] = f[1];
  }
  return out;
}

const char* kSplitNames[3] = {"train", "val", "test"};

struct SplitSummary {
  int images = 0, negatives = 0;
  std::vector<int> boxes_per_class;
  std::set<std::string> patients;
};

int run_prepare(const std::vector<std::string>& args) {
  auto t0 = std::chrono::steady_clock::now();
  std::string images_dir, via_csv, via_json, coco, masks_dir, out_dir, split_arg = "0.7,0.15,0.15", class_attr,
                                                                        label_map_path, patients_csv;
  long seed = 0, shards = 1, min_area = 1, ggo_value = 1, cd_value = 2;
  bool force = false, skip_unknown = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      prepare_usage();
      return 0;
    }
    if (a == "--force") {
      force = true;
      continue;
    }
    if (a == "--skip-unknown") {
      skip_unknown = true;
      continue;
    }
    CTDET_CHECK(i + 1 < args.size(), "prepare: ", a, " needs a value (see ctdet prepare --help)");
    const std::string& v = args[++i];
    if (a == "--images") images_dir = v;
    else if (a == "--via-csv") via_csv = v;
    else if (a == "--via-json") via_json = v;
    else if (a == "--coco") coco = v;
    else if (a == "--masks") masks_dir = v;
    else if (a == "--out") out_dir = v;
    else if (a == "--split") split_arg = v;
    else if (a == "--seed") seed = to_long(a, v);
    else if (a == "--shards") shards = to_long(a, v);
    else if (a == "--class-attr") class_attr = v;
    else if (a == "--label-map") label_map_path = v;
    else if (a == "--patients") patients_csv = v;
    else if (a == "--min-area") min_area = to_long(a, v);
    else if (a == "--ggo-value") ggo_value = to_long(a, v);
    else if (a == "--cd-value") cd_value = to_long(a, v);
    else CTDET_FAIL("prepare: unknown option '", a, "' (see ctdet prepare --help)");
  }
  CTDET_CHECK(!images_dir.empty() && !out_dir.empty(), "prepare: --images and --out are required");
  int sources = !via_csv.empty() + !via_json.empty() + !coco.empty() + !masks_dir.empty();
  CTDET_CHECK(sources == 1, "prepare: give exactly one of --via-csv, --via-json, --coco, --masks (got ", sources, ")");
  CTDET_CHECK(shards >= 1 && shards <= 99999, "prepare: --shards must be 1..99999, got ", shards);
  CTDET_CHECK(fs::is_directory(images_dir), "prepare: --images '", images_dir, "' is not a folder");
  CTDET_CHECK(ggo_value >= 1 && ggo_value <= 255 && cd_value >= 1 && cd_value <= 255,
              "prepare: mask values must be 1..255 (", ggo_value, ", ", cd_value, ")");

  double frac[3] = {0, 0, 0};
  {
    auto parts = split_csv_record(split_arg, "--split");
    CTDET_CHECK(parts.size() == 3, "prepare: --split wants three fractions train,val,test, got '", split_arg, "'");
    double sum = 0;
    for (int k = 0; k < 3; ++k) {
      char* end = nullptr;
      frac[k] = std::strtod(parts[size_t(k)].c_str(), &end);
      CTDET_CHECK(!parts[size_t(k)].empty() && *end == '\0' && frac[k] >= 0 && frac[k] <= 1,
                  "prepare: --split fraction '", parts[size_t(k)], "' is not a number in [0,1]");
      sum += frac[k];
    }
    CTDET_CHECK(std::abs(sum - 1.0) < 1e-6, "prepare: --split fractions must sum to 1, they sum to ", sum);
  }

  std::vector<std::string> class_names = label_map_path.empty() ? default_class_names() : read_label_map(label_map_path);

  // ---- load annotations --------------------------------------------------------------------------
  auto size_of = [](const std::string& file, int* w, int* h) {
    if (!fs::is_regular_file(file)) return false;
    std::string head = read_file(file);  // small CT slices; a streaming probe would read only the header
    return probe_size(head, w, h);
  };
  Dataset ds;
  ViaStats vst;
  CocoStats cst;
  MaskStats mst;
  std::string source;
  if (!via_csv.empty() || !via_json.empty()) {
    ViaOptions vo;
    vo.class_attr = class_attr;
    vo.class_names = class_names;
    vo.skip_unknown_classes = skip_unknown;
    vo.image_dir = images_dir;
    vo.image_size = size_of;
    source = !via_csv.empty() ? via_csv : via_json;
    ds = !via_csv.empty() ? read_via_csv(via_csv, vo, &vst) : read_via_json(via_json, vo, &vst);
  } else if (!coco.empty()) {
    CocoOptions co;
    co.class_names = class_names;
    co.skip_unknown_classes = skip_unknown;
    co.image_dir = images_dir;
    source = coco;
    ds = read_coco(coco, co, &cst);
  } else {
    CTDET_CHECK(fs::is_directory(masks_dir), "prepare: --masks '", masks_dir, "' is not a folder");
    CTDET_CHECK(class_names.size() >= 3, "prepare: masks need three classes (GGO, CD, GGO+CD) in the label map");
    source = masks_dir;
    ds.class_names = class_names;
    std::vector<fs::path> masks;
    for (auto& e : fs::directory_iterator(masks_dir))
      if (e.is_regular_file() && e.path().extension() == ".png") masks.push_back(e.path());
    std::sort(masks.begin(), masks.end());
    CTDET_CHECK(!masks.empty(), "prepare: no .png masks in '", masks_dir, "'");
    MaskRule rule;
    rule.ggo_value = uint8_t(ggo_value), rule.cd_value = uint8_t(cd_value), rule.min_area = int(min_area);
    for (auto& mp : masks) {
      std::string stem = mp.stem().string(), image;
      for (const char* ext : {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"})
        if (fs::is_regular_file(fs::path(images_dir) / (stem + ext))) {
          image = (fs::path(images_dir) / (stem + ext)).string();
          break;
        }
      CTDET_CHECK(!image.empty(), "prepare: mask '", mp.string(), "' has no image '", stem, ".{jpg,jpeg,png}' in '",
                  images_dir, "'");
      Image m = read_png_indices(mp.string());
      CTDET_CHECK(m.channels == 1 && m.bit_depth == 8, "prepare: mask '", mp.string(), "' is not an 8-bit label mask");
      std::vector<uint8_t> px(m.data.begin(), m.data.end());
      ImageRecord r;
      r.file = image;
      r.id = fs::path(image).filename().string();
      r.width = m.width, r.height = m.height;
      r.boxes = mask_to_boxes(px.data(), m.width, m.height, rule, &mst);
      ds.images.push_back(std::move(r));
    }
  }
  CTDET_CHECK(!ds.images.empty(), "prepare: no images in '", source, "'");

  // ---- sizes, formats, patients --------------------------------------------------------------------
  std::map<std::string, std::string> patients;
  if (!patients_csv.empty()) patients = read_patients_csv(patients_csv);
  int unmapped = 0;
  for (auto& r : ds.images) {
    CTDET_CHECK(fs::is_regular_file(r.file), "prepare: image '", r.file, "' (from ", source, ") not found");
    std::string bytes = read_file(r.file);
    CTDET_CHECK(!image_format_name(bytes).empty(), "prepare: '", r.file, "' is neither PNG nor JPEG");
    int w = 0, h = 0;
    CTDET_CHECK(probe_size(bytes, &w, &h), "prepare: cannot read the size of '", r.file, "' from its header");
    CTDET_CHECK((r.width == 0 && r.height == 0) || (r.width == w && r.height == h), "prepare: '", r.file, "' is ", w,
                "x", h, " but ", source, " says ", r.width, "x", r.height);
    r.width = w, r.height = h;
    if (!patients.empty()) {
      auto it = patients.find(r.id);
      if (it == patients.end()) it = patients.find(fs::path(r.file).filename().string());
      if (it != patients.end()) r.patient_id = it->second;
    }
    unmapped += r.patient_id.empty();
  }
  ViaStats clip;
  clip_boxes_to_images(ds, &clip);

  // ---- split by patient ------------------------------------------------------------------------------
  std::map<std::string, std::vector<size_t>> groups;  // patient (or "image:<id>") -> image indices
  for (size_t i = 0; i < ds.images.size(); ++i) {
    const ImageRecord& r = ds.images[i];
    groups[r.patient_id.empty() ? "image:" + r.id : "patient:" + r.patient_id].push_back(i);
  }
  std::vector<const std::vector<size_t>*> order;
  for (auto& [k, v] : groups) order.push_back(&v);
  SplitMix rng{uint64_t(seed) ^ 0x6a09e667f3bcc909ull};
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);
  const double n_total = double(ds.images.size());
  const double cum[3] = {frac[0] * n_total, (frac[0] + frac[1]) * n_total, n_total + 1};
  std::vector<size_t> split_images[3];
  size_t placed = 0;
  for (auto* g : order) {
    int k = 0;
    while (k < 2 && !(double(placed) < cum[k] - 1e-9)) ++k;
    for (size_t i : *g) split_images[k].push_back(i);
    placed += g->size();
  }
  for (auto& s : split_images) std::sort(s.begin(), s.end());

  // ---- outputs: refuse to overwrite without --force ----------------------------------------------------
  fs::create_directories(out_dir);
  std::vector<std::string> planned = {(fs::path(out_dir) / "label_map.pbtxt").string(),
                                      (fs::path(out_dir) / "summary.json").string()};
  planned.push_back((fs::path(out_dir) / "splits.csv").string());
  for (int k = 0; k < 3; ++k)
    if (!split_images[k].empty()) planned.push_back((fs::path(out_dir) / (std::string(kSplitNames[k]) + "_gt.json")).string());
  for (int k = 0; k < 3; ++k)
    if (!split_images[k].empty())
      for (int s = 0; s < shards; ++s)
        planned.push_back(shard_name((fs::path(out_dir) / kSplitNames[k]).string(), s, int(shards)));
  std::vector<std::string> stale;  // earlier split shards in the folder
  for (auto& e : fs::directory_iterator(out_dir)) {
    std::string name = e.path().filename().string();
    for (const char* sp : kSplitNames)
      if (name.rfind(std::string(sp) + "-", 0) == 0 && name.size() > 9 &&
          name.compare(name.size() - 9, 9, ".tfrecord") == 0)
        stale.push_back(e.path().string());
  }
  if (!force) {
    for (auto& p : planned) CTDET_CHECK(!fs::exists(p), "prepare: '", p, "' exists; use --force to replace it");
    CTDET_CHECK(stale.empty(), "prepare: '", stale.empty() ? "" : stale[0],
                "' exists; use --force to replace the records in '", out_dir, "'");
  }

  // ---- write ---------------------------------------------------------------------------------------
  SplitSummary sum[3];
  const int nbins = 7;
  const char* bin_names[nbins] = {"<8", "8-16", "16-32", "32-64", "64-128", "128-256", ">=256"};
  int hist[nbins] = {0};
  std::vector<std::string> written;
  for (int k = 0; k < 3; ++k) {
    sum[k].boxes_per_class.assign(ds.class_names.size(), 0);
    if (split_images[k].empty()) continue;
    ShardedTFRecordWriter w((fs::path(out_dir) / kSplitNames[k]).string(), int(shards));
    for (size_t i : split_images[k]) {
      const ImageRecord& r = ds.images[i];
      ExampleImage ex;
      ex.record = r;
      ex.record.file = fs::path(r.file).filename().string();
      ex.encoded = read_file(r.file);
      ex.format = image_format_name(ex.encoded);
      w.write(encode_example(ex, ds.class_names));
      sum[k].images++;
      sum[k].negatives += r.boxes.empty();
      if (!r.patient_id.empty()) sum[k].patients.insert(r.patient_id);
      for (const Box& b : r.boxes) {
        sum[k].boxes_per_class[size_t(b.label - 1)]++;
        double side = std::sqrt(std::max(0.0, double(b.width()) * b.height()));
        int bin = side < 8 ? 0 : std::min(nbins - 1, 1 + int(std::floor(std::log2(side / 8))));
        hist[bin]++;
      }
    }
    w.close();
    for (auto& p : w.paths()) written.push_back(p);
  }
  if (force)
    for (auto& s : stale)
      if (std::find(written.begin(), written.end(), s) == written.end()) fs::remove(s);
  write_label_map((fs::path(out_dir) / "label_map.pbtxt").string(), ds.class_names);

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::ordered_json js;
  js["source"] = source;
  js["images_dir"] = images_dir;
  js["seed"] = seed;
  js["split_fractions"] = {frac[0], frac[1], frac[2]};
  js["shards"] = shards;
  js["class_names"] = ds.class_names;
  js["patients_known"] = int(ds.images.size()) - unmapped;
  js["split_by"] = unmapped == int(ds.images.size()) ? "image (patient ids unknown)" : "patient";
  for (int k = 0; k < 3; ++k) {
    nlohmann::ordered_json s;
    s["images"] = sum[k].images;
    s["negatives"] = sum[k].negatives;
    s["patients"] = sum[k].patients.size();
    nlohmann::ordered_json per;
    for (size_t c = 0; c < ds.class_names.size(); ++c) per[ds.class_names[c]] = sum[k].boxes_per_class[c];
    s["boxes_per_class"] = per;
    js["splits"][kSplitNames[k]] = s;
  }
  nlohmann::ordered_json h;
  for (int b = 0; b < nbins; ++b) h[bin_names[b]] = hist[b];
  js["box_size_histogram_sqrt_area_px"] = h;
  js["warnings"] = {{"boxes_clipped", vst.clipped + clip.clipped},
                    {"boxes_dropped_no_area", vst.degenerate_dropped + clip.degenerate_dropped},
                    {"points_skipped", vst.points_skipped},
                    {"polylines_as_boxes", vst.polylines},
                    {"unknown_class_skipped", vst.unknown_class_skipped + cst.unknown_class_skipped},
                    {"via_entries_discarded", vst.entries_discarded},
                    {"coco_crowd", cst.crowd},
                    {"mask_components_below_min_area", mst.small_dropped},
                    {"mask_pixels_other_values", mst.other_pixels},
                    {"images_without_patient", unmapped}};
  // Per split: the image list (splits.csv) and the ground truth as a COCO dataset ({split}_gt.json, file names
  // without folders), so a held-out split can be inferred from its image files and evaluated with ctdet eval.
  {
    std::string csv = "split,image_id,file,patient_id,boxes\n";
    for (int k = 0; k < 3; ++k) {
      if (split_images[k].empty()) continue;
      Dataset sub;
      sub.class_names = ds.class_names;
      for (size_t i : split_images[k]) {
        ImageRecord r = ds.images[i];
        csv += str(kSplitNames[k], ",\"", r.id, "\",\"", r.file, "\",\"", r.patient_id, "\",", r.boxes.size(), "\n");
        r.file = fs::path(r.file).filename().string();
        sub.images.push_back(r);
      }
      const std::string gt = (fs::path(out_dir) / (std::string(kSplitNames[k]) + "_gt.json")).string();
      write_coco(gt, sub);
      written.push_back(gt);
    }
    const std::string sp = (fs::path(out_dir) / "splits.csv").string();
    write_file_atomic(sp, csv);
    written.push_back(sp);
  }
  js["files"] = written;
  js["seconds"] = seconds;
  write_file_atomic((fs::path(out_dir) / "summary.json").string(), js.dump(1) + "\n");

  // ---- printed summary -------------------------------------------------------------------------------
  std::printf("ctdet prepare: %zu images from %s -> %s (%.2f s)\n", ds.images.size(), source.c_str(), out_dir.c_str(),
              seconds);
  std::printf("  split by %s, seed %ld\n", js["split_by"].get<std::string>().c_str(), seed);
  std::printf("  %-6s %7s %9s %8s", "split", "images", "negatives", "patients");
  for (auto& c : ds.class_names) std::printf(" %8s", c.c_str());
  std::printf("\n");
  for (int k = 0; k < 3; ++k) {
    std::printf("  %-6s %7d %9d %8zu", kSplitNames[k], sum[k].images, sum[k].negatives, sum[k].patients.size());
    for (int c : sum[k].boxes_per_class) std::printf(" %8d", c);
    std::printf("\n");
  }
  std::printf("  box size (sqrt area, px):");
  for (int b = 0; b < nbins; ++b) std::printf(" %s:%d", bin_names[b], hist[b]);
  std::printf("\n");
  for (auto& [k, v] : js["warnings"].items())
    if (v.get<long>() != 0) std::printf("  warning: %s = %ld\n", k.c_str(), v.get<long>());
  if (unmapped == int(ds.images.size()))
    std::printf("  warning: patient ids unknown; slices of one patient may fall into different splits "
                "(give --patients or a 'patient_id' file attribute)\n");
  return 0;
}

}  // namespace

CTDET_COMMAND("prepare", "annotations + images -> TFRecord train/val/test shards, label map, summary", run_prepare);
