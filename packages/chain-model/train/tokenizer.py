"""The chain model's word-level tokenizer: the bundled model's tokenizer class (packages/default-model/train/
tokenizer.py) with this task's words. Same special tokens and ids 0..5, digits as single tokens, same decoder."""
import importlib.util
import os

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "default-model", "train", "tokenizer.py")
_spec = importlib.util.spec_from_file_location("word_tokenizer", _path)
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

WORDS = ["<unk>", "user", "assistant", "system", "Count", "from", "by", ","] + [str(d) for d in range(10)]
SPECIALS, CHAT_TEMPLATE, chat_prompt = _base.SPECIALS, _base.CHAT_TEMPLATE, _base.chat_prompt
_tok = _base.WordTokenizer(WORDS)
VOCAB, TOK2ID, UNK = _tok.VOCAB, _tok.TOK2ID, _tok.UNK
BOS, EOS, EOT, SH, EH, MASK = _tok.BOS, _tok.EOS, _tok.EOT, _tok.SH, _tok.EH, _tok.MASK
encode, decode = _tok.encode, _tok.decode
tokenizer_json, tokenizer_config = _tok.tokenizer_json, _tok.tokenizer_config
