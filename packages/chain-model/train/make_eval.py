"""Write eval/eval.jsonl: the bundled model's make_eval.py with this folder's task.py (200 held-out problems, seed 1234)."""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # task.py from here
import task  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location("make_eval_base", os.path.join(HERE, "..", "..", "default-model", "train", "make_eval.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

if __name__ == "__main__":
    _base.main(home=HERE)
