"""TensorFlow SavedModels for tfserver, each exported the way people export them.

    OUT/tensorflow/iris-keras/         a Keras MLP trained on iris, exported with model.export:
                                       signatures serving_default and serve, input "features"
                                       FP32 [-1, 4], output "output_0" FP32 [-1, 3] (softmax)
    OUT/tensorflow/module/             a tf.Module saved with tf.saved_model.save and three
                                       signatures: serving_default (x FP32 [-1, 3] -> y, total),
                                       text (a tf.string input: upper, length, text_bytes) and
                                       typed (INT64, BOOL, FP16, INT8 and UINT8 tensors)
    OUT/tensorflow/versioned/{1,2}/    TF Serving's versioned layout: y = x * version, two versions
    OUT/tensorflow/half-plus-three/    a TF1-style SavedModel (tf.compat.v1 builder), TF Serving's
                                       own toy: y = 0.5 x + 3 as predict (serving_default), and
                                       classify and regress signatures over serialized tf.Examples

Fixed seeds, CPU only, seconds in all; TensorFlow is a test dependency here
(tfserver's own pin), the generators need nothing else but scikit-learn's iris.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

#: What this generator imports, pinned.
NEEDS = ("tensorflow-cpu==2.21.0", "scikit-learn==1.9.1")

#: The classes of the half-plus-three classify signature.
CLASSES = (b"below", b"above")


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def write_iris_keras(path: Path) -> None:
    """Train a small MLP on iris (normalising inside the model) and export it."""
    import keras
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = X.astype("float32")
    keras.utils.set_random_seed(0)
    features = keras.Input(shape=(4,), name="features")
    norm = keras.layers.Normalization()
    norm.adapt(X)
    hidden = keras.layers.Dense(16, activation="relu")(norm(features))
    probabilities = keras.layers.Dense(3, activation="softmax")(hidden)
    model = keras.Model(features, probabilities)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(X, y, epochs=40, batch_size=32, verbose=0)
    model.export(str(path), verbose=False)


def write_module(path: Path) -> None:
    """A tf.Module with three signatures, one of them on strings, one on every other type."""
    tf = _tf()

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def affine(self, x: Any) -> dict[str, Any]:
            y = tf.matmul(x, self.weights)
            return {"y": y, "total": tf.reduce_sum(y, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def text(self, text: Any) -> dict[str, Any]:
            return {
                "upper": tf.strings.upper(text),
                "length": tf.strings.length(text, unit="UTF8_CHAR"),
                "text_bytes": text,
            }

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int64, name="count"),
                tf.TensorSpec([None], tf.bool, name="flag"),
                tf.TensorSpec([None, 2], tf.float16, name="half"),
                tf.TensorSpec([None], tf.int8, name="small"),
            ]
        )
        def typed(self, count: Any, flag: Any, half: Any, small: Any) -> dict[str, Any]:
            return {
                "count_plus_one": count + 1,
                "not_flag": tf.logical_not(flag),
                "half_doubled": half * 2,
                "small_as_uint8": tf.cast(small, tf.uint8),
                "count_as_double": tf.cast(count, tf.float64),
            }

    module = Module()
    signatures = {"serving_default": module.affine, "text": module.text, "typed": module.typed}
    tf.saved_model.save(module, str(path), signatures=signatures)


def write_versioned(path: Path) -> None:
    """Versions 1 and 2 of y = x * version, in TF Serving's layout."""
    tf = _tf()

    class Scale(tf.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = tf.Variable(factor)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def scale(self, x: Any) -> dict[str, Any]:
            return {"y": x * self.factor}

    for version in (1, 2):
        module = Scale(float(version))
        tf.saved_model.save(module, str(path / str(version)), signatures=module.scale)


def write_half_plus_three(path: Path) -> None:
    """y = 0.5 x + 3 with predict, classify and regress signatures (tf.compat.v1's builder).

    classify and regress read serialized tf.Examples with a float feature
    ``x`` and an optional ``offset`` (default 0) added to y; classify scores
    the classes below and above 4.
    """
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(3.0, name="b")
        x = v1.placeholder(tf.float32, [None], name="x")
        y = tf.add(a * x, b, name="y")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        features = tf.io.parse_example(
            serialized,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "offset": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        regressed = a * features["x"] + b + features["offset"]
        above = tf.sigmoid(regressed - 4.0)
        scores = tf.concat([1.0 - above, above], axis=1)
        classes = tf.tile(tf.constant([list(CLASSES)]), [tf.shape(serialized)[0], 1])
        sig = v1.saved_model.signature_def_utils
        signatures = {
            "serving_default": sig.predict_signature_def({"x": x}, {"y": y}),
            "classify": sig.classification_signature_def(serialized, classes, scores),
            "regress": sig.regression_signature_def(serialized, regressed),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()


NAMES = ("iris-keras", "module", "versioned", "half-plus-three")


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the TensorFlow samples (or ``only`` those) under ``out/tensorflow/``.

    Returns name -> model directory.
    """
    from samples import chosen

    writers = {
        "iris-keras": write_iris_keras,
        "module": write_module,
        "versioned": write_versioned,
        "half-plus-three": write_half_plus_three,
    }
    _tf()
    dirs = {}
    for name in chosen(NAMES, only):
        writer = writers[name]
        directory = dirs[name] = out / "tensorflow" / name
        # The exporters refuse (or merge into) an existing directory: start afresh.
        shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        writer(directory)
    return dirs
