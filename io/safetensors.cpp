#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "io/tfrecord.h"
#include "nn/error.h"

namespace ctdet {

namespace {
constexpr uint64_t kMaxHeader = 100000000;  // the reference implementation's MAX_HEADER_SIZE

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

bool parse_dtype(const std::string& s, StDType* t) {
  static const std::pair<const char*, StDType> kNames[] = {
      {"F32", StDType::F32}, {"F64", StDType::F64}, {"I32", StDType::I32}, {"I64", StDType::I64}, {"U8", StDType::U8}};
  for (auto& [n, d] : kNames)
    if (s == n) { *t = d; return true; }
  return false;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + ")";
}

template <typename Src, typename T> void convert(const std::string& data, std::vector<T>* out) {
  size_t n = data.size() / sizeof(Src);
  out->resize(n);
  for (size_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, data.data() + i * sizeof(Src), sizeof(Src));
    (*out)[i] = static_cast<T>(v);
  }
}

// Builds the padded header: 8-byte length + JSON + spaces to a multiple of 8.
std::string make_header(const std::vector<StTensor>& tensors, const std::map<std::string, std::string>& metadata,
                        uint64_t* data_bytes) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  std::set<std::string> seen;
  uint64_t off = 0;
  for (const StTensor& t : tensors) {
    CTDET_CHECK(t.name != "__metadata__", "safetensors: a tensor may not be named '__metadata__'");
    CTDET_CHECK(seen.insert(t.name).second, "safetensors: duplicate tensor name '", t.name, "'");
    for (int64_t d : t.shape) CTDET_CHECK(d >= 0, "safetensors: tensor '", t.name, "' has negative dim in ", t.shape_str());
    uint64_t want = uint64_t(t.numel()) * st_dtype_size(t.dtype);
    CTDET_CHECK(t.data.size() == want, "safetensors: tensor '", t.name, "' ", st_dtype_name(t.dtype), t.shape_str(),
                " needs ", want, " bytes, holds ", t.data.size());
    nlohmann::ordered_json e;
    e["dtype"] = st_dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + want};
    h[t.name] = e;
    off += want;
  }
  std::string json = h.dump();
  while ((8 + json.size()) % 8) json += ' ';
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  *data_bytes = off;
  return out + json;
}
}  // namespace

const char* st_dtype_name(StDType t) {
  switch (t) {
    case StDType::F32: return "F32";
    case StDType::F64: return "F64";
    case StDType::I32: return "I32";
    case StDType::I64: return "I64";
    case StDType::U8: return "U8";
  }
  return "?";
}

size_t st_dtype_size(StDType t) {
  switch (t) {
    case StDType::F32: return 4;
    case StDType::F64: return 8;
    case StDType::I32: return 4;
    case StDType::I64: return 8;
    case StDType::U8: return 1;
  }
  return 0;
}

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string StTensor::shape_str() const { return shape_string(shape); }

template <typename T> std::vector<T> StTensor::as() const {
  std::vector<T> out;
  switch (dtype) {
    case StDType::F32: convert<float>(data, &out); break;
    case StDType::F64: convert<double>(data, &out); break;
    case StDType::I32: convert<int32_t>(data, &out); break;
    case StDType::I64: convert<int64_t>(data, &out); break;
    case StDType::U8: convert<uint8_t>(data, &out); break;
  }
  return out;
}

template <typename T>
StTensor StTensor::from(const std::string& name, const std::vector<int64_t>& shape, const std::vector<T>& values) {
  StTensor t;
  t.name = name;
  t.shape = shape;
  if constexpr (std::is_same_v<T, float>) t.dtype = StDType::F32;
  else if constexpr (std::is_same_v<T, double>) t.dtype = StDType::F64;
  else if constexpr (std::is_same_v<T, int32_t>) t.dtype = StDType::I32;
  else if constexpr (std::is_same_v<T, int64_t>) t.dtype = StDType::I64;
  else t.dtype = StDType::U8;
  CTDET_CHECK(int64_t(values.size()) == t.numel(), "StTensor::from('", name, "'): shape ", shape_string(shape),
              " has ", t.numel(), " elements, got ", values.size(), " values");
  t.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
  return t;
}

