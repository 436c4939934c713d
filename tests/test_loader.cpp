// DataLoader: shuffling and flip RNG, determinism across thread counts, flip of pixels and boxes against a painted
// rectangle, dataset vs TFRecord source, bucket padding, error propagation, shutdown mid-epoch, throughput.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "io/image.h"
#include "io/tfrecord.h"
#include "nn/device.h"
#include "nn/error.h"
#include "tests/test_util.h"
#include "train/loader.h"

namespace fs = std::filesystem;
using namespace ctdet;

namespace {

fs::path scratch(const std::string& name) {
  fs::path p = fs::path(CTDET_BINARY_DIR) / "test_loader_scratch" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Gray background with a textured rectangle at [x1,x2) x [y1,y2) of value 200..250.
Image painted(int w, int h, const Box& b, uint32_t seed) {
  Image img(w, h, 3, 8);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const bool in = x >= b.x1 && x < b.x2 && y >= b.y1 && y < b.y2;
      for (int c = 0; c < 3; ++c)
        img.at(y, x, c) = uint16_t(in ? 200 + (x * 7 + y * 3 + c + seed) % 50 : (x + 2 * y + c * 5 + seed) % 40);
    }
  return img;
}

// A dataset of n PNG images of varied size, one box each.
Dataset make_dataset(const fs::path& dir, int n) {
  Dataset ds;
  ds.class_names = default_class_names();
  for (int i = 0; i < n; ++i) {
    const int w = 40 + 7 * (i % 5), h = 30 + 5 * (i % 3);
    Box b{float(3 + i % 4), float(4 + i % 3), float(20 + i % 7), float(22 + i % 5), 1 + i % 3};
    ImageRecord r;
    r.file = (dir / str("img", i, ".png")).string();
    r.id = str("img", i);
    r.width = w;
    r.height = h;
    r.boxes.push_back(b);
    write_png(r.file, painted(w, h, b, uint32_t(i)));
    ds.images.push_back(r);
  }
  return ds;
}

LoaderOptions small_opts() {
  LoaderOptions o;
  o.min_side = 48;
  o.max_side = 96;
  o.batch_size = 2;
  o.prefetch = 2;
  o.seed = 1234;
  return o;
}

std::vector<Batch> drain(DataLoader& dl) {
  std::vector<Batch> out;
  Batch b;
  while (dl.next(&b)) {
    Batch copy;
    copy.epoch = b.epoch;
    copy.batch = b.batch;
    copy.n = b.n;
    copy.height = b.height;
    copy.width = b.width;
    copy.samples = b.samples;
    copy.data = HostBuffer(size_t(b.n) * 3 * b.height * b.width);
    std::memcpy(copy.data.data(), b.data.data(), copy.data.size() * sizeof(float));
    out.push_back(std::move(copy));
  }
  return out;
}

void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].n, b[i].n);
    ASSERT_EQ(a[i].height, b[i].height);
    ASSERT_EQ(a[i].width, b[i].width);
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].batch, b[i].batch);
    for (int j = 0; j < a[i].n; ++j) {
      const BatchSample &p = a[i].samples[j], &q = b[i].samples[j];
      EXPECT_EQ(p.image_id, q.image_id);
      EXPECT_EQ(p.flipped, q.flipped);
      ASSERT_EQ(p.boxes.size(), q.boxes.size());
      for (size_t k = 0; k < p.boxes.size(); ++k) {
        EXPECT_EQ(p.boxes[k].x1, q.boxes[k].x1);
        EXPECT_EQ(p.boxes[k].x2, q.boxes[k].x2);
        EXPECT_EQ(p.boxes[k].y1, q.boxes[k].y1);
        EXPECT_EQ(p.boxes[k].label, q.boxes[k].label);
      }
    }
    auto e = ctdet::testing::compare(a[i].data.data(), b[i].data.data(), a[i].data.size());
    max_diff = std::max(max_diff, e.max_abs);
  }
  std::printf("[err] %-48s max_abs=%.3e over %zu batches\n", what.c_str(), max_diff, a.size());
  EXPECT_EQ(max_diff, 0);
}

