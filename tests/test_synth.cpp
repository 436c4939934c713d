// CT phantom generator: determinism, exact boxes (checked against a lesion-free rendering of the same
// slice), class mix, negative fraction, HU statistics, the VIA CSV it writes, and the follow-up series.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/synth.h"
#include "nn/error.h"
#include "test_util.h"

using namespace ctdet;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string d = std::string(CTDET_BINARY_DIR) + "/synth_test_" + name;
  fs::remove_all(d);
  return d;
}

// VIA CSV line -> 7 fields (quotes respected, "" unescaped).
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> f(1);
  bool q = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (q) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') { f.back() += '"'; ++i; }
      else if (c == '"') q = false;
      else f.back() += c;
    } else if (c == '"') q = true;
    else if (c == ',') f.emplace_back();
    else f.back() += c;
  }
  return f;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find('\n', a);
    if (b == std::string::npos) b = s.size();
    out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

SynthOptions small_opts(const std::string& out, int count, uint64_t seed) {
  SynthOptions o;
  o.out = out;
  o.count = count;
  o.size = 256;
  o.seed = seed;
  return o;
}

}  // namespace

TEST(Synth, DeterministicBytes) {
  SynthOptions a = small_opts(fresh_dir("det_a"), 4, 11), b = a, c = a;
  b.out = fresh_dir("det_b");
  c.out = fresh_dir("det_c");
  c.seed = 12;
  write_synth_dataset(a);
  write_synth_dataset(b);
  write_synth_dataset(c);
  EXPECT_EQ(read_file(a.out + "/via_regions.csv"), read_file(b.out + "/via_regions.csv"));
  int same = 0, differ = 0;
  for (int i = 0; i < 4; ++i) {
    char n[32];
    std::snprintf(n, sizeof(n), "/images/slice_%05d.png", i);
    same += read_file(a.out + n) == read_file(b.out + n);
    differ += read_file(a.out + n) != read_file(c.out + n);
  }
  std::printf("[info] same seed: %d/4 identical PNGs; other seed: %d/4 differ\n", same, differ);
  EXPECT_EQ(same, 4);
  EXPECT_EQ(differ, 4);
  EXPECT_NE(read_file(a.out + "/via_regions.csv"), read_file(c.out + "/via_regions.csv"));
}

TEST(Synth, BoxesExactAgainstLesionFreeRendering) {
  SynthOptions o = small_opts("", 12, 7);
  o.negatives_fraction = 0;
  int checked = 0;
  int worst_edge = 0;
  for (int i = 0; i < o.count; ++i) {
    const SliceSpec spec = synth_dataset_spec(o, i, false);
    const SynthSlice sl = render_slice(spec);
    SliceSpec bare = spec;
    bare.lesions.clear();
    const SynthSlice sl0 = render_slice(bare);
    ASSERT_FALSE(sl.lesions.empty()) << "slice " << i;
    const int S = sl.size;
    // Every changed pixel lies in the lung and inside some box.
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const size_t p = size_t(y) * S + x;
        if (sl.hu[p] == sl0.hu[p]) continue;
        ASSERT_TRUE(sl.lung[p]) << "lesion changed a non-lung pixel at " << x << "," << y;
        bool in_box = false;
        for (const auto& l : sl.lesions)
          in_box |= x >= l.box.x1 && x < l.box.x2 && y >= l.box.y1 && y < l.box.y2;
        ASSERT_TRUE(in_box) << "changed pixel outside every box at " << x << "," << y << " slice " << i;
      }
    for (size_t k = 0; k < sl.lesions.size(); ++k) {
      const Box& b = sl.lesions[k].box;
      ASSERT_GE(b.x1, 0);
      ASSERT_GE(b.y1, 0);
      ASSERT_LE(b.x2, S);
      ASSERT_LE(b.y2, S);
      ASSERT_LT(b.x1, b.x2);
      ASSERT_LT(b.y1, b.y2);
      // bbox of the changed pixels carrying this lesion's id must reach the box edges (within 2 px:
      // a GGO leaves vessels denser than its target unchanged, which can happen at an edge).
      int x0 = S, y0 = S, x1 = -1, y1 = -1;
      int64_t n = 0;
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) {
          const size_t p = size_t(y) * S + x;
          if (sl.lesion[p] != int(k + 1)) continue;
          ++n;
          if (sl.hu[p] == sl0.hu[p]) continue;
          x0 = std::min(x0, x);
          y0 = std::min(y0, y);
          x1 = std::max(x1, x + 1);
          y1 = std::max(y1, y + 1);
        }
      EXPECT_EQ(n, sl.lesions[k].area_px);
      const int edge = std::max({int(x0 - b.x1), int(y0 - b.y1), int(b.x2 - x1), int(b.y2 - y1)});
      worst_edge = std::max(worst_edge, edge);
      EXPECT_GE(x0, b.x1);
      EXPECT_GE(y0, b.y1);
      EXPECT_LE(x1, b.x2);
      EXPECT_LE(y1, b.y2);
      ++checked;
    }
  }
  std::printf("[err] box edge vs changed-pixel extent: max %d px over %d lesions\n", worst_edge, checked);
  EXPECT_LE(worst_edge, 2);
}

