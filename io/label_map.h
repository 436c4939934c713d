// TF Object Detection API label maps (StringIntLabelMap text proto):
//   item { id: 1 name: 'GGO' }
// Ids start at 1 (0 is background). ctdet needs ids 1..N without gaps, in any order in the file;
// the result is the class name list of a Dataset (index id-1).
#pragma once
#include <string>
#include <vector>

namespace ctdet {

// `source` names the text in error messages (file name). Accepts ' or " strings, # comments, optional
// ':' before '{', and ignores other item fields (display_name, keypoints...).
std::vector<std::string> parse_label_map(const std::string& text, const std::string& source = "label map");
std::vector<std::string> read_label_map(const std::string& path);
std::string label_map_to_text(const std::vector<std::string>& class_names);
void write_label_map(const std::string& path, const std::vector<std::string>& class_names);  // atomic

}  // namespace ctdet
