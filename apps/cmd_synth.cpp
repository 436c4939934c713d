// `ctdet synth`: writes a deterministic CT phantom dataset (PNG + VIA 2.x CSV), or with --series one
// patient's follow-up studies with a manifest of true lesion areas per lung zone (io/synth.h).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "apps/command.h"
#include "io/synth.h"
#include "nn/error.h"

namespace {

void synth_usage() {
  std::printf(
      "usage: ctdet synth --out DIR [options]\n"
      "  --out DIR                 output folder (refused if it exists and is not empty, unless --force)\n"
      "  --count N                 images (default 10); with --series: slices per study (default 3)\n"
      "  --size S                  square image side in pixels (default 512)\n"
      "  --seed K                  RNG seed (default 1); same seed, same bytes\n"
      "  --negatives-fraction F    fraction of lesion-free slices, exact after rounding (default 0.2)\n"
      "  --patients P              group slices into P patients (VIA file attribute patient_id)\n"
      "  --series                  one patient, --studies S follow-up studies with grow/shrink/vanish lesions\n"
      "  --studies S               studies in --series mode (default 4)\n"
      "  --attribute NAME          VIA region attribute holding the class (default lesion)\n"
      "  --force                   write into a non-empty --out\n"
      "  --quiet                   no progress line\n"
      "Layout: DIR/images/slice_NNNNN.png + DIR/via_regions.csv; --series: DIR/manifest.json and\n"
      "DIR/study_II_DATE/{slice_NNN.png, via_regions.csv, manifest.json}. Lung window -600/1500.\n");
}

long long parse_int(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  CTDET_CHECK(!v.empty() && end && *end == '\0', "synth: ", opt, " expects an integer, got '", v, "'");
  return x;
}

double parse_double(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  CTDET_CHECK(!v.empty() && end && *end == '\0', "synth: ", opt, " expects a number, got '", v, "'");
  return x;
}

int run_synth(const std::vector<std::string>& args) {
  ctdet::SynthOptions o;
  bool series = false, quiet = false, count_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      CTDET_CHECK(i + 1 < args.size(), "synth: ", a, " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      synth_usage();
      return 0;
    } else if (a == "--out") o.out = value();
    else if (a == "--count") { o.count = int(parse_int(a, value())); count_given = true; }
    else if (a == "--size") o.size = int(parse_int(a, value()));
    else if (a == "--seed") o.seed = uint64_t(parse_int(a, value()));
    else if (a == "--negatives-fraction") o.negatives_fraction = parse_double(a, value());
    else if (a == "--patients") o.patients = int(parse_int(a, value()));
    else if (a == "--studies") o.studies = int(parse_int(a, value()));
    else if (a == "--attribute") o.attribute = value();
    else if (a == "--series") series = true;
    else if (a == "--force") o.force = true;
    else if (a == "--quiet") quiet = true;
    else CTDET_FAIL("synth: unknown option '", a, "' (see ctdet synth --help)");
  }
  if (o.out.empty()) {
    synth_usage();
    CTDET_FAIL("synth: --out is required");
  }
  if (series && !count_given) o.count = 3;
  int last_pct = -1;
  if (!quiet)
    o.progress = [&last_pct](int done, int total) {
      if (total < 50) return;
      const int pct = int(100LL * done / total);
      if (pct != last_pct || done == total) {
        last_pct = pct;
        std::fprintf(stderr, "\rsynth: %d/%d images (%d%%)", done, total, pct);
        if (done == total) std::fprintf(stderr, "\n");
      }
    };
  const ctdet::SynthSummary s = series ? ctdet::write_synth_series(o) : ctdet::write_synth_dataset(o);
  std::printf("synth: wrote %d images (%d lesion-free; lesions GGO %d, CD %d, GGO+CD %d) to %s\n", s.images,
              s.negatives, s.per_class[1], s.per_class[2], s.per_class[3], o.out.c_str());
  if (!s.csv_path.empty()) std::printf("synth: annotations %s\n", s.csv_path.c_str());
  if (!s.manifest_path.empty()) std::printf("synth: manifest %s\n", s.manifest_path.c_str());
  return 0;
}

}  // namespace

CTDET_COMMAND("synth", "write a deterministic CT phantom dataset (PNG + VIA CSV), or a follow-up series", run_synth);
