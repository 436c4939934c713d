// The training data loader: background threads decode, resize, normalise and augment images into batches that
// the trainer takes in a fixed order.
//
// Sources: a Dataset whose ImageRecord::file are image paths (PNG/JPEG), or TFRecord shards of tf.train.Example
// (io/tfrecord.h; records are indexed once, then read by offset from any thread).
//
// Per sample: decode (io/image.h) -> RGB float -> keep-aspect TF1 bilinear resize (io/resize.h, min_side/max_side)
// -> normalisation -> CHW -> horizontal flip with probability flip_prob. Boxes are scaled into network-input pixels
// (x * scale_x, y * scale_y) and flipped with the resized width W: x1' = W - x2, x2' = W - x1.
// Batch layout: (N, 3, H, W) with H, W the largest sample in the batch; in kBucket mode H and W are rounded up to
// a multiple of 16 (long side <= max_side, itself a multiple of 16). Samples sit at the top-left; the padding
// is 0 in the normalised space (the mean pixel for kResNet, mid-gray for kInception).
//
// Determinism: the epoch order is a Fisher-Yates shuffle driven by splitmix64(seed, epoch); the flip of the sample
// at position p of epoch e is drawn from an RNG seeded by (seed, e, p). Workers produce whole batches into an
// in-order reorder buffer, so the batches are bitwise identical for any num_threads.
// Flow control: workers claim batch numbers in order and never run more than `prefetch` batches ahead of the
// consumer, which bounds memory. A worker that fails (corrupt image, bad record) stores the error in its slot;
// next() rethrows it as ctdet::Error naming the sample and file when the consumer reaches that batch (never a
// skip, never a hang). The destructor stops and joins the workers, also mid-epoch.
//
// Pinned memory: built with CUDA (CTDET_WITH_CUDA=1) and a device present, batch buffers come from
// cudaHostAlloc so host-to-device copies can be asynchronous; otherwise (CPU build, no device, or cudaHostAlloc
// failing) they are ordinary 64-byte aligned host memory. Batch::pinned says which.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/annotations.h"
#include "io/batch.h"
#include "io/resize.h"

namespace ctdet {

// One sample as a source yields it: the record and, when it came from a TFRecord, its encoded image bytes.
struct LoaderItem {
  ImageRecord record;   // boxes in original pixels; width/height 0 when unknown
  std::string encoded;  // empty: decode record.file from disk
};

// Random access to samples; get() is called concurrently from the worker threads.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual size_t size() const = 0;
  virtual LoaderItem get(size_t i) const = 0;
  virtual std::string describe(size_t i) const = 0;  // "file 'x.jpg'" / "record 12 of 'a.tfrecord'"
};

std::shared_ptr<SampleSource> dataset_source(Dataset ds);
std::shared_ptr<SampleSource> tfrecord_source(const std::vector<std::string>& shards,
                                              const std::vector<std::string>& class_names, bool check_crc = true);

enum class ResizeMode { kKeepAspect, kBucket };

struct LoaderOptions {
  int num_threads = 2;
  int batch_size = 1;
  int prefetch = 4;             // batches produced ahead of the consumer (>= 1)
  uint64_t seed = 0;
  bool shuffle = true;
  double flip_prob = 0.5;       // 0 disables the horizontal flip
  Normalization norm = Normalization::kResNet;
  int min_side = 600, max_side = 1024;
  ResizeMode resize = ResizeMode::kKeepAspect;
  bool drop_last = false;       // drop a final short batch of an epoch
  int64_t num_epochs = 1;       // 0: endless
  int64_t first_epoch = 0;      // resume: start at this epoch ...
  int64_t first_batch = 0;      // ... and this batch within it
};

struct LoaderStats {
  int64_t images = 0, batches = 0;
  double seconds = 0;           // since the loader started
  double images_per_sec = 0;
  double consumer_wait_s = 0;   // time next() spent waiting for a batch (input-bound when large)
};

// The order of one epoch: a permutation of [0, n) (identity without shuffle).
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle);
// Whether the sample at position `pos` of `epoch` is flipped (the per-sample RNG of the header comment).
bool sample_flipped(uint64_t seed, int64_t epoch, size_t pos, double flip_prob);
// One sample through the whole pipeline: fills *out (sizes, scales, boxes in network pixels) and *chw with the
// (3, out->height, out->width) normalised, possibly flipped image. Exposed for tests.
void load_sample(const SampleSource& src, size_t index, const LoaderOptions& opt, bool flip, BatchSample* out,
                 std::vector<float>* chw);

class DataLoader {
 public:
  DataLoader(std::shared_ptr<SampleSource> source, LoaderOptions opt);
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch in order; false after the last epoch. Rethrows a worker's error (ctdet::Error).
  bool next(Batch* out);
  int64_t batches_per_epoch() const { return per_epoch_; }
  LoaderStats stats() const;

 private:
  struct Slot {
    bool done = false;
    Batch batch;
    std::exception_ptr error;
  };
  void worker();
  void produce(int64_t global, const std::vector<size_t>& order, Slot* slot);

  std::shared_ptr<SampleSource> src_;
  LoaderOptions opt_;
  int64_t per_epoch_ = 0;
  int64_t begin_ = 0, end_ = 0;  // global batch numbers [begin, end); end < 0: endless

  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  int64_t next_claim_ = 0, next_out_ = 0;
  std::map<int64_t, Slot> slots_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::map<int64_t, std::shared_ptr<const std::vector<size_t>>> orders_;  // epoch permutations (under mu_)
  std::vector<HostBuffer> free_;  // buffers handed back through next(), reused by the workers (under mu_)

  std::chrono::steady_clock::time_point t0_;
  int64_t images_ = 0, batches_ = 0;
  double wait_s_ = 0;
};

}  // namespace ctdet
