#include <ra/data/corpus.hpp>
#include <ra/data/error.hpp>
#include <ra/data/pretokenize.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

namespace fs = std::filesystem;

namespace ra::data {
namespace {

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// Brown tags a word as "word/tag"; the word itself may contain '/' ("1/2/cd").
std::string_view strip_tag(std::string_view tagged_word) {
  const auto slash = tagged_word.rfind('/');
  return slash == std::string_view::npos || slash == 0 ? tagged_word : tagged_word.substr(0, slash);
}

bool attaches_to_previous(std::string_view word) {
  return word == "," || word == "." || word == ";" || word == ":" || word == "?" || word == "!" || word == ")" ||
         word == "]" || word == "''";
}
bool attaches_to_next(std::string_view word) { return word == "``" || word == "(" || word == "["; }

}  // namespace

std::vector<std::string> collect_input_files(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) throw DataError("input '" + path + "': no such file or directory");
    if (!fs::is_directory(status)) {
      files.push_back(path);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(path); it != fs::recursive_directory_iterator(); ++it) {
      if (is_hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) found.push_back(it->path().string());
    }
    if (found.empty()) throw DataError("input directory '" + path + "': no files in it");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

std::string brown_tagged_to_text(std::string_view tagged) {
  std::string text;
  bool in_paragraph = false;
  bool glue_next = false;  // the previous word opened a quote or bracket
  std::istringstream lines{std::string(tagged)};
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line[0] == '\t' && in_paragraph) {
      text += "\n\n";
      in_paragraph = false;
    }
    std::istringstream words(line);
    for (std::string tagged_word; words >> tagged_word;) {
      const std::string_view word = strip_tag(tagged_word);
      if (in_paragraph && !glue_next && !attaches_to_previous(word)) text += ' ';
      if (word == "``" || word == "''") {
        text += '"';
      } else {
        text += word;
      }
      glue_next = attaches_to_next(word);
      in_paragraph = true;
    }
  }
  if (in_paragraph) text += '\n';
  return text;
}

bool is_brown_sample_name(std::string_view name) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' && digit(name[2]) && digit(name[3]);
}

std::vector<bool> pick_validation_documents(std::size_t count, double val_fraction) {
  std::vector<bool> val(count, false);
  for (std::size_t i = 0; i < count; ++i) {
    val[i] = std::floor((i + 1) * val_fraction) > std::floor(i * val_fraction);
  }
  return val;
}

std::size_t count_invalid_utf8(std::string_view text) {
  std::size_t invalid = 0;
  for (std::size_t at = 0; at < text.size();) {
    const CharAt c = char_at(text, at);
    // A 1-byte "other" at a byte >= 0x80 can only be an invalid byte.
    if (c.len == 1 && static_cast<unsigned char>(text[at]) >= 0x80) ++invalid;
    at += c.len;
  }
  return invalid;
}

}  // namespace ra::data
