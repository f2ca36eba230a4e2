"""Write a trained model as a LLaDA-format checkpoint directory (config.json, model.safetensors, tokenizer files)."""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer as tok  # noqa: E402


def write_safetensors(path, tensors):
    """safetensors: 8-byte little-endian header length, JSON header, then raw little-endian F32 data."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].float().contiguous()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)  # keep the data 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def llada_config(cfg):
    return {
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "activation_type": "silu",
        "block_type": "llama",
        "alibi": False,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": cfg["rope_theta"],
        "attention_layer_norm": False,
        "layer_norm_type": "rms",
        "rms_norm_eps": cfg["rms_norm_eps"],
        "include_bias": False,
        "include_qkv_bias": False,
        "bias_for_layer_norm": False,
        "weight_tying": False,
        "d_model": cfg["d_model"],
        "n_layers": cfg["n_layers"],
        "n_heads": cfg["n_heads"],
        "n_kv_heads": cfg["n_heads"],
        "mlp_ratio": cfg["mlp_hidden_size"] / cfg["d_model"],
        "mlp_hidden_size": cfg["mlp_hidden_size"],
        "vocab_size": cfg["vocab_size"],
        "embedding_size": cfg["embedding_size"],
        "max_sequence_length": cfg["max_sequence_length"],
        "mask_token_id": tok.MASK,
        "eos_token_id": tok.EOS,
        "pad_token_id": tok.EOS,
        "init_device": "cpu",
        "scale_logits": False,
        "torch_dtype": "float32",
        "use_cache": False,
    }


def export(model, out_dir, extra=None, log_path=None):
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), model.llada_state_dict())

    def dump(name, obj):
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")

    dump("config.json", llada_config(model.cfg))
    dump("tokenizer.json", tok.tokenizer_json())
    dump("tokenizer_config.json", tok.tokenizer_config())
    dump("generation_config.json", {"bos_token_id": tok.BOS, "eos_token_id": [tok.EOS, tok.EOT], "pad_token_id": tok.EOS,
                                    "mask_token_id": tok.MASK, "gen_length": 128, "block_length": 32, "steps": 128})
    if extra:
        dump("training_summary.json", extra)
    log = log_path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "log.tsv")
    if os.path.exists(log):  # ship the loss / exact-match curve with the weights
        with open(log) as src, open(os.path.join(out_dir, "training_log.tsv"), "w") as dst:
            dst.write(src.read())


if __name__ == "__main__":
    import argparse
    from model import LLaDA
    ap = argparse.ArgumentParser(description="Export a train.py checkpoint to a LLaDA checkpoint directory")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", help="training log to ship as training_log.tsv (default train/log.tsv)")
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    m = LLaDA(ck["cfg"])
    m.load_state_dict(ck["model"])
    export(m, a.out, ck.get("summary"), a.log)
