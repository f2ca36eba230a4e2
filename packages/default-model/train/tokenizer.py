"""Word-level tokenizer (digits are single tokens) written as an HF tokenizers tokenizer.json.

Pre-tokenization = WhitespaceSplit, then the vocabulary's punctuation isolated, then Digits(individual_digits);
special tokens are split out first. `encode` below re-implements exactly that for training. The training texts
put a space between every token ("answer : 8 2"), so isolating punctuation changes none of their ids; it lets
natural text ("answer: 82", "1, 2") encode to the same ids as well.

Decoding writes text as people do: digits of one number join ("82"), no space before ",", ":" or "?", one space
elsewhere. `decode` below re-implements the decoder chain of tokenizer.json (WordPiece joins with spaces, Fuse,
then two Replace rules), which @huggingface/tokenizers (JS) and the Rust tokenizers both implement.
"""
import json
import re

SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|mdm_mask|>"]
WORDS = ["<unk>", "user", "assistant", "system", "What", "is", "+", "=", "?", "carry", ",", "answer", ":"] + [str(d) for d in range(10)]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_special_re = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
# The vocabulary's punctuation: each is a token of its own even when written against a word ("answer:").
PUNCT_RE = "[+=?,:]"
# Decoder rules applied to the space-joined text: no space inside a number, none before , : ?
DIGIT_GAP_RE = "(?<=[0-9]) (?=[0-9])"
PUNCT_GAP_RE = " (?=[,:?])"


def chat_prompt(content: str) -> str:
    return f"<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n{content.strip()}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


class WordTokenizer:
    """The special tokens, then `words` (which must start with "<unk>"): ids, encode/decode and the HF files.
    packages/chain-model trains with its own word list through this class."""

    def __init__(self, words):
        self.VOCAB = SPECIALS + list(words)
        self.TOK2ID = {t: i for i, t in enumerate(self.VOCAB)}
        self.BOS, self.EOS, self.EOT, self.SH, self.EH, self.MASK = (self.TOK2ID[s] for s in SPECIALS)
        self.UNK = self.TOK2ID["<unk>"]

    def encode(self, text: str):
        ids = []
        for piece in _special_re.split(text):
            if not piece:
                continue
            if piece in self.TOK2ID and piece in SPECIALS:
                ids.append(self.TOK2ID[piece])
                continue
            for word in piece.split():
                for part in re.split("(" + PUNCT_RE + ")", word):
                    for sub in re.findall(r"\d|\D+", part):
                        ids.append(self.TOK2ID.get(sub, self.UNK))
        return ids

    def decode(self, ids):
        """Text of `ids` without special tokens, e.g. "7 + 5 = 12 carry 1, 4 + 3 + 1 = 8, answer: 82"."""
        text = " ".join(self.VOCAB[i] for i in ids if self.VOCAB[i] not in SPECIALS)
        return re.sub(PUNCT_GAP_RE, "", re.sub(DIGIT_GAP_RE, "", text))

    def tokenizer_config(self):
        return {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "mask_token": "<|mdm_mask|>",
            "unk_token": "<unk>",
            "model_max_length": 256,
            "clean_up_tokenization_spaces": False,  # the decoder already writes the spacing
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": CHAT_TEMPLATE,
            "added_tokens_decoder": {str(self.TOK2ID[s]): {"content": s, "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False} for s in SPECIALS},
        }

    def tokenizer_json(self):
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": self.TOK2ID[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                for s in SPECIALS
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Split", "pattern": {"Regex": PUNCT_RE}, "behavior": "Isolated", "invert": False},
                {"type": "Digits", "individual_digits": True},
            ]},
            "post_processor": None,
            # WordPiece (no "##" token exists) puts one space before every token but the first; Fuse makes one string
            # so the Replace rules see neighbouring tokens.
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "WordPiece", "prefix": "##", "cleanup": False},
                {"type": "Fuse"},
                {"type": "Replace", "pattern": {"Regex": DIGIT_GAP_RE}, "content": ""},
                {"type": "Replace", "pattern": {"Regex": PUNCT_GAP_RE}, "content": ""},
            ]},
            "model": {"type": "WordLevel", "vocab": self.TOK2ID, "unk_token": "<unk>"},
        }


_default = WordTokenizer(WORDS)
VOCAB, TOK2ID, UNK = _default.VOCAB, _default.TOK2ID, _default.UNK
BOS, EOS, EOT, SH, EH, MASK = _default.BOS, _default.EOS, _default.EOT, _default.SH, _default.EH, _default.MASK
encode, decode = _default.encode, _default.decode
tokenizer_json, tokenizer_config = _default.tokenizer_json, _default.tokenizer_config
