"""Hugging Face samples for huggingfaceserver: tiny transformers with random weights.

    OUT/huggingface/bert-classifier/   BertForSequenceClassification, labels negative, positive
    OUT/huggingface/bert-ner/          BertForTokenClassification, labels O, B-PER, I-PER, B-LOC,
                                       I-LOC
    OUT/huggingface/bert-fill-mask/    BertForMaskedLM ([MASK])
    OUT/huggingface/bert-embedding/    BertModel as a sentence-transformers model (modules.json,
                                       mean pooling, normalised)
    OUT/huggingface/gpt2-chat/         GPT2LMHeadModel with a chat template (byte-level BPE,
                                       <|endoftext|> ends a text)
    OUT/huggingface/t5-text2text/      T5ForConditionalGeneration

Each is a directory as ``save_pretrained`` writes it (``config.json``,
``model.safetensors``, the tokenizer's files), made here from a config (two
layers, 32-wide: they load in well under a second) with weights drawn from a
fixed seed, and a tokenizer trained in code with ``tokenizers`` on text
Python ships (the Zen of Python and a few standard modules' documentation):
WordPiece for the BERTs, byte-level BPE for GPT-2 and T5. Nothing is
downloaded. The weights are random, so the answers mean nothing; what is
served, and how, is real.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import io
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.utils import logging as transformers_logging

from samples import chosen

#: What this generator imports, pinned (test dependencies, not the runtime's).
NEEDS = ("torch==2.13.0", "transformers==5.23.0", "tokenizers==0.23.3")

NAMES = (
    "bert-classifier",
    "bert-ner",
    "bert-fill-mask",
    "bert-embedding",
    "gpt2-chat",
    "t5-text2text",
)
SEED = 0
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
END = "<|endoftext|>"
#: A chat as role-tagged turns, each ended by the end-of-text token.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    + END
    + "\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def corpus() -> list[str]:
    """Lines of English that ship with Python: the Zen, and some modules' documentation."""
    import argparse
    import csv
    import json as json_module
    import textwrap

    with contextlib.redirect_stdout(io.StringIO()):  # importing ``this`` prints the Zen
        zen = importlib.import_module("this")
    texts = [codecs.decode(zen.s, "rot13")]
    texts += [m.__doc__ or "" for m in (json_module, csv, argparse, textwrap)]
    return [line.strip() for text in texts for line in text.splitlines() if line.strip()]


def wordpiece() -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece tokenizer with BERT's special tokens."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        corpus(),
        trainers.WordPieceTrainer(vocab_size=400, special_tokens=special, show_progress=False),
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=BERT["max_position_embeddings"],
    )


def byte_bpe(special: list[str], end: str | None = None, size: int = 512) -> Tokenizer:
    """A byte-level BPE (GPT-2's kind) trained on the corpus; ``end`` appended to every text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    if end is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {end}", special_tokens=[(end, tokenizer.token_to_id(end))]
        )
    return tokenizer


def _save(directory: Path, model: Any, tokenizer: PreTrainedTokenizerFast) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # safetensors writes 0600; an image's user 1000 must read a mount
    return directory


def _bert(model_class: Any, tokenizer: PreTrainedTokenizerFast, **extra: Any) -> Any:
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **BERT, **extra
    )
    return model_class(config).eval()


def _labels(names: tuple[str, ...]) -> dict[str, Any]:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def write_classifier(directory: Path) -> Path:
    tokenizer = wordpiece()
    model = _bert(BertForSequenceClassification, tokenizer, **_labels(("negative", "positive")))
    return _save(directory, model, tokenizer)


def write_ner(directory: Path) -> Path:
    tokenizer = wordpiece()
    return _save(
        directory, _bert(BertForTokenClassification, tokenizer, **_labels(NER_LABELS)), tokenizer
    )


def write_fill_mask(directory: Path) -> Path:
    tokenizer = wordpiece()
    return _save(directory, _bert(BertForMaskedLM, tokenizer), tokenizer)


def write_embedding(directory: Path) -> Path:
    """A BertModel laid out as sentence-transformers saves one: mean pooling, then Normalize."""
    tokenizer = wordpiece()
    _save(directory, _bert(BertModel, tokenizer), tokenizer)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (directory / "modules.json").write_text(json.dumps(modules, indent=2))
    pooling = directory / "1_Pooling"
    pooling.mkdir(exist_ok=True)
    (pooling / "config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": BERT["hidden_size"], "pooling_mode_mean_tokens": True}
        )
    )
    (directory / "2_Normalize").mkdir(exist_ok=True)
    return directory


def write_gpt2(directory: Path) -> Path:
    bpe = byte_bpe([END])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=END, eos_token=END, unk_token=END, model_max_length=512
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    end = bpe.token_to_id(END)
    torch.manual_seed(SEED)
    config = GPT2Config(
        vocab_size=bpe.get_vocab_size(),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=end,
        eos_token_id=end,
    )
    return _save(directory, GPT2LMHeadModel(config).eval(), tokenizer)


def write_t5(directory: Path) -> Path:
    bpe = byte_bpe(["<pad>", "</s>", "<unk>"], end="</s>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=256,
    )
    torch.manual_seed(SEED)
    config = T5Config(
        vocab_size=bpe.get_vocab_size(),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save(directory, T5ForConditionalGeneration(config).eval(), tokenizer)


WRITERS: dict[str, Callable[[Path], Path]] = {
    "bert-classifier": write_classifier,
    "bert-ner": write_ner,
    "bert-fill-mask": write_fill_mask,
    "bert-embedding": write_embedding,
    "gpt2-chat": write_gpt2,
    "t5-text2text": write_t5,
}


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the Hugging Face samples (or ``only`` those) under ``out/huggingface``."""
    transformers_logging.disable_progress_bar()
    return {name: WRITERS[name](out / "huggingface" / name) for name in chosen(NAMES, only)}