// error_of(f): the message of the ctdet::Error f must throw (tests/test_util.h expect_error).
inline std::string error_of(const std::function<void()>& f) { return ctdet::testing::expect_error(f); }

}  // namespace

TEST(Loader, EpochOrderAndFlipRng) {
  const size_t n = 1000;
  auto o0 = epoch_order(n, 7, 0, true), o0b = epoch_order(n, 7, 0, true), o1 = epoch_order(n, 7, 1, true);
  EXPECT_EQ(o0, o0b);
  EXPECT_NE(o0, o1);
  EXPECT_EQ(std::set<size_t>(o0.begin(), o0.end()).size(), n);  // a permutation
  EXPECT_EQ(std::set<size_t>(o1.begin(), o1.end()).size(), n);
  auto id = epoch_order(5, 7, 3, false);
  EXPECT_EQ(id, (std::vector<size_t>{0, 1, 2, 3, 4}));
  // Position-0 element over many epochs is roughly uniform (chi-square over 10 buckets of 20000 draws).
  std::vector<int> hist(10, 0);
  for (int e = 0; e < 20000; ++e) hist[epoch_order(10, 99, e, true)[0]]++;
  double chi2 = 0;
  for (int h : hist) chi2 += (h - 2000.0) * (h - 2000.0) / 2000.0;
  std::printf("shuffle first-element chi2 (9 dof) = %.2f\n", chi2);
  EXPECT_LT(chi2, 27.9);  // p = 0.001
  int flips = 0;
  for (size_t p = 0; p < 20000; ++p) flips += sample_flipped(5, 2, p, 0.5);
  std::printf("flip rate over 20000 samples = %.4f (expect 0.5, sd 0.0035)\n", flips / 20000.0);
  EXPECT_NEAR(flips / 20000.0, 0.5, 0.0175);
  EXPECT_FALSE(sample_flipped(5, 2, 3, 0.0));
}

TEST(Loader, DeterministicAcrossThreadCountsAndSources) {
  fs::path dir = scratch("det");
  Dataset ds = make_dataset(dir, 11);
  LoaderOptions o = small_opts();
  o.num_epochs = 2;
  o.resize = ResizeMode::kBucket;
  std::vector<Batch> a, b, c;
  {
    o.num_threads = 1;
    DataLoader dl(dataset_source(ds), o);
    EXPECT_EQ(dl.batches_per_epoch(), 6);
    a = drain(dl);
  }
  {
    o.num_threads = 3;
    DataLoader dl(dataset_source(ds), o);
    b = drain(dl);
  }
  expect_same(a, b, "1 thread vs 3 threads (bucket, 2 epochs)");
  // The same images through TFRecord shards (encoded bytes read by offset) give the same batches.
  ShardedTFRecordWriter w((dir / "train").string(), 3);
  for (auto& r : ds.images) {
    ExampleImage ex;
    ex.record = r;
    std::ifstream f(r.file, std::ios::binary);
    ex.encoded.assign(std::istreambuf_iterator<char>(f), {});
    ex.format = "png";
    w.write(encode_example(ex, ds.class_names));
  }
  w.close();
  // Shards interleave records round-robin, so compare sample by sample through the image ids.
  {
    o.num_threads = 2;
    o.shuffle = false;
    o.num_epochs = 1;
    o.batch_size = 1;
    o.flip_prob = 0;  // flips follow positions, and the shards hold the images in another order
    DataLoader dl_tf(tfrecord_source(w.paths(), ds.class_names), o);
    DataLoader dl_ds(dataset_source(ds), o);
    auto t = drain(dl_tf), d = drain(dl_ds);
    ASSERT_EQ(t.size(), 11u);
    ASSERT_EQ(d.size(), 11u);
    std::map<std::string, const Batch*> by_id;
    for (auto& x : d) by_id[x.samples[0].image_id] = &x;
    double worst = 0;
    for (auto& x : t) {
      const Batch* y = by_id.at(x.samples[0].image_id);
      ASSERT_EQ(x.data.size(), y->data.size());
      worst = std::max(worst, ctdet::testing::compare(x.data.data(), y->data.data(), x.data.size()).max_abs);
      EXPECT_EQ(x.samples[0].boxes[0].x2, y->samples[0].boxes[0].x2);
    }
    std::printf("[err] %-48s max_abs=%.3e\n", "TFRecord source vs dataset source", worst);
    EXPECT_EQ(worst, 0);
  }
  // Epochs are shuffled differently; every image appears once per epoch.
  std::vector<std::string> e0, e1;
  for (auto& x : a)
    for (auto& s : x.samples) (x.epoch == 0 ? e0 : e1).push_back(s.image_id);
  EXPECT_EQ(e0.size(), 11u);
  EXPECT_EQ(std::set<std::string>(e0.begin(), e0.end()).size(), 11u);
  EXPECT_NE(e0, e1);
  // Bucket: sides multiples of 16, samples top-left, padding zero; pinned only with a device.
  for (auto& x : a) {
    EXPECT_EQ(x.height % 16, 0);
    EXPECT_EQ(x.width % 16, 0);
    EXPECT_LE(std::max(x.height, x.width), 96);
    if (!cuda_device_available()) {
      EXPECT_FALSE(x.data.pinned());
    }
    for (int j = 0; j < x.n; ++j) {
      const BatchSample& s = x.samples[j];
      const float* img = x.image(j);
      for (int c = 0; c < 3; ++c) {
        if (s.width < x.width) {
          EXPECT_EQ(img[(size_t(c) * x.height + 0) * x.width + s.width], 0.f);
        }
        if (s.height < x.height) {
          EXPECT_EQ(img[(size_t(c) * x.height + s.height) * x.width + 0], 0.f);
        }
      }
    }
  }
}

