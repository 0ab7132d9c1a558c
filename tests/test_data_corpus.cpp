// Preparing text for ra-data: the Brown corpus's tagged form to plain text,
// input folders to file lists, the validation documents, invalid UTF-8.
#include "test_data_util.hpp"

#include <ra/data/corpus.hpp>
#include <ra/data/error.hpp>

using namespace ra::data::testing;
using Catch::Matchers::Contains;

TEST_CASE("corpus: Brown's tagged form becomes plain text", "[corpus]") {
  const std::string tagged =
      "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, "
      "Atlanta's/np$ 1/2/cd (/( see/vb )/) ./.\n"
      "He/pps didn't/dod* ;/. go/vb ?/.\n"
      "\n\n\tSecond/od paragraph/nn ./.\n";
  CHECK(ra::data::brown_tagged_to_text(tagged) ==
        "The Fulton County Grand Jury said \"no evidence\", Atlanta's 1/2 (see). He didn't; go?\n"
        "\nSecond paragraph.\n");
  CHECK(ra::data::brown_tagged_to_text("").empty());
  CHECK(ra::data::is_brown_sample_name("ca01"));
  CHECK(ra::data::is_brown_sample_name("cr09"));
  for (const char* other : {"cs01", "README", "cats.txt", "ca1", "ca01.txt", "CA01"}) CHECK(!ra::data::is_brown_sample_name(other));
}

TEST_CASE("corpus: input folders expand to their files, sorted, hidden ones skipped", "[corpus]") {
  TempDir dir;
  std::filesystem::create_directories(dir.file("books/b"));
  std::filesystem::create_directories(dir.file("books/.git"));
  for (const char* name : {"books/b/two.txt", "books/a.txt", "books/.hidden", "books/.git/config", "single.txt"}) {
    write_bytes(dir.file(name), "x");
  }
  CHECK(ra::data::collect_input_files({dir.file("single.txt"), dir.file("books")}) ==
        std::vector<std::string>{dir.file("single.txt"), dir.file("books/a.txt"), dir.file("books/b/two.txt")});
  CHECK_THROWS_WITH(ra::data::collect_input_files({dir.file("nope.txt")}),
                    Contains("input '" + dir.file("nope.txt") + "': no such file or directory"));
  std::filesystem::create_directories(dir.file("empty"));
  CHECK_THROWS_WITH(ra::data::collect_input_files({dir.file("empty")}), Contains("no files in it"));
}

TEST_CASE("corpus: validation documents are spread evenly", "[corpus]") {
  const auto val = ra::data::pick_validation_documents(100, 0.05);
  std::vector<std::size_t> picked;
  for (std::size_t i = 0; i < val.size(); ++i) {
    if (val[i]) picked.push_back(i);
  }
  CHECK(picked == std::vector<std::size_t>{19, 39, 59, 79, 99});
  CHECK(ra::data::pick_validation_documents(3, 0.0) == std::vector<bool>{false, false, false});
  CHECK(ra::data::pick_validation_documents(4, 0.5) == std::vector<bool>{false, true, false, true});
}

TEST_CASE("corpus: invalid UTF-8 bytes are counted", "[corpus]") {
  CHECK(ra::data::count_invalid_utf8("plain ascii") == 0);
  CHECK(ra::data::count_invalid_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80") == 0);
  CHECK(ra::data::count_invalid_utf8("\xFF\xC3 \xC0\xAF \xED\xA0\x80") == 7);  // stray, truncated, overlong, surrogate
}
