"""huggingfaceserver on a tiny BERT sequence classifier (labels negative, positive).

Text models take one BYTES input, ``text``, one text per row; a row of two
texts is the wrong width. The other tasks are the other ``huggingface_*``
cases; generation, OpenAI's API and the flags are in test_huggingface.py.
"""

from runtime_case import huggingface

CASE = huggingface(
    "bert-classifier",
    "classifier",
    rows=[["Beautiful is better than ugly."], ["Errors should never pass silently."]],
    bad_row=["Flat is better", "than nested."],
)
