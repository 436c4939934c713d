#include "apps/args.h"

#include <algorithm>

namespace ctdet::app {

std::vector<std::string> split_list(const std::string& s, const std::string& what) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t c = s.find(',', pos);
    out.push_back(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  for (auto& n : out) CTDET_CHECK(!n.empty(), what, " '", s, "' has an empty item");
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest(const std::string& word, const std::set<std::string>& candidates) {
  std::string best;
  size_t bd = SIZE_MAX;
  for (auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < bd) {
      bd = d;
      best = c;
    }
  }
  return best;
}

Args::Args(const std::string& command, const std::vector<std::string>& argv, const std::set<std::string>& known,
           const std::set<std::string>& flags)
    : command_(command) {
  std::set<std::string> all = known;
  all.insert(flags.begin(), flags.end());
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), val;
    bool inline_val = false;
    auto eq = key.find('=');
    if (eq != std::string::npos) {
      val = key.substr(eq + 1);
      key = key.substr(0, eq);
      inline_val = true;
    }
    if (flags.count(key)) {
      CTDET_CHECK(!inline_val, command_, ": --", key, " takes no value");
      flags_set_.insert(key);
    } else if (known.count(key)) {
      if (!inline_val) {
        CTDET_CHECK(i + 1 < argv.size(), command_, ": --", key, " needs a value");
        val = argv[++i];
      }
      values_[key] = val;
    } else {
      CTDET_FAIL(command_, ": unknown option --", key, all.empty() ? "" : str(" (did you mean --", nearest(key, all), "?)"));
    }
  }
}

std::string Args::get(const std::string& key, const std::string& def) const {
  auto it = values_.find(key);
  return it == values_.end() ? def : it->second;
}

int Args::get_int(const std::string& key, int def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  try {
    size_t pos = 0;
    int v = std::stoi(it->second, &pos);
    CTDET_CHECK(pos == it->second.size(), "");
    return v;
  } catch (...) {
    CTDET_FAIL(command_, ": --", key, " expects an integer, got '", it->second, "'");
  }
}

double Args::get_double(const std::string& key, double def) const {
  auto it = values_.find(key);
  if (it == values_.end()) return def;
  try {
    size_t pos = 0;
    double v = std::stod(it->second, &pos);
    CTDET_CHECK(pos == it->second.size(), "");
    return v;
  } catch (...) {
    CTDET_FAIL(command_, ": --", key, " expects a number, got '", it->second, "'");
  }
}

}  // namespace ctdet::app