TEST(Loader, FlipMovesPixelsAndBoxes) {
  fs::path dir = scratch("flip");
  // 64x64 image, rectangle x in [10,30), y in [20,40). min_side=max_side=64 -> scale 1 (no resampling).
  Box box{10, 20, 30, 40, 2};
  Dataset ds;
  ImageRecord r;
  r.file = (dir / "rect.png").string();
  r.id = "rect";
  r.width = r.height = 64;
  r.boxes = {box};
  write_png(r.file, painted(64, 64, box, 0));
  ds.images = {r};
  LoaderOptions o;
  o.min_side = 64;
  o.max_side = 64;
  o.norm = Normalization::kNone;
  auto src = dataset_source(ds);
  BatchSample plain, flipped;
  std::vector<float> a, b;
  load_sample(*src, 0, o, false, &plain, &a);
  load_sample(*src, 0, o, true, &flipped, &b);
  ASSERT_EQ(plain.width, 64);
  // Bright columns (value >= 200 in channel 0, row 30) give the box in each image.
  auto bright_extent = [](const std::vector<float>& chw, int w, int row) {
    int lo = w, hi = -1;
    for (int x = 0; x < w; ++x)
      if (chw[size_t(row) * w + x] >= 200) lo = std::min(lo, x), hi = std::max(hi, x);
    return std::make_pair(lo, hi + 1);
  };
  auto pe = bright_extent(a, 64, 30), fe = bright_extent(b, 64, 30);
  std::printf("plain: bright x [%d,%d) box x [%g,%g); flipped: bright x [%d,%d) box x [%g,%g)\n", pe.first,
              pe.second, plain.boxes[0].x1, plain.boxes[0].x2, fe.first, fe.second, flipped.boxes[0].x1,
              flipped.boxes[0].x2);
  EXPECT_EQ(pe.first, 10);
  EXPECT_EQ(pe.second, 30);
  EXPECT_EQ(fe.first, 34);  // 64 - 30
  EXPECT_EQ(fe.second, 54); // 64 - 10
  EXPECT_FLOAT_EQ(flipped.boxes[0].x1, 34);
  EXPECT_FLOAT_EQ(flipped.boxes[0].x2, 54);
  EXPECT_FLOAT_EQ(flipped.boxes[0].y1, 20);
  EXPECT_FLOAT_EQ(flipped.boxes[0].y2, 40);
  EXPECT_EQ(flipped.boxes[0].label, 2);
  // Pixel mirror: b(c, y, x) == a(c, y, 63 - x) exactly.
  double worst = 0;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        worst = std::max(worst, double(std::abs(b[(size_t(c) * 64 + y) * 64 + x] - a[(size_t(c) * 64 + y) * 64 + 63 - x])));
  std::printf("[err] %-48s max_abs=%.3e\n", "flipped image vs mirrored plain image", worst);
  EXPECT_EQ(worst, 0);
  // With a 2x upscale (min_side 128): boxes scale by 2, then flip with W = 128.
  o.min_side = 128;
  o.max_side = 1024;
  load_sample(*src, 0, o, true, &flipped, &b);
  EXPECT_EQ(flipped.width, 128);
  EXPECT_DOUBLE_EQ(flipped.scale_x, 2.0);
  EXPECT_FLOAT_EQ(flipped.boxes[0].x1, 128 - 60);
  EXPECT_FLOAT_EQ(flipped.boxes[0].x2, 128 - 20);
  EXPECT_FLOAT_EQ(flipped.boxes[0].y1, 40);
  EXPECT_FLOAT_EQ(flipped.boxes[0].y2, 80);
}

