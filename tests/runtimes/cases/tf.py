"""tfserver on the Keras iris MLP exported with model.export (one FP32 input, "features")."""

from runtime_case import RuntimeCase

CASE = RuntimeCase(
    module="tfserver",
    framework="tensorflow",
    sample="iris-keras",
    # The SavedModel's own file: fingerprint.pb beside it is no candidate.
    suffix="saved_model.pb",
    input_name="features",
    datatype="FP32",
    rows=[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
    bad_row=[5.1, 3.5, 1.4],
    flags=["--device=cpu", "--nthread=1"],
    width_error="expects shape",
    # A SavedModel is always saved_model.pb: no directory holds two candidates.
    fixed_name=True,
)
