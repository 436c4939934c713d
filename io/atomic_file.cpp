#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nn/error.h"

namespace ctdet {

void write_file_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CTDET_CHECK(fd >= 0, "cannot create '", tmp, "': ", std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd, data.data() + off, data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      CTDET_FAIL("write to '", tmp, "' failed: ", std::strerror(e));
    }
    off += size_t(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    CTDET_FAIL("flushing '", tmp, "' failed: ", std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    CTDET_FAIL("renaming '", tmp, "' to '", path, "' failed: ", std::strerror(e));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CTDET_CHECK(f.good(), "cannot open '", path, "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  CTDET_CHECK(!f.bad(), "error reading '", path, "'");
  return ss.str();
}

}  // namespace ctdet
