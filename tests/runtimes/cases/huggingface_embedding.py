"""huggingfaceserver on a tiny BERT saved as a sentence-transformers model (mean, normalised)."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="huggingfaceserver",
    framework="huggingface",
    sample="bert-embedding",
    suffix="config.json",
    input_name="text",
    datatype="BYTES",
    rows=[["Now is better than never."], ["Namespaces are one honking great idea."]],
    bad_row=["Now is better", "than never."],
    flags=["--device=cpu", "--nthread=1"],
    width_error="one text per row",
    fixed_name=True,
    variant="embedding",
)
