"""huggingfaceserver on a tiny BERT sequence classifier (labels negative, positive).

Text models take one BYTES input, ``text``, one text per row; a row of two
texts is the wrong width. The other tasks are the other ``huggingface_*``
cases; generation, OpenAI's API and the flags are in test_huggingface.py.
"""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="huggingfaceserver",
    framework="huggingface",
    sample="bert-classifier",
    suffix="config.json",
    input_name="text",
    datatype="BYTES",
    rows=[["Beautiful is better than ugly."], ["Errors should never pass silently."]],
    bad_row=["Flat is better", "than nested."],
    flags=["--device=cpu", "--nthread=1"],
    width_error="one text per row",
    fixed_name=True,
    variant="classifier",
)
