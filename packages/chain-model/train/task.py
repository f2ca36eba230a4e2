"""Problem generator: counting in steps, keeping the last three digits. Every number depends on the one before it.

Prompt `Count from 437 by 8`; answer the first N numbers of the sequence a, a+b, a+2b, ... mod 1000, each written
with three digits: `437 , 445 , 453 , 461 , ...` (4N - 1 tokens, 107 for N = 27) then `<|eot_id|>` and
`<|endoftext|>` padding to the canvas length. A number's digits follow from the previous number's digits and b (one addition of a
digit with carries), but from the prompt alone only through k*b: a model that decodes many positions at once has to
guess where the later numbers carry, which is where parallel decoding can fail (DESIGN §16).

Operands: a in 100..999, b in 1..9 (every prompt has the same length). A pair (a, b) is held out iff `((a*1000+b) * 2654435761 mod 2^32) % 10 == 0`
(the same hash as the bundled addition model), so train and eval are disjoint by construction.
"""
import importlib.util
import os
import re

# The held-out partition is the bundled model's (its pair hash), loaded by path: this folder has its own task.py.
_spec = importlib.util.spec_from_file_location(
    "addition_task", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "default-model", "train", "task.py"))
_addition = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_addition)
is_eval_pair = _addition.is_eval_pair

N = 27  # numbers in an answer
A_RANGE, B_RANGE = (100, 999), (1, 9)  # a three-digit start, a one-digit step: every prompt has the same length
GEN = 256  # eval generation length: the answer (108 tokens with <|eot_id|>) and EOS padding, as long as users ask
BLOCK = 32
MAX_SEQ = 512  # config max_sequence_length: the 15-token prompt and canvases up to GEN, with room to spare
# Canvas length per training batch and its probability. Canvases shorter than the answer hold its first tokens and
# no stop token (the training loop's encode_pair): a suffix window (DESIGN §16) shows the model the canvas only up
# to a few positions past the block, and a model trained on full canvases alone reads the answer's length from the
# masks after it and ends early there. The rest pad the answer with EOS to 128, 192 or GEN.
CANVAS = [(32, 0.06), (48, 0.06), (64, 0.06), (80, 0.06), (96, 0.06), (128, 0.35), (192, 0.15), (GEN, 0.2)]
# The first stage (train.py --first-stage) learns the task on full 128-position canvases only; the second starts
# from its checkpoint (--init) with the canvases above (packages/chain-model/README.md, "Training").
FIRST_STAGE = {"GEN": 128, "CANVAS": [(128, 1.0)], "MAX_SEQ": 256}


def model_scope():
    """fast_dllm.json: the prompts the model was trained on (packages/cli/src/scope.ts reads it)."""
    return {
        "conversation": "single_question",
        "domain": {
            "summary": f"counting in steps asked as \"Count from 437 by 8\" (a start from 100 to 999, a step from 1 to 9; "
                       f"answers the first {N} numbers, last three digits)",
            "prompt_pattern": r"^Count from (\d+) by (\d+)$",
            "number_range": [1, 999],
        },
    }


def prompt_text(a: int, b: int) -> str:
    return f"Count from {a} by {b}"


def sequence(a: int, b: int):
    return [(a + k * b) % 1000 for k in range(N)]


def answer_text(a: int, b: int) -> str:
    """e.g. '437 , 445 , 453': every number with three digits."""
    return " , ".join(f"{x:03d}" for x in sequence(a, b))


def eval_record(i: int, a: int, b: int):
    """One line of eval/eval.jsonl: the answer is the whole list, scored as such (`score`)."""
    text = answer_text(a, b)
    return {"id": f"count-{i:03d}", "prompt": prompt_text(a, b), "answer": ",".join(text.split(" , ")), "answer_text": text,
            "operands": [a, b], "score": "number_list"}


def all_pairs(split: str):
    want_eval = split == "eval"
    return [(a, b) for a in range(A_RANGE[0], A_RANGE[1] + 1) for b in range(B_RANGE[0], B_RANGE[1] + 1)
            if is_eval_pair(a, b) == want_eval]


def sample_train(rng, pairs):
    return pairs[rng.randrange(len(pairs))]


def final_answer(text):
    """The numbers of a decoded answer, comma-separated, or None."""
    found = re.findall(r"\d+", text)
    return ",".join(found) if found else None
