// ra-data: text -> llm.c-format token shards (GPT-2 BPE), and a shard
// inspector.
//
//   ra-data --out-dir DIR [--name NAME] [--format text|brown] FILE|DIR...
//   ra-data --inspect SHARD
//
// Every input file is one document; each document starts with GPT-2's
// <|endoftext|> token (50256), as llm.c's data scripts do, so documents are
// separated by it. Validation split (--val-fraction f): with at least 1/f
// documents, a fraction f of the documents spread evenly through the sorted
// input list; with fewer (say one big file), the last f of all tokens.
// Shards are NAME_train_000000.bin, NAME_val_000000.bin, ... of at most
// --shard-tokens tokens each; existing shards of NAME are never overwritten
// unless --force (which removes them all first).
#include <ra/cli.hpp>
#include <ra/data/cache.hpp>
#include <ra/data/corpus.hpp>
#include <ra/data/error.hpp>
#include <ra/data/shard.hpp>
#include <ra/data/tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;
using ra::data::DataError;

namespace {

struct Options {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::string name = "corpus";
  std::string format = "text";
  double val_fraction = 0.05;
  long shard_tokens = 100'000'000;
  std::string tokenizer_dir = ra::data::default_tokenizer_dir();
  bool force = false;
  std::string inspect;
  int show = 48;
  int vocab_size = ra::data::kGpt2VocabSize;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("input '" + path + "': cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Shows text on one line: control characters escaped, the rest as is.
std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

bool is_shard_of(const std::string& file_name, const std::string& name) {
  const auto ends_bin = file_name.size() > 4 && file_name.compare(file_name.size() - 4, 4, ".bin") == 0;
  return ends_bin && (file_name.rfind(name + "_train", 0) == 0 || file_name.rfind(name + "_val", 0) == 0);
}

// Creates the output folder; refuses (or with --force, removes) shards of
// the same name already there, so a run never mixes old and new shards.
void prepare_out_dir(const Options& o) {
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) throw DataError("--out-dir '" + o.out_dir + "': cannot create: " + ec.message());
  std::vector<fs::path> existing;
  for (const auto& entry : fs::directory_iterator(o.out_dir)) {
    if (is_shard_of(entry.path().filename().string(), o.name)) existing.push_back(entry.path());
  }
  if (existing.empty()) return;
  if (!o.force) {
    throw DataError("--out-dir '" + o.out_dir + "' already has shards named '" + o.name + "' (" +
                    existing.front().filename().string() + (existing.size() > 1 ? ", ..." : "") +
                    "); use --force to replace them or another --name");
  }
  for (const auto& path : existing) fs::remove(path);
  std::cout << "ra-data: removed " << existing.size() << " existing shard(s) named '" << o.name << "' (--force)\n";
}

// Writes `tokens` as NAME_SPLIT_000000.bin, ... and returns the shard count.
int write_split(const Options& o, const std::string& split, const std::vector<std::uint16_t>& tokens) {
  int shards = 0;
  for (std::size_t begin = 0; begin < tokens.size(); begin += static_cast<std::size_t>(o.shard_tokens), ++shards) {
    const std::size_t end = std::min(tokens.size(), begin + static_cast<std::size_t>(o.shard_tokens));
    char file_name[512];
    std::snprintf(file_name, sizeof file_name, "%s_%s_%06d.bin", o.name.c_str(), split.c_str(), shards);
    const std::string path = (fs::path(o.out_dir) / file_name).string();
    ra::data::write_shard(path, std::vector<std::uint16_t>(tokens.begin() + begin, tokens.begin() + end));
    std::cout << "  wrote " << path << ": " << (end - begin) << " tokens\n";
  }
  return shards;
}

int tokenize(const Options& o) {
  if (o.inputs.empty()) throw DataError("no input files (give text files or directories, or --inspect SHARD)");
  if (o.out_dir.empty()) throw DataError("--out-dir is required when tokenizing");
  auto files = ra::data::collect_input_files(o.inputs);
  if (o.format == "brown") {
    const auto is_sample = [](const std::string& f) {
      return ra::data::is_brown_sample_name(fs::path(f).filename().string());
    };
    const auto skipped = files.size() - static_cast<std::size_t>(std::count_if(files.begin(), files.end(), is_sample));
    files.erase(std::remove_if(files.begin(), files.end(), [&](const auto& f) { return !is_sample(f); }), files.end());
    if (skipped) std::cout << "ra-data: --format brown: skipped " << skipped << " file(s) not named like a Brown sample (ca01..cr09)\n";
    if (files.empty()) throw DataError("--format brown: no Brown sample files (ca01..cr09) among the inputs");
  }
  prepare_out_dir(o);

  auto start = std::chrono::steady_clock::now();
  auto tokenizer = ra::data::Gpt2Tokenizer::from_dir(o.tokenizer_dir);
  std::cout << "ra-data: tokenizer from " << o.tokenizer_dir << " (" << tokenizer.vocab_size() << " tokens) loaded in "
            << std::lround(seconds_since(start) * 1000) << " ms\n";
  if (tokenizer.eot_token() < 0) throw DataError("tokenizer '" + o.tokenizer_dir + "' has no <|endoftext|> token");
  if (tokenizer.vocab_size() > 65536) throw DataError("tokenizer vocabulary does not fit the shards' uint16 tokens");

  std::vector<std::vector<std::uint16_t>> documents;
  std::size_t text_bytes = 0, total_tokens = 0;
  double encode_seconds = 0;
  std::vector<int> ids;
  for (const auto& file : files) {
    std::string text = read_file(file);
    if (o.format == "brown") text = ra::data::brown_tagged_to_text(text);
    if (const auto invalid = ra::data::count_invalid_utf8(text)) {
      std::cerr << "ra-data: warning: '" << file << "': " << invalid
                << " bytes are not valid UTF-8 (kept as raw byte tokens)\n";
    }
    start = std::chrono::steady_clock::now();
    ids.assign(1, tokenizer.eot_token());
    tokenizer.encode_append(text, ids);
    encode_seconds += seconds_since(start);
    text_bytes += text.size();
    total_tokens += ids.size();
    documents.emplace_back(ids.begin(), ids.end());
  }

  std::vector<std::uint16_t> train, val;
  std::size_t val_documents = 0;
  const bool by_document = o.val_fraction > 0 && documents.size() * o.val_fraction >= 1.0;
  if (by_document) {
    const auto in_val = ra::data::pick_validation_documents(documents.size(), o.val_fraction);
    for (std::size_t d = 0; d < documents.size(); ++d) {
      auto& split = in_val[d] ? val : train;
      split.insert(split.end(), documents[d].begin(), documents[d].end());
      val_documents += in_val[d];
    }
  } else {
    for (const auto& doc : documents) train.insert(train.end(), doc.begin(), doc.end());
    const auto val_tokens = static_cast<std::size_t>(std::ceil(o.val_fraction * static_cast<double>(train.size())));
    val.assign(train.end() - static_cast<std::ptrdiff_t>(val_tokens), train.end());
    train.resize(train.size() - val_tokens);
  }
  if (train.empty()) throw DataError("the training split is empty (input too small for --val-fraction?)");

  std::cout << "ra-data: " << files.size() << " document(s), " << text_bytes << " bytes of text -> " << total_tokens
            << " tokens in " << encode_seconds << " s ("
            << (encode_seconds > 0 ? text_bytes / 1e6 / encode_seconds : 0.0) << " MB/s)\n";
  std::cout << "ra-data: validation split: "
            << (by_document ? std::to_string(val_documents) + " of " + std::to_string(documents.size()) +
                                  " documents, spread evenly"
                            : std::string("the last ") + std::to_string(val.size()) + " tokens")
            << " (--val-fraction " << o.val_fraction << ")\n";
  const int train_shards = write_split(o, "train", train);
  const int val_shards = val.empty() ? 0 : write_split(o, "val", val);
  std::cout << "ra-data: train " << train.size() << " tokens in " << train_shards << " shard(s), val " << val.size()
            << " tokens in " << val_shards << " shard(s), in " << o.out_dir << "\n";
  return 0;
}

int inspect(const Options& o) {
  const auto tokens = ra::data::read_shard(o.inspect, o.vocab_size);
  const auto header = ra::data::read_shard_header(o.inspect);
  std::size_t documents = 0;
  for (auto t : tokens) documents += (t == ra::data::kGpt2EndOfText);
  std::cout << "shard " << o.inspect << ": valid\n"
            << "  magic " << header.magic << ", version " << header.version << ", " << header.num_tokens
            << " tokens (" << header.file_bytes << " bytes), all < " << o.vocab_size << "\n"
            << "  <|endoftext|> tokens (documents): " << documents << "\n";
  const std::size_t shown = std::min<std::size_t>(tokens.size(), static_cast<std::size_t>(o.show));
  std::cout << "  first " << shown << " tokens:";
  for (std::size_t i = 0; i < shown; ++i) std::cout << ' ' << tokens[i];
  std::cout << "\n";
  try {
    const auto tokenizer = ra::data::Gpt2Tokenizer::from_dir(o.tokenizer_dir);
    std::cout << "  decoded: \"" << printable(tokenizer.decode(tokens.data(), shown)) << "\"\n";
  } catch (const DataError& e) {
    std::cout << "  (not decoded: " << e.what() << ")\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "ra-data: tokenizes UTF-8 text with GPT-2's BPE into llm.c-format train/val token shards, or "
      "validates and shows one shard (--inspect). Each input file is one document, preceded by <|endoftext|>.",
      "ra-data"};
  app.add_option("inputs", o.inputs, "text files, or directories (every non-hidden file below them, sorted)");
  app.add_option("--out-dir", o.out_dir, "where to write NAME_train_*.bin and NAME_val_*.bin");
  app.add_option("--name", o.name, "shard file prefix")->capture_default_str();
  app.add_option("--format", o.format, "input format: text (UTF-8), or brown (the tagged Brown corpus files)")
      ->check(CLI::IsMember({"text", "brown"}))
      ->capture_default_str();
  app.add_option("--val-fraction", o.val_fraction,
                 "share of documents (spread evenly) for the val split; with fewer than 1/f documents, the last "
                 "f of the tokens; 0: no val split")
      ->check(CLI::Range(0.0, 0.5))
      ->capture_default_str();
  app.add_option("--shard-tokens", o.shard_tokens, "most tokens per shard file")
      ->check(ra::cli::at_least(1))
      ->capture_default_str();
  app.add_option("--tokenizer-dir", o.tokenizer_dir, "folder with encoder.json and vocab.bpe (scripts/get-data.sh)")
      ->capture_default_str();
  app.add_flag("--force", o.force, "replace existing shards of the same --name in --out-dir");
  auto* inspect_opt = app.add_option("--inspect", o.inspect, "validate SHARD (ours or llm.c's) and print its header and first tokens");
  app.add_option("--show", o.show, "with --inspect: how many tokens to print and decode")
      ->check(ra::cli::at_least(0))
      ->capture_default_str();
  app.add_option("--vocab-size", o.vocab_size, "with --inspect: tokens must be below this")
      ->check(ra::cli::at_least(1))
      ->capture_default_str();
  inspect_opt->excludes(app.get_option("inputs"))->excludes(app.get_option("--out-dir"));
  return ra::cli::run(app, argc, argv, [&] { return o.inspect.empty() ? tokenize(o) : inspect(o); });
}
