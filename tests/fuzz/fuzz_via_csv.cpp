// libFuzzer target: VIA 2.x CSV parsing (CSV records, shape JSON, class attributes, file attributes).
// Malformed input must end in ctdet::Error; anything else escaping (or a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/via.h"
#include "nn/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ctdet::ViaOptions opt;
  // Half of the inputs exercise clipping through a known image size.
  if (size % 2) opt.image_size = [](const std::string&, int* w, int* h) { *w = 64; *h = 48; return true; };
  ctdet::ViaStats stats;
  try {
    ctdet::parse_via_csv(text, "fuzz.csv", opt, &stats);
  } catch (const ctdet::Error&) {
  }
  try {
    ctdet::split_csv_record(text, "fuzz.csv:1");
  } catch (const ctdet::Error&) {
  }
  return 0;
}
