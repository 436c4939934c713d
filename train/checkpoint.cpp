#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/crc32c.h"
#include "nn/error.h"

namespace fs = std::filesystem;

namespace ctdet {

namespace {
// A checkpoint whose files are damaged or incomplete (as opposed to one that does not fit the store).
struct CorruptCheckpoint : Error {
  using Error::Error;
};

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  (void)::fsync(fd);  // best effort: some file systems refuse fsync on directories
  ::close(fd);
}

std::string base_name(int64_t step) { return "ckpt-" + std::to_string(step); }

// "ckpt-<digits>" + suffix -> step; -1 when the name does not match.
int64_t step_of(const std::string& name, const std::string& suffix) {
  if (name.size() <= 5 + suffix.size() || name.compare(0, 5, "ckpt-") != 0) return -1;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return -1;
  std::string digits = name.substr(5, name.size() - 5 - suffix.size());
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

void write_pointer(const std::string& dir, const std::string& which, int64_t step) {
  nlohmann::json j = {{"step", step}, {"checkpoint", base_name(step)}};
  write_file_atomic((fs::path(dir) / which).string(), j.dump() + "\n");
}

struct Loaded {
  nlohmann::json sidecar;
  SafeTensors tensors;
};

// Reads and verifies one checkpoint's files; damage throws CorruptCheckpoint naming the file.
Loaded read_checkpoint(const std::string& dir, int64_t step) {
  const std::string json_path = (fs::path(dir) / (base_name(step) + ".json")).string();
  Loaded L;
  std::string text;
  try {
    text = read_file(json_path);
  } catch (const Error& e) {
    throw CorruptCheckpoint(str("checkpoint sidecar '", json_path, "' is missing or unreadable (incomplete "
                                "checkpoint): ", e.what()));
  }
  L.sidecar = nlohmann::json::parse(text, nullptr, false);
  if (L.sidecar.is_discarded() || !L.sidecar.is_object())
    throw CorruptCheckpoint(str("checkpoint sidecar '", json_path, "' is not a JSON object"));
  if (!L.sidecar.contains("step") || !L.sidecar["step"].is_number_integer() || L.sidecar["step"].get<int64_t>() != step)
    throw CorruptCheckpoint(str("checkpoint sidecar '", json_path, "' does not hold \"step\": ", step));
  std::string st_name = L.sidecar.value("safetensors", base_name(step) + ".safetensors");
  const std::string st_path = (fs::path(dir) / st_name).string();
  std::string bytes;
  try {
    bytes = read_file(st_path);
  } catch (const Error& e) {
    throw CorruptCheckpoint(str("checkpoint tensors '", st_path, "' (named by '", json_path, "') are missing: ", e.what()));
  }
  if (L.sidecar.contains("safetensors_bytes") && L.sidecar["safetensors_bytes"].get<uint64_t>() != bytes.size())
    throw CorruptCheckpoint(str("checkpoint tensors '", st_path, "' are ", bytes.size(), " bytes, the sidecar says ",
                                L.sidecar["safetensors_bytes"].get<uint64_t>(), " (truncated or replaced)"));
  if (L.sidecar.contains("safetensors_crc32c")) {
    uint32_t want = L.sidecar["safetensors_crc32c"].get<uint32_t>();
    uint32_t got = crc32c(bytes.data(), bytes.size());
    if (want != got)
      throw CorruptCheckpoint(str("checkpoint tensors '", st_path, "': CRC-32C 0x", std::hex, got,
                                  " differs from the sidecar's 0x", want, " (corrupt)"));
  }
  try {
    L.tensors = parse_safetensors(bytes, st_path);
  } catch (const Error& e) {
    throw CorruptCheckpoint(e.what());
  }
  L.sidecar["checkpoint"] = st_path;
  return L;
}

// Validates everything against the store, then writes params (and momentum).
void apply(const Loaded& L, ParamStore& store, const CheckpointLoadOptions& opt) {
  LoadOptions p;
  p.which = StoreSlot::Params;
  p.ignore_prefixes = {"momentum/"};
  LoadOptions m;
  m.which = StoreSlot::Momentum;
  m.prefix = "momentum/";
  bool has_mom = false;
  for (const StTensor& t : L.tensors.tensors) has_mom = has_mom || t.name.compare(0, 9, "momentum/") == 0;
  bool load_mom = opt.momentum && (has_mom || opt.require_momentum);
  std::string problems = check_load(store, L.tensors, p);
  if (load_mom) {
    std::string mp = check_load(store, L.tensors, m);
    if (!mp.empty()) problems += (problems.empty() ? "" : "\n") + mp;
  }
  if (!problems.empty()) throw Error(problems);
  load_into(store, L.tensors, p);
  if (load_mom) {
    load_into(store, L.tensors, m);
  } else if (opt.momentum) {
    for (const std::string& name : store.names())
      store.set<float>(name, std::vector<float>(size_t(store.shape(name).numel()), 0.0f), int(StoreSlot::Momentum));
  }
}
}  // namespace

std::vector<CheckpointInfo> list_checkpoints(const std::string& dir) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int64_t s = step_of(e.path().filename().string(), ".json");
    if (s < 0) continue;
    CheckpointInfo c;
    c.step = s;
    c.json = e.path().string();
    c.safetensors = (fs::path(dir) / (base_name(s) + ".safetensors")).string();
    out.push_back(c);
  }
  std::sort(out.begin(), out.end(), [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.step < b.step; });
  return out;
}

