// Writes a random LLaDA-shaped model directory (config.json, model.safetensors in F32, a WordLevel tokenizer with
// the bundled model's special tokens and chat template), for benchmarks that need a model on disk:
//   node bench/server/random-model.mjs [DIR] [--small]
// Default shape: d_model 768, 12 layers, 12 heads, SwiGLU 2048, vocab 32000 (the "100M" model of
// bench/wasm/bench.mjs: about 134M parameters, 537 MB). --small: d 256, 4 layers, ff 768, vocab 4096.
// Weights are uniform in ±0.02 from a fixed seed, so the same command writes the same bytes.
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const BIG = { d: 768, layers: 12, heads: 12, ff: 2048, vocab: 32000 };
export const SMALL = { d: 256, layers: 4, heads: 4, ff: 768, vocab: 4096 };
const SPECIALS = ['<|startoftext|>', '<|endoftext|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>', '<|mdm_mask|>', '<unk>'];

const bundledDir = fileURLToPath(new URL('../../packages/default-model/model/', import.meta.url));

/** Tensor names and shapes of a LLaDA checkpoint (the names packages/model's tensorNames() reads). */
function tensors(s) {
  const p = 'model.transformer';
  const out = [[`${p}.wte.weight`, [s.vocab, s.d]]];
  for (let i = 0; i < s.layers; i++) {
    const b = `${p}.blocks.${i}`;
    out.push([`${b}.attn_norm.weight`, [s.d]], [`${b}.q_proj.weight`, [s.d, s.d]], [`${b}.k_proj.weight`, [s.d, s.d]],
      [`${b}.v_proj.weight`, [s.d, s.d]], [`${b}.attn_out.weight`, [s.d, s.d]], [`${b}.ff_norm.weight`, [s.d]],
      [`${b}.ff_proj.weight`, [s.ff, s.d]], [`${b}.up_proj.weight`, [s.ff, s.d]], [`${b}.ff_out.weight`, [s.d, s.ff]]);
  }
  out.push([`${p}.ln_f.weight`, [s.d]], [`${p}.ff_out.weight`, [s.vocab, s.d]]);
  return out;
}

export async function writeRandomModel(dir, s = BIG) {
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(bundledDir, 'config.json'), 'utf8'));
  Object.assign(config, {
    d_model: s.d, n_layers: s.layers, n_heads: s.heads, n_kv_heads: s.heads, mlp_hidden_size: s.ff, mlp_ratio: s.ff / s.d,
    vocab_size: s.vocab, embedding_size: s.vocab, max_sequence_length: 4096, mask_token_id: 5, eos_token_id: 1, pad_token_id: 1,
  });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));

  // Tokenizer: the special tokens at the bundled model's ids, then words w7 … w{vocab-1}, split on whitespace.
  const vocab = {};
  SPECIALS.forEach((t, i) => (vocab[t] = i));
  for (let i = SPECIALS.length; i < s.vocab; i++) vocab[`w${i}`] = i;
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, normalizer: null, post_processor: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    pre_tokenizer: { type: 'WhitespaceSplit' },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  }));
  const tc = JSON.parse(readFileSync(join(bundledDir, 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    chat_template: tc.chat_template, bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>',
    mask_token: '<|mdm_mask|>', unk_token: '<unk>', model_max_length: 4096, tokenizer_class: 'PreTrainedTokenizerFast',
  }, null, 2));

  // safetensors: u64 header length, JSON header, then each tensor's f32 data in order.
  const list = tensors(s);
  const header = {};
  let offset = 0;
  for (const [name, shape] of list) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // data starts 8-byte aligned
  const out = createWriteStream(join(dir, 'model.safetensors'));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  out.write(len);
  out.write(json);
  let seed = 7;
  const chunk = new Float32Array(1 << 20); // 4 MB of values at a time
  for (const [name, shape] of list) {
    let left = shape.reduce((a, b) => a * b, 1);
    const norm = /norm|ln_f/.test(name); // RMSNorm weights, the final one (ln_f) included
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        chunk[i] = norm ? 1 : (seed / 2 ** 32 - 0.5) * 0.04;
      }
      // A copy: the stream may still hold the buffer when the next chunk is generated into `chunk` (writing the
      // view itself let later tensors' values overwrite earlier ones still queued).
      if (!out.write(Buffer.from(chunk.slice(0, n).buffer))) await once(out, 'drain');
      left -= n;
    }
  }
  out.end();
  await once(out, 'finish');
  const params = list.reduce((a, [, shape]) => a + shape.reduce((x, y) => x * y, 1), 0);
  return { dir, params, bytes: offset };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const dir = args.find((a) => !a.startsWith('--')) ?? '/tmp/fast-dllm-random-100m';
  const r = await writeRandomModel(dir, args.includes('--small') ? SMALL : BIG);
  console.log(`${r.dir}: ${(r.params / 1e6).toFixed(1)}M parameters, ${(r.bytes / 1e6).toFixed(0)} MB of F32 weights`);
}
