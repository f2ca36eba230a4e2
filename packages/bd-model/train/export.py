"""Write a trained model as a Fast-dLLM v2 checkpoint directory (config.json with model_type Fast_dLLM_Qwen and
bd_size, model.safetensors in F32 under Qwen2 tensor names, the bundled model's tokenizer files), and read one back."""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import BLOCK, GEN, load_default_model_module, task, tok  # noqa: E402

checkpoint = load_default_model_module("checkpoint.py")  # F32 safetensors and the directory's files, shared


def load_model_dir(model_dir, dtype=torch.float32):
    """The exported directory back as a BlockDiffLM (the weights the TS engines load), in `dtype`."""
    from model import BlockDiffLM
    c = json.load(open(os.path.join(model_dir, "config.json")))
    cfg = {k: c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                             "intermediate_size", "vocab_size", "max_position_embeddings", "rope_theta", "rms_norm_eps", "bd_size")}
    m = BlockDiffLM(cfg)
    params = dict(m.hf_params())
    w = checkpoint.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if set(w) != set(params):
        raise ValueError(f"{model_dir}: tensors {sorted(set(w) ^ set(params))} differ from the model's")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(w[name])
    return m.to(dtype).eval()


def hf_config(cfg):
    """As Fast_dLLM_v2_1.5B's config.json (Qwen2.5 fields), with this model's sizes and the bundled vocabulary."""
    return {
        "architectures": ["Fast_dLLM_QwenForCausalLM"],
        "model_type": "Fast_dLLM_Qwen",
        "bd_size": cfg["bd_size"],
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": None,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "vocab_size": cfg["vocab_size"],
        "bos_token_id": tok.BOS,
        "eos_token_id": tok.EOS,
        "pad_token_id": tok.EOS,
        # The bundled vocabulary's mask token (<|mdm_mask|>), not Qwen's "|<MASK>|": named here.
        "mask_token_id": tok.MASK,
        "torch_dtype": "float32",
        "use_cache": False,
    }


def export(model, out_dir, extra=None, log_path=None):
    """The model as a Fast-dLLM v2 checkpoint directory; `extra`: training_summary.json; the log (default
    train/log.tsv) ships as training_log.tsv."""
    checkpoint.write_model_dir(out_dir, model.hf_state_dict(), {
        "config.json": hf_config(model.cfg),
        "tokenizer.json": tok.tokenizer_json(),
        "tokenizer_config.json": tok.tokenizer_config(),
        "fast_dllm.json": task.model_scope(),
        # Stop tokens: <|eot_id|> ends the answer; <|endoftext|> is EOS.
        "generation_config.json": {"bos_token_id": tok.BOS, "eos_token_id": [tok.EOS, tok.EOT], "pad_token_id": tok.EOS,
                                   "mask_token_id": tok.MASK, "max_new_tokens": GEN, "bd_size": BLOCK},
    }, extra, log_path or os.path.join(HERE, "log.tsv"))


if __name__ == "__main__":
    import argparse
    from model import BlockDiffLM
    ap = argparse.ArgumentParser(description="Export a train.py checkpoint to a Fast-dLLM v2 checkpoint directory")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", help="training log to ship as training_log.tsv (default train/log.tsv)")
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    m = BlockDiffLM(ck["cfg"])
    m.load_state_dict(ck["model"])
    export(m, a.out, ck.get("summary"), a.log)