TEST(Synth, ClassMixNegativesAndHuStatistics) {
  SynthOptions o = small_opts(fresh_dir("mix"), 30, 3);
  o.negatives_fraction = 0.2;
  const SynthSummary s = write_synth_dataset(o);
  std::printf("[info] 30 slices: %d negatives, GGO %d, CD %d, GGO+CD %d\n", s.negatives, s.per_class[1],
              s.per_class[2], s.per_class[3]);
  EXPECT_EQ(s.images, 30);
  EXPECT_EQ(s.negatives, 6);  // round(0.2 * 30), exactly
  for (int c = 1; c <= 3; ++c) EXPECT_GT(s.per_class[c], 0) << "class " << c;

  // HU statistics over the rendered slices: lung < GGO < CD, in HU and after the lung window.
  const std::vector<uint8_t> neg = synth_negative_flags(o);
  double sum[4] = {0, 0, 0, 0}, win[4] = {0, 0, 0, 0};  // 0 = lesion-free lung, 1..3 classes
  int64_t cnt[4] = {0, 0, 0, 0}, dense[4] = {0, 0, 0, 0};  // dense: made > -100 HU by the lesion (not vessels)
  int64_t vessel_px = 0, vessel_kept = 0;
  for (int i = 0; i < 10; ++i) {
    const SliceSpec spec = synth_dataset_spec(o, i, neg[size_t(i)] != 0);
    const SynthSlice sl = render_slice(spec);
    SliceSpec bare = spec;
    bare.lesions.clear();
    const SynthSlice sl0 = render_slice(bare);
    for (size_t p = 0; p < sl.hu.size(); ++p) {
      if (!sl.lung[p]) continue;
      const int k = sl.lesion[p];
      const int cls = k == 0 ? 0 : sl.lesions[size_t(k - 1)].label;
      sum[cls] += sl.hu[p];
      win[cls] += lung_window_u8(sl.hu[p]);
      ++cnt[cls];
      dense[cls] += sl.hu[p] > -100 && sl0.hu[p] <= -100;
      if (cls == kSynthGGO && sl0.hu[p] > 0) {  // a vessel under a GGO
        ++vessel_px;
        vessel_kept += sl.hu[p] == sl0.hu[p];
      }
    }
  }
  double mean[4], wmean[4];
  for (int c = 0; c < 4; ++c) {
    ASSERT_GT(cnt[c], 0) << c;
    mean[c] = sum[c] / cnt[c];
    wmean[c] = win[c] / cnt[c];
  }
  std::printf("[info] mean HU lung %.1f GGO %.1f CD %.1f GGO+CD %.1f; window %.1f %.1f %.1f %.1f\n", mean[0],
              mean[1], mean[2], mean[3], wmean[0], wmean[1], wmean[2], wmean[3]);
  std::printf("[info] vessels under GGO left unchanged: %lld / %lld\n", (long long)vessel_kept,
              (long long)vessel_px);
  EXPECT_LT(mean[0], mean[1]);
  EXPECT_LT(mean[1], mean[2]);
  EXPECT_LT(wmean[0], wmean[1]);
  EXPECT_LT(wmean[1], wmean[2]);
  EXPECT_GT(mean[1], -800);
  EXPECT_LT(mean[1], -250);
  EXPECT_GT(mean[2], -300);
  // GGO+CD: a consolidated core in a GGO halo -> many more dense pixels than GGO, fewer than CD.
  double frac[4];
  for (int c = 0; c < 4; ++c) frac[c] = double(dense[c]) / double(cnt[c]);
  std::printf("[info] fraction of pixels made > -100 HU by the lesion: lung %.3f GGO %.3f CD %.3f GGO+CD %.3f\n", frac[0], frac[1],
              frac[2], frac[3]);
  EXPECT_GT(mean[3], mean[0]);
  EXPECT_GT(frac[3], 0.1);
  EXPECT_LT(frac[1], 0.02);  // GGO never consolidates
  EXPECT_LT(frac[3], frac[2]);
  EXPECT_GT(vessel_px, 0);
  EXPECT_GE(double(vessel_kept), 0.95 * double(vessel_px));
}

