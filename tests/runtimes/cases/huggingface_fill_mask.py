"""huggingfaceserver on a tiny BERT masked LM: each [MASK] filled, with the likeliest tokens."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="huggingfaceserver",
    framework="huggingface",
    sample="bert-fill-mask",
    suffix="config.json",
    input_name="text",
    datatype="BYTES",
    rows=[["Simple is [MASK] than complex."], ["[MASK] counts."]],
    bad_row=["Simple is [MASK]", "than complex."],
    flags=["--device=cpu", "--nthread=1"],
    width_error="one text per row",
    fixed_name=True,
    variant="fill-mask",
)
