"""huggingfaceserver on a tiny BERT token classifier: entities with character offsets, as JSON."""

from runtime_case import huggingface

CASE = huggingface(
    "bert-ner",
    "ner",
    rows=[["Tim Peters wrote the Zen in Python."], ["Readability counts."]],
    bad_row=["Tim Peters", "wrote it"],
)