#define CTDET_ST_INSTANTIATE(T)                                      \
  template std::vector<T> StTensor::as<T>() const;                   \
  template StTensor StTensor::from<T>(const std::string&, const std::vector<int64_t>&, const std::vector<T>&);
CTDET_ST_INSTANTIATE(float)
CTDET_ST_INSTANTIATE(double)
CTDET_ST_INSTANTIATE(int32_t)
CTDET_ST_INSTANTIATE(int64_t)
CTDET_ST_INSTANTIATE(uint8_t)
#undef CTDET_ST_INSTANTIATE

const StTensor* SafeTensors::find(const std::string& name) const {
  for (const StTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const StTensor& SafeTensors::at(const std::string& name) const {
  const StTensor* t = find(name);
  CTDET_CHECK(t != nullptr, "safetensors '", path, "': no tensor named '", name, "' (", tensors.size(), " tensors)");
  return *t;
}

// ---- reading --------------------------------------------------------------------------------------------

SafeTensors parse_safetensors(const std::string& bytes, const std::string& where) {
  CTDET_CHECK(host_is_little_endian(), "safetensors '", where, "': big-endian hosts are not supported");
  CTDET_CHECK(bytes.size() >= 8, "safetensors '", where, "': file is ", bytes.size(),
              " bytes, shorter than the 8-byte header length (truncated?)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(static_cast<unsigned char>(bytes[size_t(i)]));
  CTDET_CHECK(n <= kMaxHeader, "safetensors '", where, "': header length ", n, " exceeds the 100 MB limit");
  CTDET_CHECK(n <= bytes.size() - 8, "safetensors '", where, "': header length ", n, " runs past the end of the ",
              bytes.size(), "-byte file (truncated?)");
  const std::string header = bytes.substr(8, size_t(n));
  const uint64_t buf_size = bytes.size() - 8 - n;
  const char* buf = bytes.data() + 8 + n;

  // Duplicate top-level keys: the JSON library would keep the last one silently, so watch the keys.
  std::vector<std::string> dups;
  std::set<std::string> keys;
  nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
      std::string k = parsed.get<std::string>();
      if (!keys.insert(k).second) dups.push_back(k);
    }
    return true;
  };
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(header, cb);
  } catch (const nlohmann::json::exception& e) {
    CTDET_FAIL("safetensors '", where, "': header is not valid JSON: ", e.what());
  }
  CTDET_CHECK(dups.empty(), "safetensors '", where, "': duplicate tensor name '", dups.empty() ? "" : dups[0],
              "' in the header");
  CTDET_CHECK(h.is_object(), "safetensors '", where, "': header is not a JSON object");

  SafeTensors st;
  st.path = where;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  std::vector<StTensor> tensors;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      CTDET_CHECK(e.is_object(), "safetensors '", where, "': __metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        CTDET_CHECK(m.value().is_string(), "safetensors '", where, "': __metadata__ value for '", m.key(),
                    "' is not a string");
        st.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = str("safetensors '", where, "': tensor '", name, "'");
    CTDET_CHECK(e.is_object(), at, ": entry is not an object");
    CTDET_CHECK(e.contains("dtype") && e["dtype"].is_string(), at, ": missing or non-string \"dtype\"");
    CTDET_CHECK(e.contains("shape") && e["shape"].is_array(), at, ": missing or non-array \"shape\"");
    CTDET_CHECK(e.contains("data_offsets") && e["data_offsets"].is_array() && e["data_offsets"].size() == 2, at,
                ": \"data_offsets\" must be [begin, end]");
    StTensor t;
    t.name = name;
    std::string dt = e["dtype"].get<std::string>();
    CTDET_CHECK(parse_dtype(dt, &t.dtype), at, ": unsupported dtype '", dt, "' (supported: F32 F64 I32 I64 U8)");
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      CTDET_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), at,
                  ": shape entries must be non-negative integers, got ", d.dump());
      uint64_t v = d.get<uint64_t>();
      CTDET_CHECK(v == 0 || numel <= (uint64_t(1) << 56) / v, at, ": shape ", e["shape"].dump(),
                  " overflows the element count");
      numel *= v;
      t.shape.push_back(int64_t(v));
    }
    for (const auto& o : e["data_offsets"])
      CTDET_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0), at,
                  ": data_offsets must be non-negative integers, got ", e["data_offsets"].dump());
    uint64_t b = e["data_offsets"][0].get<uint64_t>(), en = e["data_offsets"][1].get<uint64_t>();
    CTDET_CHECK(b <= en, at, ": data_offsets [", b, ", ", en, "] has begin > end");
    CTDET_CHECK(en <= buf_size, at, ": data_offsets [", b, ", ", en, "] run past the ", buf_size,
                "-byte data buffer (file truncated?)");
    uint64_t want = numel * st_dtype_size(t.dtype);
    CTDET_CHECK(en - b == want, at, ": ", dt, shape_string(t.shape), " needs ", want, " bytes but data_offsets [", b,
                ", ", en, "] give ", en - b);
    spans.push_back({b, en, tensors.size()});
    tensors.push_back(std::move(t));
  }
  // The tensors must tile the buffer: sorted by offset, each begins where the previous ended.
  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (s.begin < pos) {
      CTDET_FAIL("safetensors '", where, "': tensor '", tensors[s.index].name, "' [", s.begin, ", ", s.end,
                 ") overlaps tensor '", tensors[spans[i - 1].index].name, "' [", spans[i - 1].begin, ", ",
                 spans[i - 1].end, ")");
    }
    CTDET_CHECK(s.begin == pos, "safetensors '", where, "': gap of ", s.begin - pos, " bytes before tensor '",
                tensors[s.index].name, "' at offset ", s.begin);
    pos = s.end;
  }
  CTDET_CHECK(pos == buf_size, "safetensors '", where, "': tensors cover ", pos, " bytes but the data buffer has ",
              buf_size, " (", buf_size - pos, " trailing bytes)");
  for (const Span& s : spans) {
    StTensor& t = tensors[s.index];
    t.data.assign(buf + s.begin, size_t(s.end - s.begin));
    st.tensors.push_back(std::move(t));
  }
  return st;
}

