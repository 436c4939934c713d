// safetensors files (huggingface/safetensors layout), read and written without the Rust/Python library.
//
// Layout: uint64 little-endian N | N bytes of UTF-8 JSON header | byte buffer.
// Header: {"<name>": {"dtype": "F32"|"F64"|"I32"|"I64"|"U8", "shape": [...], "data_offsets": [begin, end]},
//          "__metadata__": {"key": "value", ...}}   (offsets relative to the byte buffer, end exclusive)
// Data is little-endian, C order, no strides. 0-rank (shape []) and empty tensors are allowed.
//
// Reading is strict, like the reference implementation: the header must fit in the file and be at most
// 100 MB, names must be unique, every dtype known, shape x itemsize must equal end - begin, and the
// tensors must tile the byte buffer exactly (sorted by offset: no overlap, no gap, no trailing or missing
// bytes — so a truncated file is always caught). Every error names the file and, where there is one, the
// tensor. Trailing spaces in the header (writers pad it to a multiple of 8) are accepted.
//
// Writing pads the header with spaces to a multiple of 8 (so every tensor starts 8-aligned), puts the
// tensors in the order given, and is atomic: "<path>.tmp.<pid>", fsync, rename.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/param_store.h"

namespace ctdet {

enum class StDType { F32, F64, I32, I64, U8 };
const char* st_dtype_name(StDType t);  // "F32", ...
size_t st_dtype_size(StDType t);

struct StTensor {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;  // empty: a scalar (one element)
  std::string data;            // raw little-endian bytes, numel * itemsize

  int64_t numel() const;
  std::string shape_str() const;  // "(3,4)"
  // Values converted to T (any dtype; integers and U8 convert with static_cast).
  template <typename T> std::vector<T> as() const;
  // Builds a tensor from host values; the dtype follows T (float F32, double F64, int32_t I32,
  // int64_t I64, uint8_t U8). values.size() must equal the shape's element count.
  template <typename T>
  static StTensor from(const std::string& name, const std::vector<int64_t>& shape, const std::vector<T>& values);
};

struct SafeTensors {
  std::string path;                               // where it was read from ("" for parsed bytes)
  std::map<std::string, std::string> metadata;    // "__metadata__"
  std::vector<StTensor> tensors;                  // in file (offset) order

  bool has(const std::string& name) const { return find(name) != nullptr; }
  const StTensor* find(const std::string& name) const;
  const StTensor& at(const std::string& name) const;  // throws naming the file and the tensor
};

// Parses a whole file held in memory; `where` names it in errors.
SafeTensors parse_safetensors(const std::string& bytes, const std::string& where);
SafeTensors read_safetensors(const std::string& path);

// The complete file as bytes (header padded to 8). Names must be unique and not "__metadata__".
std::string serialize_safetensors(const std::vector<StTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

struct StWriteInfo {
  uint64_t bytes = 0;   // file size
  uint32_t crc32c = 0;  // CRC-32C of the whole file (unmasked)
};
// Streams the file to "<path>.tmp.<pid>", fsyncs, renames over <path>; nothing is left under either name
// on failure. Returns the size and CRC-32C of what was written.
StWriteInfo write_safetensors(const std::string& path, const std::vector<StTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// ---- ParamStore <-> safetensors -----------------------------------------------------------------------

enum class StoreSlot { Params = 0, Grads = 1, Momentum = 2 };  // ParamStore::get/set `which`

// One tensor per store entry, in the store's declaration order, named `prefix + name`, dtype F32 or F64
// (the store's dtype), values copied to the host.
std::vector<StTensor> save_from(const ParamStore& store, StoreSlot which = StoreSlot::Params,
                                const std::string& prefix = "");

struct LoadOptions {
  StoreSlot which = StoreSlot::Params;
  // File tensor name -> store name, for files whose names differ (e.g. torchvision -> ctdet). Names not in
  // the map are used as they are. Mapping to "" drops the tensor (not counted as unexpected).
  std::map<std::string, std::string> name_map;
  // Only file tensors whose name starts with `prefix` take part, with the prefix stripped (e.g.
  // "momentum/"); others are ignored. Empty: all tensors.
  std::string prefix;
  // File tensors starting with any of these (after the prefix filter) are ignored (not unexpected).
  std::vector<std::string> ignore_prefixes;
  bool allow_missing = false;     // store entries absent from the file keep their values
  bool allow_unexpected = false;  // file tensors with no store entry are skipped
};

struct LoadReport {
  int loaded = 0;
  std::vector<std::string> missing;     // store names not in the file (only when allow_missing)
  std::vector<std::string> unexpected;  // file names not in the store (only when allow_unexpected)
};

// Copies file tensors into the store. F32 and F64 file tensors load into either store dtype (converted);
// other dtypes are errors. All problems — missing, unexpected, wrong shape, wrong dtype, two file names
// mapped to one store entry — are collected and thrown as ONE ctdet::Error listing each, before anything
// is written: the store is either fully loaded or untouched.
LoadReport load_into(ParamStore& store, const SafeTensors& file, const LoadOptions& opt = {});
// Checks what load_into would check, returns the list of problems ("" when none) and writes nothing.
std::string check_load(const ParamStore& store, const SafeTensors& file, const LoadOptions& opt = {});

}  // namespace ctdet
