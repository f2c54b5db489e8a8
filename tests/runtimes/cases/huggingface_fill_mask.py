"""huggingfaceserver on a tiny BERT masked LM: each [MASK] filled, with the likeliest tokens."""

from runtime_case import huggingface

CASE = huggingface(
    "bert-fill-mask",
    "fill-mask",
    rows=[["Simple is [MASK] than complex."], ["[MASK] counts."]],
    bad_row=["Simple is [MASK]", "than complex."],
)
