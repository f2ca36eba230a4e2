"""Write a trained model as a LLaDA-format checkpoint directory (config.json, model.safetensors, tokenizer files)."""
import os
import sys

import torch

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402
import tokenizer as tok  # noqa: E402
from checkpoint import write_model_dir  # noqa: E402


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
    """The model as a LLaDA checkpoint directory; `extra`: training_summary.json; the log (default train/log.tsv)
    ships as training_log.tsv."""
    write_model_dir(out_dir, model.llada_state_dict(), {
        "config.json": llada_config(model.cfg),
        "tokenizer.json": tok.tokenizer_json(),
        "tokenizer_config.json": tok.tokenizer_config(),
        "fast_dllm.json": task.model_scope(),
        "generation_config.json": {"bos_token_id": tok.BOS, "eos_token_id": [tok.EOS, tok.EOT], "pad_token_id": tok.EOS,
                                   "mask_token_id": tok.MASK, "gen_length": task.GEN, "block_length": task.BLOCK, "steps": task.GEN},
    }, extra, log_path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "log.tsv"))


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
