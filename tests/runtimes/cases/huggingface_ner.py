"""huggingfaceserver on a tiny BERT token classifier: entities with character offsets, as JSON."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="huggingfaceserver",
    framework="huggingface",
    sample="bert-ner",
    suffix="config.json",
    input_name="text",
    datatype="BYTES",
    rows=[["Tim Peters wrote the Zen in Python."], ["Readability counts."]],
    bad_row=["Tim Peters", "wrote it"],
    flags=["--device=cpu", "--nthread=1"],
    width_error="one text per row",
    fixed_name=True,
    variant="ner",
)