SafeTensors read_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

// ---- writing --------------------------------------------------------------------------------------------

std::string serialize_safetensors(const std::vector<StTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  uint64_t data_bytes = 0;
  std::string out = make_header(tensors, metadata, &data_bytes);
  out.reserve(out.size() + size_t(data_bytes));
  for (const StTensor& t : tensors) out += t.data;
  return out;
}

StWriteInfo write_safetensors(const std::string& path, const std::vector<StTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  uint64_t data_bytes = 0;
  const std::string header = make_header(tensors, metadata, &data_bytes);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CTDET_CHECK(fd >= 0, "safetensors: cannot create '", tmp, "': ", std::strerror(errno));
  StWriteInfo info;
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    CTDET_FAIL("safetensors: ", what, " '", tmp, "' (for '", path, "') failed: ", std::strerror(e));
  };
  auto put = [&](const std::string& s) {
    info.crc32c = crc32c(s.data(), s.size(), info.crc32c);
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = ::write(fd, s.data() + off, s.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write to");
      off += size_t(w);
    }
    info.bytes += s.size();
  };
  put(header);
  for (const StTensor& t : tensors) put(t.data);
  if (::fsync(fd) != 0) fail("fsync of");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    CTDET_FAIL("safetensors: closing '", tmp, "' failed: ", std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    CTDET_FAIL("safetensors: renaming '", tmp, "' to '", path, "' failed: ", std::strerror(e));
  }
  return info;
}

// ---- ParamStore ------------------------------------------------------------------------------------------

std::vector<StTensor> save_from(const ParamStore& store, StoreSlot which, const std::string& prefix) {
  CTDET_CHECK(store.allocated(), "save_from: parameter store not allocated");
  std::vector<StTensor> out;
  out.reserve(store.names().size());
  for (const std::string& name : store.names()) {
    std::vector<int64_t> shape = store.shape(name).dims;
    if (store.dtype() == DType::F64) out.push_back(StTensor::from(prefix + name, shape, store.get<double>(name, int(which))));
    else out.push_back(StTensor::from(prefix + name, shape, store.get<float>(name, int(which))));
  }
  return out;
}

