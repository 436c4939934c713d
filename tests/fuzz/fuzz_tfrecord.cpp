// libFuzzer target: TFRecord framing (sequential reader, header index, read by offset) and tf.train.Example
// decoding. The input is written to a scratch file because the readers take paths. Malformed input must end in
// ctdet::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/tfrecord.h"
#include "nn/error.h"

namespace {
const std::vector<std::string> kClasses = {"GGO", "CD", "GGO+CD"};

std::string scratch_path() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/ctdet_fuzz_tfrecord." + std::to_string(::getpid());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  // The raw bytes as one Example.
  try {
    ctdet::decode_example(std::string(reinterpret_cast<const char*>(data), size), kClasses, "fuzz");
  } catch (const ctdet::Error&) {
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  // Sequential read without CRC checks, so mutations reach the Example decoder.
  try {
    ctdet::TFRecordReader r(path, /*check_crc=*/false);
    std::string rec;
    for (int i = 0; i < 64 && r.next(&rec); ++i) {
      try {
        ctdet::decode_example(rec, kClasses, "fuzz record");
      } catch (const ctdet::Error&) {
      }
    }
  } catch (const ctdet::Error&) {
  }
  // Header index + random access with CRC checks.
  try {
    std::vector<uint64_t> offs = ctdet::index_tfrecord_file(path);
    for (size_t i = 0; i < offs.size() && i < 64; ++i) ctdet::read_tfrecord_at(path, offs[i], int64_t(i), true);
  } catch (const ctdet::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
