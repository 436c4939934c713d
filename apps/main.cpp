// `ctdet <command> [options]`: dispatches to the subcommands registered in apps/cmd_*.cpp and turns
// ctdet::Error into a message and exit code 1 (the only place that does).
#include <cstdio>
#include <exception>

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
  std::printf("usage: ctdet <command> [options]   (ctdet <command> --help for its options)\n\ncommands:\n");
  for (auto& [name, c] : ctdet::app::command_table()) std::printf("  %-10s %s\n", name.c_str(), c.summary.c_str());
}

int main(int argc, char** argv) {
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
