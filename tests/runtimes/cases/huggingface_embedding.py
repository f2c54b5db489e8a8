"""huggingfaceserver on a tiny BERT saved as a sentence-transformers model (mean, normalised)."""

from runtime_case import huggingface

CASE = huggingface(
    "bert-embedding",
    "embedding",
    rows=[["Now is better than never."], ["Namespaces are one honking great idea."]],
    bad_row=["Now is better", "than never."],
)
