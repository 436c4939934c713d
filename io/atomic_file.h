// Atomic writes: data goes to "<path>.tmp.<pid>", is flushed and fsynced, then renamed over <path>.
// A crash leaves either the old file or the new one, never half of one.
#pragma once
#include <string>

namespace ctdet {

void write_file_atomic(const std::string& path, const std::string& data);
std::string read_file(const std::string& path);  // throws ctdet::Error naming the file

}  // namespace ctdet