TEST(Synth, ViaCsvAndPngsOnDisk) {
  SynthOptions o = small_opts(fresh_dir("csv"), 6, 21);
  o.patients = 2;
  o.negatives_fraction = 0.34;  // round(2.04) = 2
  write_synth_dataset(o);
  const std::string csv = read_file(o.out + "/via_regions.csv");
  ASSERT_FALSE(csv.empty());
  EXPECT_NE(csv.back(), '\n');  // VIA writes no trailing newline
  const auto lines = lines_of(csv);
  EXPECT_EQ(lines[0],
            "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes");
  const std::vector<uint8_t> neg = synth_negative_flags(o);
  std::map<std::string, int> rows_per_file;
  for (size_t li = 1; li < lines.size(); ++li) {
    const auto f = split_csv(lines[li]);
    ASSERT_EQ(f.size(), 7u) << lines[li];
    rows_per_file[f[0]]++;
    const std::string path = o.out + "/images/" + f[0];
    EXPECT_EQ(std::stoll(f[1]), (long long)fs::file_size(path)) << f[0];
    const int idx = std::stoi(f[0].substr(6, 5));
    auto fa = nlohmann::json::parse(f[2]);
    EXPECT_EQ(fa["patient_id"], idx < 3 ? "P000" : "P001");
    const int count = std::stoi(f[3]);
    if (neg[size_t(idx)]) {
      EXPECT_EQ(count, 0);
      EXPECT_EQ(f[4], "0");
      EXPECT_EQ(f[5], "{}");
      EXPECT_EQ(f[6], "{}");
      continue;
    }
    ASSERT_GT(count, 0);
    auto sh = nlohmann::json::parse(f[5]);
    EXPECT_EQ(f[5].rfind("{\"name\":\"rect\",\"x\":", 0), 0u) << f[5];  // name first, no spaces
    // the row's box equals the generator's lesion box
    const SynthSlice sl = render_slice(synth_dataset_spec(o, idx, false));
    const Box& b = sl.lesions[size_t(std::stoi(f[4]))].box;
    EXPECT_EQ(sh["x"].get<int>(), int(b.x1));
    EXPECT_EQ(sh["y"].get<int>(), int(b.y1));
    EXPECT_EQ(sh["width"].get<int>(), int(b.x2 - b.x1));
    EXPECT_EQ(sh["height"].get<int>(), int(b.y2 - b.y1));
    auto ra = nlohmann::json::parse(f[6]);
    const std::string lab = ra["lesion"];
    EXPECT_TRUE(lab == "GGO" || lab == "CD" || lab == "GGO+CD") << lab;
  }
  EXPECT_EQ(rows_per_file.size(), 6u);
  // The PNG holds exactly the lung-windowed slice.
  const Image img = read_image(o.out + "/images/slice_00001.png");
  const Image want = render_slice(synth_dataset_spec(o, 1, neg[1] != 0)).window8();
  ASSERT_EQ(img.width, 256);
  ASSERT_EQ(img.channels, 1);
  EXPECT_EQ(img.data, want.data);
  // Refuses to write into the non-empty folder without force; works with it.
  try {
    write_synth_dataset(o);
    FAIL() << "overwrote a non-empty --out";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  o.force = true;
  EXPECT_NO_THROW(write_synth_dataset(o));
  // Lung window: hand values.
  EXPECT_EQ(lung_window_u8(-1350), 0);
  EXPECT_EQ(lung_window_u8(150), 255);
  EXPECT_EQ(lung_window_u8(-600), 128);  // 0.5 * 255 = 127.5 -> 128
  EXPECT_EQ(via_csv_json_field("{\"a\":1}"), "\"{\"\"a\"\":1}\"");
}

TEST(Synth, SeriesTrajectoriesAndZones) {
  SynthOptions o = small_opts(fresh_dir("series"), 3, 5);
  o.studies = 3;
  o.size = 192;
  const SynthSummary s = write_synth_series(o);
  auto m = nlohmann::json::parse(read_file(s.manifest_path));
  ASSERT_EQ(m["studies"].size(), 3u);
  std::map<std::string, std::vector<int64_t>> area;
  std::map<std::string, std::string> traj;
  std::string prev_date;
  for (const auto& st : m["studies"]) {
    const std::string date = st["date"];
    EXPECT_GT(date, prev_date);
    prev_date = date;
    const std::string folder = o.out + "/" + st["folder"].get<std::string>();
    EXPECT_TRUE(fs::exists(folder + "/manifest.json"));
    const std::string csv = read_file(folder + "/via_regions.csv");
    int64_t zsum = 0, lsum = 0;
    for (auto& [k, v] : st["zone_area_px"].items()) zsum += v.get<int64_t>();
    for (const auto& l : st["lesions"]) {
      const int64_t a = l["area_px"];
      lsum += a;
      area[l["id"]].push_back(a);
      traj[l["id"]] = l["trajectory"];
    }
    EXPECT_EQ(zsum, lsum);
    EXPECT_EQ(zsum, st["total_area_px"].get<int64_t>());
    int regions = 0;
    for (size_t li = 1; li < lines_of(csv).size(); ++li) regions += split_csv(lines_of(csv)[li])[5] != "{}";
    int present = 0;
    for (const auto& l : st["lesions"]) present += l["area_px"].get<int64_t>() > 0;
    EXPECT_EQ(regions, present) << folder;
  }
  int kinds[3] = {0, 0, 0};
  for (auto& [id, a] : area) {
    ASSERT_EQ(a.size(), 3u) << id;
    std::printf("[info] %s %-6s areas %lld %lld %lld\n", id.c_str(), traj[id].c_str(), (long long)a[0],
                (long long)a[1], (long long)a[2]);
    if (traj[id] == "grow") {
      ++kinds[0];
      EXPECT_LE(a[0], a[1]);
      EXPECT_LE(a[1], a[2]);
      EXPECT_LT(a[0], a[2]);
    } else if (traj[id] == "shrink") {
      ++kinds[1];
      EXPECT_GE(a[0], a[1]);
      EXPECT_GE(a[1], a[2]);
      EXPECT_GT(a[0], a[2]);
      EXPECT_GT(a[2], 0);
    } else {
      ++kinds[2];
      EXPECT_GT(a[0], 0);
      EXPECT_EQ(a[2], 0);
    }
  }
  EXPECT_GT(kinds[0] + kinds[1] + kinds[2], 0);
  // Same seed, same manifest.
  SynthOptions o2 = o;
  o2.out = fresh_dir("series2");
  write_synth_series(o2);
  EXPECT_EQ(read_file(s.manifest_path), read_file(o2.out + "/manifest.json"));
}

TEST(Synth, BadOptions) {
  SynthOptions o = small_opts(fresh_dir("bad"), 0, 1);
  EXPECT_THROW(write_synth_dataset(o), Error);
  o.count = 2;
  o.negatives_fraction = 1.5;
  EXPECT_THROW(write_synth_dataset(o), Error);
  o.negatives_fraction = 0;
  o.size = 10;
  EXPECT_THROW(write_synth_dataset(o), Error);
}
