#include "io/label_map.h"

#include <cctype>
#include <map>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

namespace {
struct Tok {
  enum Kind { Ident, String, Number, Punct, End } kind;
  std::string text;
  int line;
};

class Lexer {
 public:
  Lexer(const std::string& s, const std::string& src) : s_(s), src_(src) {}
  Tok next() {
    for (;;) {
      while (i_ < s_.size() && std::isspace((unsigned char)s_[i_])) {
        if (s_[i_] == '\n') ++line_;
        ++i_;
      }
      if (i_ < s_.size() && s_[i_] == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
        continue;
      }
      break;
    }
    if (i_ >= s_.size()) return {Tok::End, "", line_};
    char c = s_[i_];
    if (c == '\'' || c == '"') {
      std::string out;
      size_t j = i_ + 1;
      for (; j < s_.size() && s_[j] != c; ++j) {
        if (s_[j] == '\n') break;
        if (s_[j] == '\\' && j + 1 < s_.size()) {
          ++j;
          char e = s_[j];
          out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
          out += s_[j];
        }
      }
      CTDET_CHECK(j < s_.size() && s_[j] == c, src_, ":", line_, ": unterminated string");
      i_ = j + 1;
      return {Tok::String, out, line_};
    }
    if (std::isalpha((unsigned char)c) || c == '_') {
      size_t j = i_;
      while (j < s_.size() && (std::isalnum((unsigned char)s_[j]) || s_[j] == '_' || s_[j] == '.')) ++j;
      Tok t{Tok::Ident, s_.substr(i_, j - i_), line_};
      i_ = j;
      return t;
    }
    if (std::isdigit((unsigned char)c) || c == '-' || c == '+') {
      size_t j = i_ + 1;
      while (j < s_.size() && (std::isalnum((unsigned char)s_[j]) || s_[j] == '.')) ++j;
      Tok t{Tok::Number, s_.substr(i_, j - i_), line_};
      i_ = j;
      return t;
    }
    if (c == '{' || c == '}' || c == ':' || c == ',' || c == ';' || c == '<' || c == '>') {
      ++i_;
      return {Tok::Punct, std::string(1, c), line_};
    }
    CTDET_FAIL(src_, ":", line_, ": unexpected character '", c, "'");
  }

 private:
  const std::string& s_;
  const std::string& src_;
  size_t i_ = 0;
  int line_ = 1;
};
}  // namespace

std::vector<std::string> parse_label_map(const std::string& text, const std::string& source) {
  Lexer lx(text, source);
  std::map<long, std::string> by_id;
  std::map<long, int> id_line;
  Tok t = lx.next();
  while (t.kind != Tok::End) {
    CTDET_CHECK(t.kind == Tok::Ident && t.text == "item", source, ":", t.line, ": expected 'item', found '", t.text,
                "'");
    int item_line = t.line;
    t = lx.next();
    if (t.kind == Tok::Punct && t.text == ":") t = lx.next();
    CTDET_CHECK(t.kind == Tok::Punct && (t.text == "{" || t.text == "<"), source, ":", t.line,
                ": expected '{' after 'item'");
    long id = -1;
    bool has_name = false;
    std::string name;
    for (;;) {
      t = lx.next();
      CTDET_CHECK(t.kind != Tok::End, source, ":", item_line, ": item not closed");
      if (t.kind == Tok::Punct && (t.text == "}" || t.text == ">")) break;
      if (t.kind == Tok::Punct && (t.text == "," || t.text == ";")) continue;
      CTDET_CHECK(t.kind == Tok::Ident, source, ":", t.line, ": expected a field name, found '", t.text, "'");
      std::string field = t.text;
      Tok v = lx.next();
      if (v.kind == Tok::Punct && v.text == ":") v = lx.next();
      if (v.kind == Tok::Punct && (v.text == "{" || v.text == "<")) {  // nested message: skip it
        int depth = 1;
        while (depth > 0) {
          Tok s = lx.next();
          CTDET_CHECK(s.kind != Tok::End, source, ":", v.line, ": field '", field, "' not closed");
          if (s.kind == Tok::Punct && (s.text == "{" || s.text == "<")) ++depth;
          if (s.kind == Tok::Punct && (s.text == "}" || s.text == ">")) --depth;
        }
        continue;
      }
      if (field == "id") {
        CTDET_CHECK(v.kind == Tok::Number, source, ":", v.line, ": id must be an integer, found '", v.text, "'");
        size_t used = 0;
        try {
          id = std::stol(v.text, &used);
        } catch (...) {
          used = 0;
        }
        CTDET_CHECK(used == v.text.size(), source, ":", v.line, ": id must be an integer, found '", v.text, "'");
      } else if (field == "name") {
        CTDET_CHECK(v.kind == Tok::String, source, ":", v.line, ": name must be a quoted string, found '", v.text,
                    "'");
        name = v.text;
        has_name = true;
      }
    }
    CTDET_CHECK(id >= 0, source, ":", item_line, ": item without an id");
    CTDET_CHECK(has_name && !name.empty(), source, ":", item_line, ": item id ", id, " without a name");
    CTDET_CHECK(id >= 1, source, ":", item_line, ": item '", name, "' has id ", id,
                "; ids start at 1 (0 is background)");
    CTDET_CHECK(!by_id.count(id), source, ":", item_line, ": id ", id, " used twice ('", by_id[id], "' on line ",
                id_line[id], " and '", name, "')");
    by_id[id] = name;
    id_line[id] = item_line;
    t = lx.next();
  }
  CTDET_CHECK(!by_id.empty(), source, ": no items");
  std::vector<std::string> names;
  for (auto& [id, name] : by_id) {
    CTDET_CHECK(id == long(names.size()) + 1, source, ":", id_line[id], ": ids must be 1..N without gaps; id ",
                id, " ('", name, "') follows id ", names.size());
    for (size_t k = 0; k < names.size(); ++k)
      CTDET_CHECK(names[k] != name, source, ":", id_line[id], ": name '", name, "' used by ids ", k + 1, " and ",
                  id);
    names.push_back(name);
  }
  return names;
}

std::vector<std::string> read_label_map(const std::string& path) { return parse_label_map(read_file(path), path); }

std::string label_map_to_text(const std::vector<std::string>& class_names) {
  std::string out;
  for (size_t i = 0; i < class_names.size(); ++i) {
    std::string esc;
    for (char c : class_names[i]) {
      if (c == '\'' || c == '\\') esc += '\\';
      esc += c;
    }
    out += str("item {\n  id: ", i + 1, "\n  name: '", esc, "'\n}\n");
  }
  return out;
}

void write_label_map(const std::string& path, const std::vector<std::string>& class_names) {
  CTDET_CHECK(!class_names.empty(), "write_label_map: no classes for '", path, "'");
  write_file_atomic(path, label_map_to_text(class_names));
}

}  // namespace ctdet
