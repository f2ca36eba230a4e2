"""Hugging Face checkpoint directories of the models trained here (the bundled LLaDA model and packages/bd-model's
Fast-dLLM v2 model): F32 safetensors written and read back, and the directory's files. No imports of sibling
modules, so that packages/bd-model can load this file by path without its own model.py being shadowed."""
import json
import os
import struct

import torch


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


def read_safetensors(path):
    """name -> float32 tensor, for the F32 files write_safetensors writes."""
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {h['dtype']}; this reader takes the F32 files write_safetensors writes")
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy()).view(h["shape"])
    return out


def write_model_dir(out_dir, tensors, json_files, summary=None, log_path=None):
    """out_dir/model.safetensors from `tensors`, one JSON file per entry of `json_files` (name -> object: config,
    tokenizer, generation config), training_summary.json from `summary`, and the training log at `log_path` (when it
    exists) as training_log.tsv, shipped with the weights."""
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    files = dict(json_files)
    if summary:
        files["training_summary.json"] = summary
    for name, obj in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    if log_path and os.path.exists(log_path):
        with open(log_path) as src, open(os.path.join(out_dir, "training_log.tsv"), "w") as dst:
            dst.write(src.read())
