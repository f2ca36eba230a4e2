"""Write eval/eval.jsonl: 200 held-out problems drawn (seed 1234) from the eval partition of task.py."""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import task  # noqa: E402

N = 200


def main():
    pairs = random.Random(1234).sample(task.all_pairs("eval"), N)
    out = os.path.join(HERE, "..", "eval", "eval.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        for i, (a, b) in enumerate(pairs):
            f.write(json.dumps({"id": f"add-{i:03d}", "prompt": task.prompt_text(a, b), "answer": str(a + b),
                                "answer_text": task.answer_text(a, b), "operands": [a, b]}) + "\n")


if __name__ == "__main__":
    main()
