// Subcommand registry for the `ctdet` program: each apps/cmd_<name>.cpp registers itself with
// CTDET_COMMAND; main.cpp only dispatches (DESIGN.md, Layout).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ctdet::app {

using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
};

std::map<std::string, Command>& command_table();

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& summary, CommandFn fn) {
    command_table()[name] = Command{name, summary, std::move(fn)};
  }
};

}  // namespace ctdet::app

#define CTDET_COMMAND_CAT2(a, b) a##b
#define CTDET_COMMAND_CAT(a, b) CTDET_COMMAND_CAT2(a, b)
// CTDET_COMMAND("plan", "one-line summary", fn) where fn is int(const std::vector<std::string>&);
// args excludes the program and subcommand names. Return the exit code; throw ctdet::Error for errors.
#define CTDET_COMMAND(name, summary, fn) \
  static ::ctdet::app::CommandRegistrar CTDET_COMMAND_CAT(ctdet_cmd_, __LINE__)(name, summary, fn)
