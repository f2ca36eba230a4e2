"""The bundled task (packages/default-model/train: generator, train/eval split, tokenizer and chat format) laid out
for a Fast-dLLM v2 model with blocks of B = 16: the chat prompt is 16 tokens (both operands have two digits), so
it fills block 0 exactly; the answer, `<|eot_id|>` and `<|endoftext|>` padding fill blocks 1 and 2 (the longest
answer is 26 tokens with its `<|eot_id|>`), so generation caps new tokens at GEN = 32.
"""
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_TRAIN = os.path.join(HERE, "..", "..", "default-model", "train")


def load_default_model_module(file):
    """A module of packages/default-model/train shared with this package, loaded by path: that folder also has
    model.py, decode.py and export.py, which must not shadow these (so the module must import no sibling module)."""
    spec = importlib.util.spec_from_file_location("default_model_" + file[:-3], os.path.join(DEFAULT_MODEL_TRAIN, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


task = load_default_model_module("task.py")  # the generator, its held-out split and answer extraction
tok = load_default_model_module("tokenizer.py")  # vocabulary, chat prompt, encode/decode, tokenizer files

BLOCK = 16  # bd_size
GEN = 32  # cap on new tokens: two blocks after the prompt's block
STOP_IDS = (tok.EOS, tok.EOT)


def prompt_ids(a, b):
    return tok.encode(tok.chat_prompt(task.prompt_text(a, b)))


def answer_ids(a, b):
    """The target answer: the step-by-step text and <|eot_id|> (the stop token the decoder ends on)."""
    return tok.encode(task.answer_text(a, b)) + [tok.EOT]


def training_sequence(a, b):
    """(P + GEN,) ids: prompt, answer, <|eot_id|>, <|endoftext|> padding to the end of the last block; and P."""
    p, ans = prompt_ids(a, b), answer_ids(a, b)
    assert len(ans) <= GEN, (a, b, len(ans))
    return p + ans + [tok.EOS] * (GEN - len(ans)), len(p)
