#include "train/loader.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "io/image.h"
#include "io/tfrecord.h"
#include "nn/device.h"
#include "nn/error.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace ctdet {

// ---- randomness ------------------------------------------------------------------------------------
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t s = a ^ (b * 0xd1b54a32d192ed03ull);
  return splitmix64(s);
}

// Uniform in [0, n) without modulo bias (n > 0).
uint64_t below(uint64_t& state, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = splitmix64(state);
  while (r >= limit);
  return r % n;
}

}  // namespace

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle) return order;
  uint64_t state = mix(mix(seed, 0x5348554646ull), uint64_t(epoch));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[below(state, i)]);
  return order;
}

bool sample_flipped(uint64_t seed, int64_t epoch, size_t pos, double flip_prob) {
  if (flip_prob <= 0) return false;
  uint64_t state = mix(mix(mix(seed, 0x464c4950ull), uint64_t(epoch)), uint64_t(pos));
  const double u = double(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  return u < flip_prob;
}

// ---- sources ---------------------------------------------------------------------------------------
namespace {

class DatasetSource : public SampleSource {
 public:
  explicit DatasetSource(Dataset ds) : ds_(std::move(ds)) {}
  size_t size() const override { return ds_.images.size(); }
  LoaderItem get(size_t i) const override { return LoaderItem{ds_.images.at(i), {}}; }
  std::string describe(size_t i) const override {
    const ImageRecord& r = ds_.images.at(i);
    return str("image '", r.id, "' (file '", r.file, "')");
  }

 private:
  Dataset ds_;
};

class TFRecordSource : public SampleSource {
 public:
  TFRecordSource(const std::vector<std::string>& shards, std::vector<std::string> class_names, bool check_crc)
      : shards_(shards), classes_(std::move(class_names)), check_crc_(check_crc) {
    CTDET_CHECK(!shards_.empty(), "tfrecord_source: no shard files given");
    for (size_t s = 0; s < shards_.size(); ++s) {
      const std::vector<uint64_t> offs = index_tfrecord_file(shards_[s]);
      for (size_t r = 0; r < offs.size(); ++r) entries_.push_back({s, offs[r], int64_t(r)});
    }
  }
  size_t size() const override { return entries_.size(); }
  LoaderItem get(size_t i) const override {
    const Entry& e = entries_.at(i);
    const std::string bytes = read_tfrecord_at(shards_[e.shard], e.offset, e.record, check_crc_);
    ExampleImage ex = decode_example(bytes, classes_, describe(i));
    LoaderItem it;
    it.record = std::move(ex.record);
    it.encoded = std::move(ex.encoded);
    CTDET_CHECK(!it.encoded.empty(), describe(i), ": image/encoded is empty");
    return it;
  }
  std::string describe(size_t i) const override {
    const Entry& e = entries_.at(i);
    return str("record ", e.record, " of '", shards_[e.shard], "'");
  }

 private:
  struct Entry {
    size_t shard;
    uint64_t offset;
    int64_t record;
  };
  std::vector<std::string> shards_, classes_;
  bool check_crc_;
  std::vector<Entry> entries_;
};

}  // namespace

std::shared_ptr<SampleSource> dataset_source(Dataset ds) { return std::make_shared<DatasetSource>(std::move(ds)); }
std::shared_ptr<SampleSource> tfrecord_source(const std::vector<std::string>& shards,
                                              const std::vector<std::string>& class_names, bool check_crc) {
  return std::make_shared<TFRecordSource>(shards, class_names, check_crc);
}


// ---- one sample ------------------------------------------------------------------------------------
void load_sample(const SampleSource& src, size_t index, const LoaderOptions& opt, bool flip, BatchSample* out,
                 std::vector<float>* chw) {
  LoaderItem it = src.get(index);
  const ImageRecord& r = it.record;
  Image img = it.encoded.empty() ? read_image(r.file)
                                 : decode_image(it.encoded.data(), it.encoded.size(), src.describe(index));
  CTDET_CHECK((r.width <= 0 && r.height <= 0) || (r.width == img.width && r.height == img.height),
              src.describe(index), ": the annotations are for ", r.width, "x", r.height, " but the image is ",
              img.width, "x", img.height);
  NetInput in = preprocess_image(img, opt.norm, opt.min_side, opt.max_side);
  out->image_id = r.id;
  out->file = r.file;
  out->index = index;
  out->orig_height = in.orig_height;
  out->orig_width = in.orig_width;
  out->height = in.height;
  out->width = in.width;
  out->scale_y = in.scale_y;
  out->scale_x = in.scale_x;
  out->flipped = flip;
  out->boxes.clear();
  const float W = float(in.width);
  for (const Box& b : r.boxes) {
    Box n = b;
    n.x1 = float(b.x1 * in.scale_x);
    n.x2 = float(b.x2 * in.scale_x);
    n.y1 = float(b.y1 * in.scale_y);
    n.y2 = float(b.y2 * in.scale_y);
    if (flip) {
      const float x1 = W - n.x2, x2 = W - n.x1;
      n.x1 = x1;
      n.x2 = x2;
    }
    out->boxes.push_back(n);
  }
  if (flip) {
    const size_t w = size_t(in.width);
    for (size_t row = 0; row < size_t(3) * in.height; ++row) {
      float* p = in.chw.data() + row * w;
      std::reverse(p, p + w);
    }
  }
  *chw = std::move(in.chw);
}

// ---- the loader ------------------------------------------------------------------------------------
DataLoader::DataLoader(std::shared_ptr<SampleSource> source, LoaderOptions opt)
    : src_(std::move(source)), opt_(opt) {
  CTDET_CHECK(src_ != nullptr, "DataLoader: no source");
  CTDET_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size ", opt_.batch_size, " must be >= 1");
  CTDET_CHECK(opt_.num_threads >= 1, "DataLoader: num_threads ", opt_.num_threads, " must be >= 1");
  CTDET_CHECK(opt_.prefetch >= 1, "DataLoader: prefetch ", opt_.prefetch, " must be >= 1");
  CTDET_CHECK(opt_.num_epochs >= 0 && opt_.first_epoch >= 0 && opt_.first_batch >= 0,
              "DataLoader: negative num_epochs / first_epoch / first_batch");
  CTDET_CHECK(opt_.resize != ResizeMode::kBucket || opt_.max_side % 16 == 0, "DataLoader: bucket mode needs max_side ",
              opt_.max_side, " to be a multiple of 16");
  const size_t n = src_->size();
  CTDET_CHECK(n > 0, "DataLoader: the source has no samples");
  const int64_t bs = opt_.batch_size;
  per_epoch_ = opt_.drop_last ? int64_t(n) / bs : (int64_t(n) + bs - 1) / bs;
  CTDET_CHECK(per_epoch_ > 0, "DataLoader: ", n, " samples make no batch of ", bs, " with drop_last");
  CTDET_CHECK(opt_.first_batch < per_epoch_, "DataLoader: first_batch ", opt_.first_batch, " but an epoch has ",
              per_epoch_, " batches");
  begin_ = opt_.first_epoch * per_epoch_ + opt_.first_batch;
  end_ = opt_.num_epochs == 0 ? -1 : (opt_.first_epoch + opt_.num_epochs) * per_epoch_;
  next_claim_ = next_out_ = begin_;
  t0_ = std::chrono::steady_clock::now();
  threads_.reserve(size_t(opt_.num_threads));
  for (int i = 0; i < opt_.num_threads; ++i) threads_.emplace_back([this] { worker(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  cv_ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void DataLoader::worker() {
  for (;;) {
    int64_t g;
    std::shared_ptr<const std::vector<size_t>> order;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] {
        return stop_ || (end_ >= 0 && next_claim_ >= end_) || next_claim_ < next_out_ + opt_.prefetch;
      });
      if (stop_ || (end_ >= 0 && next_claim_ >= end_)) return;
      g = next_claim_++;
      const int64_t epoch = g / per_epoch_;
      auto it = orders_.find(epoch);
      if (it == orders_.end())
        it = orders_.emplace(epoch, std::make_shared<const std::vector<size_t>>(
                                        epoch_order(src_->size(), opt_.seed, epoch, opt_.shuffle))).first;
      order = it->second;
      // Epochs that every worker has moved past are forgotten.
      while (!orders_.empty() && orders_.begin()->first < next_out_ / per_epoch_ && orders_.begin()->first < epoch)
        orders_.erase(orders_.begin());
    }
    Slot slot;
    try {
      produce(g, *order, &slot);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      slot.done = true;
      if (!slot.error) {
        images_ += slot.batch.n;
        ++batches_;
      }
      slots_[g] = std::move(slot);
    }
    cv_ready_.notify_all();
  }
}

void DataLoader::produce(int64_t g, const std::vector<size_t>& order, Slot* slot) {
  Batch& b = slot->batch;
  b.epoch = g / per_epoch_;
  b.batch = g % per_epoch_;
  const size_t n = order.size();
  const size_t first = size_t(b.batch) * size_t(opt_.batch_size);
  const size_t last = std::min(n, first + size_t(opt_.batch_size));
  b.n = int(last - first);
  b.samples.resize(size_t(b.n));
  std::vector<std::vector<float>> chw(size_t(b.n));
  int H = 0, W = 0;
  for (size_t p = first; p < last; ++p) {
    const size_t idx = order[p];
    const bool flip = sample_flipped(opt_.seed, b.epoch, p, opt_.flip_prob);
    BatchSample& s = b.samples[p - first];
    try {
      load_sample(*src_, idx, opt_, flip, &s, &chw[p - first]);
    } catch (const std::exception& e) {
      throw Error(str("DataLoader: epoch ", b.epoch, " batch ", b.batch, ", sample ", idx, " (",
                      src_->describe(idx), "): ", e.what()));
    }
    H = std::max(H, s.height);
    W = std::max(W, s.width);
  }
  if (opt_.resize == ResizeMode::kBucket) {
    H = (H + 15) / 16 * 16;
    W = (W + 15) / 16 * 16;
  }
  b.height = H;
  b.width = W;
  const size_t need = size_t(b.n) * 3 * H * W;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].size() >= need) {
        b.data = std::move(free_[i]);
        free_.erase(free_.begin() + long(i));
        break;
      }
    }
  }
  if (b.data.size() < need) b.data = HostBuffer(need);
  std::memset(b.data.data(), 0, need * sizeof(float));
  for (int i = 0; i < b.n; ++i) {
    const BatchSample& s = b.samples[size_t(i)];
    const float* from = chw[size_t(i)].data();
    float* to = b.image(i);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < s.height; ++y)
        std::memcpy(to + (size_t(c) * H + y) * W, from + (size_t(c) * s.height + y) * s.width,
                    sizeof(float) * size_t(s.width));
  }
}

bool DataLoader::next(Batch* out) {
  std::unique_lock<std::mutex> lk(mu_);
  if (end_ >= 0 && next_out_ >= end_) return false;
  const int64_t g = next_out_;
  const auto t_wait = std::chrono::steady_clock::now();
  cv_ready_.wait(lk, [&] {
    auto it = slots_.find(g);
    return it != slots_.end() && it->second.done;
  });
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_wait).count();
  Slot slot = std::move(slots_[g]);
  slots_.erase(g);
  ++next_out_;
  // The caller's previous buffer goes back to the pool (bounded by what can be in flight).
  if (out->data.size() > 0 && free_.size() < size_t(opt_.prefetch + opt_.num_threads))
    free_.push_back(std::move(out->data));
  lk.unlock();
  cv_work_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  *out = std::move(slot.batch);
  return true;
}

LoaderStats DataLoader::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  LoaderStats s;
  s.images = images_;
  s.batches = batches_;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  s.images_per_sec = s.seconds > 0 ? double(images_) / s.seconds : 0;
  s.consumer_wait_s = wait_s_;
  return s;
}

}  // namespace ctdet
