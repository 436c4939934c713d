// `ctdet <command> [options]`: dispatches to the subcommands registered in apps/cmd_*.cpp and turns
// ctdet::Error into a message and exit code 1 (the only place that does).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "apps/command.h"
#include "nn/device.h"
#include "nn/error.h"

namespace ctdet::app {
std::map<std::string, Command>& command_table() {
  static std::map<std::string, Command> table;
  return table;
}
}  // namespace ctdet::app

static void usage() {
  std::printf("ctdet %s: Faster R-CNN lesion detection on chest CT (CUDA %s)\n\n", CTDET_VERSION,
              ctdet::cuda_built() ? "built" : "not built");
  std::printf("usage: ctdet [--threads N] <command> [options]   (ctdet <command> --help for its options)\n\n"
              "  --threads N   CPU threads for GEMMs (OpenBLAS) and the other CPU kernels (default: all cores;\n"
              "                OPENBLAS_NUM_THREADS / CTDET_NUM_THREADS also work); accepted before or after\n"
              "                <command>\n\n"
              "commands:\n");
  for (auto& [name, c] : ctdet::app::command_table()) std::printf("  %-10s %s\n", name.c_str(), c.summary.c_str());
}

// Takes the global option --threads N / --threads=N out of the arguments (anywhere) and applies it.
static void apply_threads_option(std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size();) {
    std::string value;
    if (args[i] == "--threads") {
      CTDET_CHECK(i + 1 < args.size(), "--threads needs a value (a thread count >= 1)");
      value = args[i + 1];
      args.erase(args.begin() + long(i), args.begin() + long(i) + 2);
    } else if (args[i].rfind("--threads=", 0) == 0) {
      value = args[i].substr(10);
      args.erase(args.begin() + long(i));
    } else {
      ++i;
      continue;
    }
    char* end = nullptr;
    const long n = std::strtol(value.c_str(), &end, 10);
    CTDET_CHECK(!value.empty() && *end == '\0' && n >= 1 && n <= 4096, "--threads: expected a thread count >= 1, got '",
                value, "'");
    ctdet::set_cpu_threads(int(n));
  }
}

int main(int argc, char** argv) {
  std::vector<std::string> all(argv + 1, argv + argc);
  try {
    apply_threads_option(all);
  } catch (const ctdet::Error& e) {
    std::fprintf(stderr, "ctdet: error: %s\n", e.what());
    return 2;
  }
  std::vector<char*> kept{argv[0]};
  for (std::string& a : all) kept.push_back(a.data());
  argc = int(kept.size());
  argv = kept.data();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) == "--version") {
    std::printf("ctdet %s\n", CTDET_VERSION);
    return 0;
  }
  auto& table = ctdet::app::command_table();
  auto it = table.find(argv[1]);
  if (it == table.end()) {
    std::fprintf(stderr, "ctdet: unknown command '%s'\n\n", argv[1]);
    usage();
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return it->second.run(args);
  } catch (const ctdet::Error& e) {
    std::fprintf(stderr, "ctdet %s: error: %s\n", argv[1], e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ctdet %s: error: out of host memory\n", argv[1]);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctdet %s: internal error: %s\n", argv[1], e.what());
    return 1;
  }
}