int64_t checkpoint_pointer(const std::string& dir, const std::string& which) {
  const std::string path = (fs::path(dir) / which).string();
  if (!fs::exists(path)) return -1;
  nlohmann::json j = nlohmann::json::parse(read_file(path), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) {
    std::fprintf(stderr, "warning: checkpoint pointer '%s' is unreadable; ignoring it\n", path.c_str());
    return -1;
  }
  return j["step"].get<int64_t>();
}

std::string save_checkpoint(const std::string& dir, int64_t step, const ParamStore& store,
                            const nlohmann::json& sidecar, const CheckpointOptions& opt) {
  CTDET_CHECK(step >= 0, "save_checkpoint('", dir, "'): step must be >= 0, got ", step);
  CTDET_CHECK(opt.keep >= 1, "save_checkpoint('", dir, "'): keep must be >= 1, got ", opt.keep);
  CTDET_CHECK(sidecar.is_object() || sidecar.is_null(), "save_checkpoint('", dir,
              "'): the sidecar must be a JSON object, got ", sidecar.type_name());
  std::error_code ec;
  fs::create_directories(dir, ec);
  CTDET_CHECK(!ec, "save_checkpoint: cannot create '", dir, "': ", ec.message());

  std::vector<StTensor> tensors = save_from(store, StoreSlot::Params);
  if (opt.save_momentum) {
    std::vector<StTensor> mom = save_from(store, StoreSlot::Momentum, "momentum/");
    for (auto& t : mom) tensors.push_back(std::move(t));
  }
  const std::string st_path = (fs::path(dir) / (base_name(step) + ".safetensors")).string();
  const std::string json_path = (fs::path(dir) / (base_name(step) + ".json")).string();
  // A re-save of the same step: drop the old sidecar first so the pair is never mismatched.
  fs::remove(json_path, ec);
  StWriteInfo info = write_safetensors(st_path, tensors,
                                       {{"format", "ctdet-checkpoint"},
                                        {"step", std::to_string(step)},
                                        {"momentum", opt.save_momentum ? "1" : "0"}});
  tensors.clear();
  nlohmann::json j = sidecar.is_null() ? nlohmann::json::object() : sidecar;
  j["step"] = step;
  j["safetensors"] = base_name(step) + ".safetensors";
  j["safetensors_bytes"] = info.bytes;
  j["safetensors_crc32c"] = info.crc32c;
  fsync_dir(dir);
  write_file_atomic(json_path, j.dump(2) + "\n");
  fsync_dir(dir);
  write_pointer(dir, "last", step);
  if (opt.best) write_pointer(dir, "best", step);
  fsync_dir(dir);

  // Prune: keep the newest `keep` complete checkpoints and the best one.
  const int64_t best = checkpoint_pointer(dir, "best");
  std::vector<CheckpointInfo> all = list_checkpoints(dir);
  int kept = 0;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->step == best) continue;
    if (kept < opt.keep) {
      ++kept;
      continue;
    }
    fs::remove(it->json, ec);  // sidecar first: an interrupted prune leaves an incomplete checkpoint
    fs::remove(it->safetensors, ec);
  }
  // Leftovers of interrupted writes: temporary files, tensor files without a sidecar.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    bool ours = name.compare(0, 5, "ckpt-") == 0 || name.compare(0, 5, "last.") == 0 || name.compare(0, 5, "best.") == 0;
    if (ours && name.find(".tmp.") != std::string::npos) {
      std::fprintf(stderr, "note: removing leftover temporary file %s\n", e.path().string().c_str());
      fs::remove(e.path(), ec);
      continue;
    }
    int64_t s = step_of(name, ".safetensors");
    if (s >= 0 && !fs::exists(fs::path(dir) / (base_name(s) + ".json"))) {
      std::fprintf(stderr, "note: removing incomplete checkpoint %s (no sidecar)\n", e.path().string().c_str());
      fs::remove(e.path(), ec);
    }
  }
  return st_path;
}

