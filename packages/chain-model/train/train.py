"""Masked-diffusion SFT of a small LLaDA model on counting in steps (task.py): the bundled model's training loop
(packages/default-model/train/train.py) with this folder's task.py and tokenizer.py. Two stages (README, "Training"):

  --first-stage: full 128-position canvases only (task.FIRST_STAGE)
  --init CKPT:   from the first stage's weights, canvases of varying length (task.CANVAS), some cut short
Checkpoints go to --out (default train/out/ckpt.pt), the exported model to ../model, the log to --log.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # task.py and tokenizer.py from here, before the bundled model's
sys.path.insert(1, os.path.join(HERE, "..", "..", "default-model", "train"))
import task  # noqa: E402,F401
import tokenizer  # noqa: E402,F401

if "--first-stage" in sys.argv:  # full 128-position canvases only (task.FIRST_STAGE), before the loop reads them
    sys.argv.remove("--first-stage")
    for name, value in task.FIRST_STAGE.items():
        setattr(task, name, value)

_spec = importlib.util.spec_from_file_location("llada_sft", os.path.join(sys.path[1], "train.py"))  # same name as this file
_sft = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sft)

if __name__ == "__main__":
    _sft.main(home=HERE)
