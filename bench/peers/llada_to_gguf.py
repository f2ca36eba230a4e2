#!/usr/bin/env python3
"""A LLaDA model directory with F32 safetensors (bench/server/random-model.mjs) -> an F32 GGUF for llama.cpp.

Usage: PYTHONPATH=<llama.cpp>/gguf-py python3 bench/peers/llada_to_gguf.py MODEL_DIR OUT.gguf

Written for the peer benchmark (bench/peers/llamacpp.mjs) because llama.cpp's own converter loads the tokenizer
through `transformers`, which this machine does not have. It writes what that converter writes for LLaDA
(conversion/llada.py): the llama-style hyperparameters, non-causal attention, unshifted logits, Q and K rows
permuted from Hugging Face's rotate-half RoPE layout to GGML's interleaved one. The vocabulary is the model's
WordLevel one; every word is a user-defined token, so llama.cpp's tokenizer matches a prompt of concatenated words
("w1000w1001…") one token per word, as our tokenizer does with the same words separated by spaces.
"""
import json
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode='r')
    for name, t in header.items():
        if name == '__metadata__':
            continue
        if t['dtype'] != 'F32':
            sys.exit(f'{name}: dtype {t["dtype"]}; this converter reads F32 checkpoints only')
        a, b = t['data_offsets']
        yield name, data[base + a:base + b].view(np.float32).reshape(t['shape'])


def rope_permute(w, n_head):
    """(n_head·hd, d) rows from [first halves | second halves] per head to interleaved pairs, as llama.cpp expects."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(model_dir, out):
    cfg = json.load(open(f'{model_dir}/config.json'))
    tok = json.load(open(f'{model_dir}/tokenizer.json'))
    d, layers, heads = cfg['d_model'], cfg['n_layers'], cfg['n_heads']
    kv_heads = cfg.get('n_kv_heads') or heads
    vocab_size = cfg['vocab_size']

    w = gguf.GGUFWriter(out, 'llada')
    w.add_name('fast-dllm random LLaDA-shaped model')
    w.add_context_length(cfg.get('max_sequence_length', 4096))
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(cfg['mlp_hidden_size'])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(d // heads)
    w.add_rope_freq_base(cfg.get('rope_theta', 10000.0))
    w.add_layer_norm_rms_eps(cfg.get('rms_norm_eps', 1e-5))
    w.add_vocab_size(vocab_size)
    w.add_causal_attention(False)
    w.add_diffusion_shift_logits(False)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    # Vocabulary: ids from tokenizer.json; specials are control tokens, words user-defined (matched whole).
    by_id = {i: s for s, i in tok['model']['vocab'].items()}
    special = {t['id'] for t in tok.get('added_tokens', []) if t.get('special')}
    tokens, types = [], []
    for i in range(vocab_size):
        tokens.append(by_id.get(i, f'[PAD{i}]'))
        types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in by_id else gguf.TokenType.UNUSED)
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre('default')
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(['Ġ Ġ'])  # llama.cpp refuses a BPE vocabulary without merges; the prompt never reaches BPE
    w.add_bos_token_id(0)
    w.add_eos_token_id(cfg.get('eos_token_id', 1))
    w.add_pad_token_id(cfg.get('pad_token_id', 1))
    w.add_mask_token_id(cfg['mask_token_id'])
    w.add_add_bos_token(True)
    # The prompt as given: llama-diffusion-cli always applies a chat template.
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLADA, layers)
    for name, t in read_safetensors(f'{model_dir}/model.safetensors'):
        if name.endswith('q_proj.weight'):
            t = rope_permute(t, heads)
        elif name.endswith('k_proj.weight'):
            t = rope_permute(t, kv_heads)
        new = names.get_name(name, try_suffixes=('.weight', '.bias'))
        if new is None:
            sys.exit(f'{name}: no GGUF name for this tensor')
        w.add_tensor(new, np.ascontiguousarray(t, dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
