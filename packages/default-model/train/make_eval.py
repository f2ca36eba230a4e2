"""Write eval/eval.jsonl: 200 held-out problems drawn (seed 1234) from the eval partition of task.py.
The task module writes each record (`eval_record`); packages/chain-model runs this file with its own task.py first."""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.append(HERE)
import task  # noqa: E402

N = 200


def main(home=HERE):
    """`home`: the train/ folder whose ../eval/eval.jsonl is written."""
    pairs = random.Random(1234).sample(task.all_pairs("eval"), N)
    out = os.path.join(home, "..", "eval", "eval.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        for i, (a, b) in enumerate(pairs):
            f.write(json.dumps(task.eval_record(i, a, b)) + "\n")


if __name__ == "__main__":
    main()
