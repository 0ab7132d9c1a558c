// Reference ids for the tokenizer tests: encodes texts with the npm package
// gpt-3-encoder's own JavaScript encoder. The input file holds UTF-8 texts
// separated by NUL bytes; the output has one line of space-separated ids per
// text. (One call per text: the package's encode() grows its result by
// array concatenation, quadratic in the tokens of one call.)
// Usage: node gpt2_encode_js.js <gpt-3-encoder folder> <texts file>
'use strict';
const fs = require('fs');
const path = require('path');

if (process.argv.length !== 4) {
  process.stderr.write('usage: node gpt2_encode_js.js <gpt-3-encoder folder> <texts file>\n');
  process.exit(2);
}
const encoder = require(path.resolve(process.argv[2], 'Encoder.js'));
const texts = fs.readFileSync(process.argv[3], 'utf8').split('\0');
process.stdout.write(texts.map((text) => encoder.encode(text).join(' ')).join('\n') + '\n');
