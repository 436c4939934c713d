#include "io/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

size_t NpyArray::itemsize() const {
  if (dtype == "f4" || dtype == "i4") return 4;
  if (dtype == "f8" || dtype == "i8") return 8;
  if (dtype == "u1" || dtype == "b1") return 1;
  CTDET_FAIL("npy: unsupported dtype '", dtype, "'");
}

template <typename T>
std::vector<T> NpyArray::as() const {
  const int64_t n = numel();
  std::vector<T> out(static_cast<size_t>(n));
  const uint8_t* p = bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == "f4") { float v; std::memcpy(&v, p + 4 * i, 4); out[i] = T(v); }
    else if (dtype == "f8") { double v; std::memcpy(&v, p + 8 * i, 8); out[i] = T(v); }
    else if (dtype == "i4") { int32_t v; std::memcpy(&v, p + 4 * i, 4); out[i] = T(v); }
    else if (dtype == "i8") { int64_t v; std::memcpy(&v, p + 8 * i, 8); out[i] = T(v); }
    else { out[i] = T(p[i]); }
  }
  return out;
}
template std::vector<float> NpyArray::as<float>() const;
template std::vector<double> NpyArray::as<double>() const;
template std::vector<int32_t> NpyArray::as<int32_t>() const;
template std::vector<int64_t> NpyArray::as<int64_t>() const;
template std::vector<uint8_t> NpyArray::as<uint8_t>() const;

static std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  auto k = header.find("'" + key + "'");
  CTDET_CHECK(k != std::string::npos, "npy '", path, "': header has no '", key, "' key: ", header);
  auto colon = header.find(':', k);
  CTDET_CHECK(colon != std::string::npos, "npy '", path, "': malformed header: ", header);
  size_t i = colon + 1;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t j = i;
  if (header[i] == '(') j = header.find(')', i) + 1;
  else if (header[i] == '\'') j = header.find('\'', i + 1) + 1;
  else while (j < header.size() && header[j] != ',' && header[j] != '}') ++j;
  CTDET_CHECK(j != std::string::npos && j > i, "npy '", path, "': malformed header: ", header);
  return header.substr(i, j - i);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CTDET_CHECK(f.good(), "npy: cannot open '", path, "'");
  char magic[8];
  f.read(magic, 8);
  CTDET_CHECK(f.gcount() == 8 && std::memcmp(magic, "\x93NUMPY", 6) == 0, "npy '", path,
              "': not a .npy file (bad magic)");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint8_t b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    uint8_t b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  }
  CTDET_CHECK(f.good() && hlen < (1u << 20), "npy '", path, "': truncated or oversized header");
  std::string header(hlen, '\0');
  f.read(header.data(), hlen);
  CTDET_CHECK(f.gcount() == std::streamsize(hlen), "npy '", path, "': truncated header");

  NpyArray a;
  std::string descr = dict_value(header, "descr", path);
  CTDET_CHECK(descr.size() >= 4, "npy '", path, "': bad descr ", descr);
  char order = descr[1];
  CTDET_CHECK(order == '<' || order == '|', "npy '", path, "': big-endian data is not supported (", descr, ")");
  a.dtype = descr.substr(2, descr.size() - 3);
  (void)a.itemsize();  // validates
  CTDET_CHECK(dict_value(header, "fortran_order", path) == "False", "npy '", path,
              "': Fortran-order arrays are not supported");
  std::string shp = dict_value(header, "shape", path);
  for (size_t i = 1; i < shp.size();) {
    while (i < shp.size() && (shp[i] == ' ' || shp[i] == ',')) ++i;
    if (i >= shp.size() || shp[i] == ')') break;
    size_t j = i;
    while (j < shp.size() && shp[j] >= '0' && shp[j] <= '9') ++j;
    CTDET_CHECK(j > i, "npy '", path, "': bad shape ", shp);
    a.shape.push_back(std::stoll(shp.substr(i, j - i)));
    i = j;
  }
  const size_t nbytes = size_t(a.numel()) * a.itemsize();
  a.bytes.resize(nbytes);
  f.read(reinterpret_cast<char*>(a.bytes.data()), std::streamsize(nbytes));
  CTDET_CHECK(size_t(f.gcount()) == nbytes, "npy '", path, "': truncated data: expected ", nbytes,
              " bytes, got ", f.gcount());
  return a;
}

void write_npy(const std::string& path, const NpyArray& a) {
  std::string shp = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) shp += std::to_string(a.shape[i]) + (a.shape.size() == 1 ? "," : (i + 1 < a.shape.size() ? ", " : ""));
  shp += ")";
  std::string order = a.itemsize() == 1 ? "|" : "<";
  std::string header = "{'descr': '" + order + a.dtype + "', 'fortran_order': False, 'shape': " + shp + ", }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  CTDET_CHECK(a.bytes.size() == size_t(a.numel()) * a.itemsize(), "npy '", path, "': data size ",
              a.bytes.size(), " does not match shape ", shp);
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out.push_back(char(header.size() & 0xff));
  out.push_back(char((header.size() >> 8) & 0xff));
  out += header;
  out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  write_file_atomic(path, out);
}

NpyArray make_npy_f32(const std::vector<int64_t>& shape, const float* data) {
  NpyArray a;
  a.dtype = "f4";
  a.shape = shape;
  a.bytes.resize(size_t(a.numel()) * 4);
  std::memcpy(a.bytes.data(), data, a.bytes.size());
  return a;
}

}  // namespace ctdet
