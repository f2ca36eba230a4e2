"""Problem generator: two-digit addition answered column by column with carries written out.

Train and eval are disjoint by construction: an operand pair (a, b) belongs to the eval split iff
its 32-bit multiplicative hash is divisible by 10 (see `is_eval_pair`, re-implemented in src/index.ts).
"""
import random
import re

LO, HI = 10, 99  # both operands are two-digit numbers
GEN = 128  # eval generation length
BLOCK = 32
# Canvas length per training batch and its probability. LLaDA-Instruct pads each mini-batch with EOS to a common
# length; here that length is drawn so every position up to GEN is trained to be EOS after the answer (<= 26
# tokens with <|eot_id|>), while most compute goes to the answer rather than to padding (~1.8x fewer tokens/step).
CANVAS = [(32, 0.4), (64, 0.3), (GEN, 0.3)]


def model_scope():
    """fast_dllm.json: what the model was trained on, for fast-dllm to tell a user who asks something else
    (packages/cli/src/scope.ts reads it). The model saw one question per conversation, never a system message or
    an earlier turn, and only prompts of `prompt_text`'s form with operands LO..HI."""
    return {
        "conversation": "single_question",
        "domain": {
            "summary": f"two-digit addition asked as \"What is 23 + 48 ?\" (both numbers from {LO} to {HI})",
            "prompt_pattern": r"^What is (\d+) \+ (\d+) \?$",
            "number_range": [LO, HI],
        },
    }


def pair_hash(a: int, b: int) -> int:
    # Knuth multiplicative hash of a*1000+b, mod 2^32 (same as Math.imul(x, 2654435761) >>> 0 in JS).
    return ((a * 1000 + b) * 2654435761) & 0xFFFFFFFF


def is_eval_pair(a: int, b: int) -> bool:
    return pair_hash(a, b) % 10 == 0


def prompt_text(a: int, b: int) -> str:
    return f"What is {a} + {b} ?"


def answer_text(a: int, b: int) -> str:
    """Step-by-step answer, least significant column first, e.g. '7 + 5 = 12 carry 1 , 4 + 3 + 1 = 8 , answer : 82'."""
    steps = []
    carry = 0
    da, db = str(a)[::-1], str(b)[::-1]
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        expr = f"{x} + {y}" + (f" + {carry}" if carry else "") + f" = {s}"
        carry = s // 10
        if carry:
            expr += " carry 1"
        steps.append(expr)
    return " , ".join(steps) + f" , answer : {a + b}"


def eval_record(i: int, a: int, b: int):
    """One line of eval/eval.jsonl (make_eval.py)."""
    return {"id": f"add-{i:03d}", "prompt": prompt_text(a, b), "answer": str(a + b), "answer_text": answer_text(a, b), "operands": [a, b]}


def all_pairs(split: str):
    want_eval = split == "eval"
    return [(a, b) for a in range(LO, HI + 1) for b in range(LO, HI + 1) if is_eval_pair(a, b) == want_eval]


def sample_train(rng: random.Random, pairs):
    return pairs[rng.randrange(len(pairs))]


def final_answer(text):
    """The number after the last "answer:" in a decoded answer (src/index.ts `extractAnswer`), or None."""
    found = re.findall(r"answer\s*:?\s*(-?\d+)", text, flags=re.IGNORECASE)
    return found[-1] if found else None
