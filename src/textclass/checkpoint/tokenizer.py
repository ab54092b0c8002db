"""Tokenization exactly as Hugging Face does it, on the `tokenizers` library (no transformers import).

Sources, in order: tokenizer.json; vocab.txt (WordPiece, BERT-style normalisation from
tokenizer_config.json); vocab.json + merges.txt (byte-level BPE, RoBERTa-style); spm.model (SentencePiece
Unigram, DeBERTa-v2/v3-style; reading it needs the optional `sentencepiece` package).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tokenizers import AddedToken, Encoding, Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as RustTokenizer
from tokenizers.models import BPE, Unigram, WordPiece

from textclass.errors import CheckpointError, InputError

TextInput = str | tuple[str, str]  # a text, or a (text, text_pair) pair
# transformers writes this for "no limit"; anything this large means the model's own limit applies.
_NO_LIMIT = 10**12


def clean_up_tokenization(text: str) -> str:
    """transformers' clean-up of spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):  # fmt: skip
        text = text.replace(before, after)
    return text


@dataclass(frozen=True)
class Encoded:
    """One tokenized input, unpadded: what the batcher consumes."""

    ids: list[int]
    type_ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    """A loaded tokenizer with the model's limits; thread-safe for encoding."""

    def __init__(
        self,
        tokenizer: RustTokenizer,
        model_max_length: int,
        pad_token_id: int,
        return_token_type_ids: bool,
        clean_up_tokenization_spaces: bool,
        source: str,
    ):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._base = tokenizer
        self.model_max_length = model_max_length
        self.pad_token_id = pad_token_id
        self.return_token_type_ids = return_token_type_ids
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.source = source  # which file(s) it was built from, for `inspect`
        # A Rust tokenizer's truncation setting is shared state, so each (length, side) gets its own copy
        # instead of toggling one copy under concurrent requests.
        self._truncating: dict[tuple[int, str], RustTokenizer] = {}
        self._lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: Path, model_max_tokens: int, return_token_type_ids: bool) -> Tokenizer:
        """Load from a checkpoint folder; `model_max_tokens` is what the model's position table holds."""
        settings = _read_json(folder / "tokenizer_config.json")
        special = _read_json(folder / "special_tokens_map.json")
        if (folder / "tokenizer.json").is_file():
            try:
                rust = RustTokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as exc:
                raise CheckpointError(f"cannot read {folder / 'tokenizer.json'}: {exc}") from exc
            source = "tokenizer.json"
        elif (folder / "vocab.txt").is_file():
            rust, source = _wordpiece(folder / "vocab.txt", settings, special), "vocab.txt"
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            rust, source = _byte_level_bpe(folder, settings, special), "vocab.json+merges.txt"
        elif (folder / "spm.model").is_file():
            rust, source = _sentencepiece_unigram(folder / "spm.model", settings, special), "spm.model"
        else:
            raise CheckpointError(
                f"{folder} has no tokenizer; expected tokenizer.json, vocab.txt, vocab.json + merges.txt or spm.model"
            )
        configured = settings.get("model_max_length")
        limit = model_max_tokens
        if isinstance(configured, (int, float)) and 0 < configured < _NO_LIMIT:
            limit = min(int(configured), model_max_tokens)
        pad_id = _pad_id(rust, _token_text(settings.get("pad_token") or special.get("pad_token")))
        cleanup = settings.get("clean_up_tokenization_spaces")
        return cls(
            rust,
            model_max_length=limit,
            pad_token_id=pad_id,
            # transformers 4.x cleaned up when the key was absent; v5 does not. We keep 4.x behaviour.
            clean_up_tokenization_spaces=True if cleanup is None else bool(cleanup),
            return_token_type_ids=return_token_type_ids,
            source=source,
        )

    # ---- encoding ------------------------------------------------------------------------------
    def _configured(self, max_length: int | None, side: str) -> RustTokenizer:
        if max_length is None:
            return self._base
        key = (max_length, side)
        with self._lock:
            if key not in self._truncating:
                copy = RustTokenizer.from_str(self._base.to_str())
                copy.enable_truncation(max_length, strategy="longest_first", direction=side)
                self._truncating[key] = copy
            return self._truncating[key]

    def encode_batch(
        self,
        inputs: Sequence[TextInput],
        truncation: bool = True,
        max_length: int | None = None,
        truncation_side: Literal["right", "left"] = "right",
        add_special_tokens: bool = True,
    ) -> list[Encoded]:
        """Tokenize texts or pairs, unpadded. Truncates at `max_length` (default: the model's limit)."""
        limit = self.model_max_length if max_length is None else max_length
        if limit < 1:
            raise InputError(f"max_length must be at least 1, got {limit}")
        rust = self._configured(limit if truncation else None, truncation_side)
        try:
            if len(inputs) == 1 and isinstance(inputs[0], str):  # one text (a server request): `encode` keeps the
                # GIL, where `encode_batch` releases and retakes it around Rayon's pool: +3-5% served throughput
                encodings = [rust.encode(inputs[0], add_special_tokens=add_special_tokens)]
            else:
                encodings = rust.encode_batch(list(inputs), add_special_tokens=add_special_tokens)
        except TypeError as exc:
            raise InputError(f"inputs must be strings or (text, text_pair) pairs of strings: {exc}") from exc
        return [Encoded(e.ids, e.type_ids) for e in encodings]

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        padding: bool | Literal["longest", "max_length", "do_not_pad"] = False,
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, Any]:
        """The transformers tokenizer call: {"input_ids", "attention_mask"[, "token_type_ids"]} as lists.

        A single text gives flat lists, a list gives a list of lists, as in transformers.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise InputError(f"{len(texts)} texts but {len(pairs)} text pairs")
            inputs: list[TextInput] = list(zip(texts, pairs))
        else:
            inputs = texts
        limit = max_length if max_length is not None else self.model_max_length
        encoded = self.encode_batch(
            inputs, truncation=truncation, max_length=limit, add_special_tokens=add_special_tokens
        )
        if padding is True or padding == "longest":
            width = max((len(e) for e in encoded), default=0)
        elif padding == "max_length":
            width = limit
        else:
            width = 0
        out: dict[str, list] = {"input_ids": [], "attention_mask": []}
        if self.return_token_type_ids:
            out["token_type_ids"] = []
        for e in encoded:
            pad = max(0, width - len(e))
            out["input_ids"].append(e.ids + [self.pad_token_id] * pad)
            out["attention_mask"].append([1] * len(e) + [0] * pad)
            if self.return_token_type_ids:
                out["token_type_ids"].append(e.type_ids + [0] * pad)
        return {k: v[0] for k, v in out.items()} if single else out

    # ---- the seed's manual steps ---------------------------------------------------------------
    def tokenize(self, text: str, text_pair: str | None = None) -> list[str]:
        """Tokens without special tokens, as transformers' `tokenizer.tokenize`."""
        return self._base.encode(text, text_pair, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int | None]:
        return [self._base.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str | None]:
        return [self._base.id_to_token(i) for i in ids]

    def encoding(self, text: str, text_pair: str | None = None) -> Encoding:
        """The full `tokenizers` Encoding (tokens, offsets, word ids) with special tokens, truncated."""
        return self._configured(self.model_max_length, "right").encode(text, text_pair)

    def encodings(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[Encoding]:
        """Full untruncated `tokenizers` Encodings (ids, tokens, char offsets, special-token mask)."""
        return self._base.encode_batch(list(texts), add_special_tokens=add_special_tokens)

    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        text = self._base.decode(list(ids), skip_special_tokens=skip_special_tokens)
        cleanup = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        return clean_up_tokenization(text) if cleanup else text


# ---- building a fast tokenizer from the slow tokenizers' files ----------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """Special tokens are written either as strings or as AddedToken dicts with a 'content' key."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _pad_id(rust: RustTokenizer, configured: str | None) -> int:
    """The padding id: the configured pad token, else tokenizer.json's padding, else the usual names."""
    padding = rust.padding or {}  # tokenizer.json's padding settings (read without re-serialising the tokenizer)
    for token in (configured, padding.get("pad_token"), "[PAD]", "<pad>"):
        if token and rust.token_to_id(token) is not None:
            return rust.token_to_id(token)
    return int(padding.get("pad_id", 0))


def _special(settings: dict, special: dict, key: str, default: str) -> str:
    return _token_text(settings.get(key)) or _token_text(special.get(key)) or default


def _wordpiece(vocab_path: Path, settings: dict, special: dict) -> RustTokenizer:
    """BERT's tokenizer as transformers' converter builds it from vocab.txt."""
    vocab: dict[str, int] = {}
    with vocab_path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab.setdefault(line.rstrip("\n"), index)
    unk, sep, cls = (_special(settings, special, k, d) for k, d in
                     (("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("cls_token", "[CLS]")))  # fmt: skip
    pad, mask = _special(settings, special, "pad_token", "[PAD]"), _special(settings, special, "mask_token", "[MASK]")
    for token in (unk, sep, cls):
        if token not in vocab:
            raise CheckpointError(f"{vocab_path} lacks the special token {token!r}")
    rust = RustTokenizer(WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    rust.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"),  # None: strip when lowercasing, as BERT does
        lowercase=settings.get("do_lower_case", True),
    )
    rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    rust.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    rust.decoder = decoders.WordPiece(prefix="##")
    rust.add_special_tokens([t for t in (pad, unk, cls, sep, mask) if t in vocab])
    return rust


def _byte_level_bpe(folder: Path, settings: dict, special: dict) -> RustTokenizer:
    """RoBERTa's tokenizer as transformers' converter builds it from vocab.json + merges.txt."""
    vocab = _read_json(folder / "vocab.json")
    merges = []
    with (folder / "merges.txt").open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line and not line.startswith("#version"):
                first, _, second = line.partition(" ")
                merges.append((first, second))
    add_prefix_space = bool(settings.get("add_prefix_space", False))
    bos, eos = _special(settings, special, "bos_token", "<s>"), _special(settings, special, "eos_token", "</s>")
    cls, sep = _special(settings, special, "cls_token", bos), _special(settings, special, "sep_token", eos)
    for token in (cls, sep):
        if token not in vocab:
            raise CheckpointError(f"{folder / 'vocab.json'} lacks the special token {token!r}")
    rust = RustTokenizer(BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    rust.decoder = decoders.ByteLevel()
    # sep and cls are positional: tokenizers 0.23 no longer accepts them as keywords.
    rust.post_processor = processors.RobertaProcessing(
        (sep, vocab[sep]), (cls, vocab[cls]), add_prefix_space=add_prefix_space, trim_offsets=True
    )
    tokens = [cls, sep, bos, eos, _special(settings, special, "unk_token", "<unk>"),
              _special(settings, special, "pad_token", "<pad>")]  # fmt: skip
    added = [AddedToken(t, special=True) for t in dict.fromkeys(tokens) if t in vocab]
    mask = _special(settings, special, "mask_token", "<mask>")
    if mask in vocab:
        # Whether "<mask>" swallows the space before it is the checkpoint's call (transformers 4.x wrote
        # lstrip into special_tokens_map.json); without a word on it, current transformers does not strip.
        spec = settings.get("mask_token") if isinstance(settings.get("mask_token"), dict) else special.get("mask_token")
        lstrip = bool(spec.get("lstrip", False)) if isinstance(spec, dict) else False
        added.append(AddedToken(mask, lstrip=lstrip, special=True))
    rust.add_special_tokens(added)
    return rust


def _added_token(value: Any, special: bool) -> AddedToken:
    """An AddedToken from a string or from transformers' dict form (content, lstrip, rstrip, ...)."""
    if isinstance(value, dict):
        flags = {key: bool(value[key]) for key in ("single_word", "lstrip", "rstrip", "normalized") if key in value}
        flags.setdefault("normalized", False)
        return AddedToken(value["content"], special=bool(value.get("special", special)), **flags)
    return AddedToken(value, special=special, normalized=False)


def _sentencepiece_unigram(model_path: Path, settings: dict, special: dict) -> RustTokenizer:
    """DeBERTa-v2/v3's tokenizer from spm.model (no tokenizer.json), as SentencePiece and transformers build it.

    The normaliser is the model file's own (its precompiled character map: NFKC and whitespace folding, which
    turns a no-break or ideographic space into a plain one), as SentencePiece applies it and transformers does
    from 5.25 on (5.0-5.24 folded whitespace and applied NFC instead, and so did we: "x\u00a0y" gave an unknown
    piece). A model file without a map gets that older chain.
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as spm_proto
    except ImportError as exc:
        raise CheckpointError(
            f"{model_path.parent} has no tokenizer.json, only {model_path.name}; reading it needs SentencePiece: "
            "pip install sentencepiece"
        ) from exc
    proto = spm_proto.ModelProto()
    try:
        proto.ParseFromString(model_path.read_bytes())
    except Exception as exc:
        raise CheckpointError(f"cannot read {model_path}: {exc} (not a SentencePiece model?)") from exc
    if proto.trainer_spec.model_type != spm_proto.TrainerSpec.UNIGRAM:
        kind = spm_proto.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)
        raise CheckpointError(f"{model_path} is a SentencePiece {kind} model; only Unigram models are supported")
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    unk = _special(settings, special, "unk_token", "[UNK]")
    unk_id = next((i for i, entry in enumerate(vocab) if entry == (unk, 0.0)), proto.trainer_spec.unk_id)
    rust = RustTokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    lowercase = [normalizers.Lowercase()] if settings.get("do_lower_case", False) else []
    charsmap = proto.normalizer_spec.precompiled_charsmap
    folding = [normalizers.Precompiled(charsmap), normalizers.Strip(left=False, right=True),
               normalizers.Replace(Regex(r" {2,}"), " ")] if charsmap else \
              [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
               normalizers.Strip(left=False, right=True)]  # fmt: skip
    rust.normalizer = normalizers.Sequence([*lowercase, *folding])
    prepend = "always" if settings.get("add_prefix_space", True) else "first"
    punctuation = [pre_tokenizers.Punctuation(behavior="isolated")] if settings.get("split_by_punct", False) else []
    rust.pre_tokenizer = pre_tokenizers.Sequence([*punctuation, pre_tokenizers.Metaspace("▁", prepend_scheme=prepend)])
    rust.decoder = decoders.Metaspace("▁", prepend_scheme=prepend)
    # Added tokens, matched in the raw text: SentencePiece's control pieces (special) and user-defined ones,
    # the checkpoint's added_tokens_decoder, then the named special tokens; those the model file lacks (v3's
    # [MASK]) get the next ids, as in transformers.
    control, user_defined = spm_proto.ModelProto.SentencePiece.CONTROL, spm_proto.ModelProto.SentencePiece.USER_DEFINED
    rust.add_special_tokens([_added_token(p.piece, special=True) for p in proto.pieces if p.type == control])
    rust.add_tokens([_added_token(p.piece, special=False) for p in proto.pieces if p.type == user_defined])
    decoder = settings.get("added_tokens_decoder") or {}
    for token_id, value in sorted(((int(k), v) for k, v in decoder.items()), key=lambda item: item[0]):
        token = _added_token(value, special=True)
        if token.special:
            rust.add_special_tokens([token])
        else:
            rust.add_tokens([token])
        if rust.token_to_id(token.content) != token_id:
            raise CheckpointError(
                f"tokenizer_config.json gives {token.content!r} id {token_id}, but {model_path} makes it "
                f"{rust.token_to_id(token.content)}"
            )
    defaults = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
                "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}  # fmt: skip
    named = [settings.get(key) or special.get(key) or default for key, default in defaults.items()]
    rust.add_special_tokens([_added_token(value, special=True) for value in named])
    cls, sep = _special(settings, special, "cls_token", "[CLS]"), _special(settings, special, "sep_token", "[SEP]")
    rust.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, rust.token_to_id(cls)), (sep, rust.token_to_id(sep))],
    )
    return rust