TEST(Loader, CorruptImageErrorReachesConsumerInOrder) {
  fs::path dir = scratch("corrupt");
  Dataset ds = make_dataset(dir, 6);
  std::ofstream(ds.images[3].file, std::ios::binary | std::ios::trunc) << "\x89PNG\r\n\x1a\ngarbage, not a png";
  LoaderOptions o = small_opts();
  o.batch_size = 1;
  o.shuffle = false;
  o.num_threads = 3;
  o.prefetch = 4;
  DataLoader dl(dataset_source(ds), o);
  Batch b;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(dl.next(&b));
    EXPECT_EQ(b.samples[0].image_id, str("img", i));
  }
  std::string msg = error_of([&] { dl.next(&b); });
  EXPECT_NE(msg.find("img3.png"), std::string::npos);
  EXPECT_NE(msg.find("epoch 0 batch 3"), std::string::npos);
  // The loader goes on after the error (the caller decides); the next batches still come.
  ASSERT_TRUE(dl.next(&b));
  EXPECT_EQ(b.samples[0].image_id, "img4");
  // A missing file and a size mismatch are errors too.
  Dataset bad = ds;
  bad.images.resize(1);
  bad.images[0].file = (dir / "nope.png").string();
  DataLoader dl2(dataset_source(bad), o);
  EXPECT_NE(error_of([&] { dl2.next(&b); }).find("nope.png"), std::string::npos);
  Dataset wrong = make_dataset(dir, 1);
  wrong.images[0].width += 1;
  DataLoader dl3(dataset_source(wrong), o);
  EXPECT_NE(error_of([&] { dl3.next(&b); }).find("annotations are for"), std::string::npos);
}

TEST(Loader, TFRecordIndexAndTruncatedShard) {
  fs::path dir = scratch("tfindex");
  const std::string p = (dir / "a.tfrecord").string();
  {
    TFRecordWriter w(p);
    w.write("first");
    w.write(std::string(1000, 'x'));
    w.write("");
    w.close();
  }
  // Offsets by hand: each record takes 16 bytes of framing plus its data.
  std::vector<uint64_t> offs = index_tfrecord_file(p);
  EXPECT_EQ(offs, (std::vector<uint64_t>{0, 21, 1037}));
  EXPECT_EQ(read_tfrecord_at(p, 21, 1), std::string(1000, 'x'));
  EXPECT_EQ(read_tfrecord_at(p, 1037, 2), "");
  fs::resize_file(p, 1000);  // cuts the second record
  std::string msg = error_of([&] { index_tfrecord_file(p); });
  EXPECT_NE(msg.find("record 1 at byte 21"), std::string::npos);
  EXPECT_NE(msg.find("a.tfrecord"), std::string::npos);
  EXPECT_NE(error_of([&] { tfrecord_source({p}, default_class_names()); }).find("runs past the end"),
            std::string::npos);
}

