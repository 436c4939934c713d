// A small, strict option reader for the subcommands: --key value and --flag, unknown options are errors
// that name the nearest known option.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nn/error.h"

namespace ctdet::app {

class Args {
 public:
  // `known` lists options taking a value; `flags` lists boolean switches.
  Args(const std::string& command, const std::vector<std::string>& argv, const std::set<std::string>& known,
       const std::set<std::string>& flags);
  bool has(const std::string& key) const { return values_.count(key) != 0 || flags_set_.count(key) != 0; }
  std::string get(const std::string& key, const std::string& def = "") const;
  int get_int(const std::string& key, int def) const;
  double get_double(const std::string& key, double def) const;
  bool flag(const std::string& key) const { return flags_set_.count(key) != 0; }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_set_;
  std::vector<std::string> positional_;
};

// "a,b,c" -> {"a","b","c"}; an empty item is an error naming `what` (e.g. "eval: --classes").
std::vector<std::string> split_list(const std::string& s, const std::string& what);

// Edit distance, for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b);
std::string nearest(const std::string& word, const std::set<std::string>& candidates);

}  // namespace ctdet::app