nlohmann::json load_checkpoint(const std::string& dir_or_file, ParamStore& store, const CheckpointLoadOptions& opt) {
  CTDET_CHECK(store.allocated(), "load_checkpoint('", dir_or_file, "'): parameter store not allocated");
  std::error_code ec;
  if (!fs::is_directory(dir_or_file, ec)) {
    // A specific checkpoint: everything is an error naming it.
    fs::path p(dir_or_file);
    std::string name = p.filename().string();
    int64_t step = step_of(name, ".safetensors");
    if (step < 0) step = step_of(name, ".json");
    if (step < 0) step = step_of(name, "");
    CTDET_CHECK(step >= 0, "load_checkpoint: '", dir_or_file,
                "' is neither a directory nor a ckpt-<step>[.safetensors|.json] path");
    std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    Loaded L;
    try {
      L = read_checkpoint(dir, step);
    } catch (const CorruptCheckpoint& e) {
      throw Error(str("load_checkpoint('", dir_or_file, "'): ", e.what()));
    }
    apply(L, store, opt);
    return L.sidecar;
  }
  // "last": the newest complete checkpoint, falling back past damaged ones.
  std::vector<CheckpointInfo> all = list_checkpoints(dir_or_file);
  CTDET_CHECK(!all.empty(), "load_checkpoint: no complete checkpoint (ckpt-<step>.json) in '", dir_or_file, "'");
  const int64_t ptr = checkpoint_pointer(dir_or_file, "last");
  if (ptr != all.back().step)
    std::fprintf(stderr, "warning: '%s/last' names step %lld but the newest complete checkpoint is step %lld; "
                 "using the newest\n", dir_or_file.c_str(), static_cast<long long>(ptr),
                 static_cast<long long>(all.back().step));
  std::string tried;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    Loaded L;
    try {
      L = read_checkpoint(dir_or_file, it->step);
    } catch (const CorruptCheckpoint& e) {
      std::fprintf(stderr, "warning: skipping checkpoint step %lld: %s\n", static_cast<long long>(it->step), e.what());
      tried += str("\n  step ", it->step, ": ", e.what());
      continue;
    }
    apply(L, store, opt);
    return L.sidecar;
  }
  CTDET_FAIL("load_checkpoint: every checkpoint in '", dir_or_file, "' is damaged:", tried);
}

}  // namespace ctdet