TEST(Loader, ShutdownMidEpochAndEndless) {
  fs::path dir = scratch("shutdown");
  Dataset ds = make_dataset(dir, 8);
  LoaderOptions o = small_opts();
  o.num_threads = 3;
  o.num_epochs = 0;  // endless
  const auto t0 = std::chrono::steady_clock::now();
  {
    DataLoader dl(dataset_source(ds), o);  // destroyed without a single next()
  }
  int64_t seen = 0;
  {
    DataLoader dl(dataset_source(ds), o);
    Batch b;
    for (int i = 0; i < 9; ++i) {  // crosses two epoch boundaries (4 batches per epoch)
      ASSERT_TRUE(dl.next(&b));
      EXPECT_EQ(b.epoch, i / 4);
      EXPECT_EQ(b.batch, i % 4);
      seen += b.n;
    }
    LoaderStats s = dl.stats();
    EXPECT_GE(s.images, seen);
    EXPECT_LE(s.batches, 9 + o.prefetch);  // bounded read-ahead
  }
  std::printf("two loaders started and stopped mid-epoch in %.3f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  // Resume: first_epoch / first_batch continue the same sequence.
  o.num_threads = 2;
  o.num_epochs = 2;
  std::vector<Batch> full, resumed;
  {
    DataLoader dl(dataset_source(ds), o);
    full = drain(dl);
  }
  o.first_epoch = 1;
  o.first_batch = 2;
  o.num_epochs = 1;
  {
    DataLoader dl(dataset_source(ds), o);
    resumed = drain(dl);
  }
  std::vector<Batch> tail;
  for (size_t i = 6; i < full.size(); ++i) tail.push_back(std::move(full[i]));
  expect_same(tail, resumed, "resume at epoch 1 batch 2 vs full run");
}

TEST(Loader, ThroughputJpeg512) {
  fs::path dir = scratch("speed");
  Dataset ds;
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    Image img(512, 512, 1, 8);  // CT-like: a bright ring (body) with darker lungs and noise
    for (int y = 0; y < 512; ++y)
      for (int x = 0; x < 512; ++x) {
        const double r = std::hypot(x - 256.0, (y - 256.0) * 1.3);
        int v = r < 200 ? (std::hypot(std::abs(x - 256.0) - 90, y - 250.0) < 70 ? 30 : 160) : 0;
        v += int((x * 131 + y * 71 + i * 17) % 23);
        img.at(y, x) = uint16_t(std::min(v, 255));
      }
    ImageRecord r;
    r.file = (dir / str("slice", i, ".jpg")).string();
    r.id = str("slice", i);
    r.boxes.push_back(Box{100, 120, 180, 200, 1});
    write_jpeg(r.file, img, 90);
    ds.images.push_back(r);
  }
  LoaderOptions o;
  o.num_threads = 2;
  o.prefetch = 4;
  o.num_epochs = 1;
  DataLoader dl(dataset_source(ds), o);
  Batch b;
  int got = 0;
  while (dl.next(&b)) {
    ++got;
    EXPECT_EQ(b.height, 600);
    EXPECT_EQ(b.width, 600);
  }
  EXPECT_EQ(got, n);
  LoaderStats s = dl.stats();
  std::printf("[perf] decode+resize(600x600)+normalise+flip, 512x512 gray JPEG, 2 threads: %.1f images/s "
              "(%lld images in %.2f s, consumer waited %.2f s)\n",
              s.images_per_sec, (long long)s.images, s.seconds, s.consumer_wait_s);
  const fs::path medseg = "/work/shared/data/medseg_covid_semiseg/images/train";
  if (fs::is_directory(medseg)) {
    Dataset m;
    for (auto& e : fs::directory_iterator(medseg)) {
      if (e.path().extension() != ".jpg") continue;
      ImageRecord r;
      r.file = e.path().string();
      r.id = e.path().filename().string();
      m.images.push_back(r);
    }
    if (!m.images.empty()) {
      DataLoader dm(dataset_source(m), o);
      while (dm.next(&b)) {
      }
      LoaderStats sm = dm.stats();
      std::printf("[perf] same pipeline on %lld MedSeg JPEGs (%s): %.1f images/s\n", (long long)sm.images,
                  medseg.c_str(), sm.images_per_sec);
    }
  }
}