namespace {
// The plan of a load: which file tensor goes to which store entry, and every problem found.
struct LoadPlan {
  std::vector<std::pair<const StTensor*, std::string>> moves;
  std::vector<std::string> problems, missing, unexpected;
};

LoadPlan plan_load(const ParamStore& store, const SafeTensors& file, const LoadOptions& opt) {
  LoadPlan p;
  std::map<std::string, std::string> claimed;  // store name -> file name
  for (const StTensor& t : file.tensors) {
    if (!opt.prefix.empty() && t.name.compare(0, opt.prefix.size(), opt.prefix) != 0) continue;
    std::string fname = t.name.substr(opt.prefix.size());
    bool ignored = false;
    for (const std::string& ig : opt.ignore_prefixes)
      if (fname.compare(0, ig.size(), ig) == 0) ignored = true;
    if (ignored) continue;
    std::string sname = fname;
    auto m = opt.name_map.find(fname);
    if (m != opt.name_map.end()) {
      if (m->second.empty()) continue;
      sname = m->second;
    }
    if (!store.has(sname)) {
      if (opt.allow_unexpected) p.unexpected.push_back(t.name);
      else p.problems.push_back(str("unexpected: '", t.name, "' ", st_dtype_name(t.dtype), t.shape_str(),
                                    sname != fname ? str(" (mapped to '", sname, "')") : "", " has no store entry"));
      continue;
    }
    auto c = claimed.find(sname);
    if (c != claimed.end()) {
      p.problems.push_back(str("conflict: '", t.name, "' and '", c->second, "' both map to store entry '", sname, "'"));
      continue;
    }
    claimed[sname] = t.name;
    Shape want = store.shape(sname);
    if (t.dtype != StDType::F32 && t.dtype != StDType::F64) {
      p.problems.push_back(str("dtype: '", t.name, "' is ", st_dtype_name(t.dtype), ", store entry '", sname,
                               "' needs F32 or F64"));
      continue;
    }
    if (Shape(t.shape) != want) {
      p.problems.push_back(str("shape: '", t.name, "' is ", t.shape_str(), ", store entry '", sname, "' is ",
                               want.str()));
      continue;
    }
    p.moves.push_back({&t, sname});
  }
  for (const std::string& name : store.names()) {
    if (claimed.count(name)) continue;
    if (opt.allow_missing) p.missing.push_back(name);
    else p.problems.push_back(str("missing: store entry '", name, "' ", store.shape(name).str(), " is not in the file"));
  }
  return p;
}

std::string describe(const SafeTensors& file, const LoadOptions& opt, const std::vector<std::string>& problems) {
  if (problems.empty()) return "";
  std::string s = str("safetensors '", file.path, "'", opt.prefix.empty() ? "" : str(" (tensors '", opt.prefix, "*')"),
                      ": ", problems.size(), " problem", problems.size() == 1 ? "" : "s",
                      " loading into the parameter store:");
  for (const std::string& p : problems) s += "\n  " + p;
  return s;
}
}  // namespace

std::string check_load(const ParamStore& store, const SafeTensors& file, const LoadOptions& opt) {
  return describe(file, opt, plan_load(store, file, opt).problems);
}

LoadReport load_into(ParamStore& store, const SafeTensors& file, const LoadOptions& opt) {
  CTDET_CHECK(store.allocated(), "load_into('", file.path, "'): parameter store not allocated");
  LoadPlan p = plan_load(store, file, opt);
  if (!p.problems.empty()) throw Error(describe(file, opt, p.problems));
  for (auto& [t, sname] : p.moves) {
    if (store.dtype() == DType::F64) store.set<double>(sname, t->as<double>(), int(opt.which));
    else store.set<float>(sname, t->as<float>(), int(opt.which));
  }
  LoadReport r;
  r.loaded = int(p.moves.size());
  r.missing = std::move(p.missing);
  r.unexpected = std::move(p.unexpected);
  return r;
}

}  // namespace ctdet
