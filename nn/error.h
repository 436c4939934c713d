// ctdet::Error and the CTDET_CHECK family. Library code throws; only apps/ turn errors into exit codes.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ctdet {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// str(a, b, c) concatenates anything printable with operator<<.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

namespace detail {
[[noreturn]] inline void throw_error(const char* file, int line, const char* expr, const std::string& msg) {
  std::ostringstream os;
  os << msg;
  if (expr && *expr) os << " [check `" << expr << "` failed at " << file << ":" << line << "]";
  else os << " [" << file << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

}  // namespace ctdet

// CTDET_CHECK(cond, parts...): throws ctdet::Error with the message parts, the expression, file and line.
#define CTDET_CHECK(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) ::ctdet::detail::throw_error(__FILE__, __LINE__, #cond, ::ctdet::str(__VA_ARGS__)); \
  } while (0)

// CTDET_FAIL(parts...): unconditional error with file and line.
#define CTDET_FAIL(...) ::ctdet::detail::throw_error(__FILE__, __LINE__, "", ::ctdet::str(__VA_ARGS__))
