"""huggingfaceserver: every task against transformers' own answer, and OpenAI's API.

The samples are tiny transformers with random weights (examples/samples/
huggingface.py), so no test reads meaning into what they say: predictive
answers are compared with the same model run by transformers in this
process, greedy generations with transformers' own greedy ``generate``, and
sampled ones are checked for structure, token counts, reproducibility under
a seed and stop sequences. OpenAI's API is driven with the official
``openai`` client, unmodified, streaming included; gRPC streaming with
tritonclient. The shared protocol and startup checks of the predictive tasks
are in test_conformance.py (the ``huggingface_*`` cases).
"""

from __future__ import annotations

import base64
import functools
import json
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import torch
import tritonclient.grpc as grpcclient
from protocol_clients import infer, v1_predict, v2_post
from serverproc import ServerProcess, metric, poll_until, run_to_exit, serving
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

pytestmark = pytest.mark.e2e
torch.set_num_threads(1)

MODULE = "huggingfaceserver"
FLAGS = ["--device=cpu", "--nthread=1"]
TEXTS = ["Beautiful is better than ugly.", "Errors should never pass silently, unless", "flat"]
PROMPT = "Beautiful is better than"
UNKNOWN = "ignoring unknown arguments"


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("huggingface")


def _serve(directory: Path, name: str, *flags: str) -> Iterator[ServerProcess]:
    yield from serving(MODULE, f"--model_name={name}", f"--model_dir={directory}", *FLAGS, *flags)


@pytest.fixture(scope="module")
def classifier(samples) -> Iterator[ServerProcess]:
    """The classifier started with KServe's huggingfaceserver flags, and batching."""
    yield from serving(
        MODULE,
        "--model_name=cls",
        f"--model_id={samples['bert-classifier']}",
        "--task=sequence_classification",
        "--max_length=64",
        "--return_probabilities",
        "--return_token_type_ids",
        "--tensor_input_names=input_ids,attention_mask,token_type_ids",
        "--disable_log_requests",
        "--max_log_len=100",
        "--backend=huggingface",
        "--dtype=float32",
        "--trust_remote_code=false",
        "--max_batch_size=32",
        "--max_batch_delay_ms=100",
        *FLAGS,
    )


@pytest.fixture(scope="module")
def gpt(samples) -> Iterator[ServerProcess]:
    yield from _serve(samples["gpt2-chat"], "gpt", "--max_concurrent_requests=8")


def client(server: ServerProcess, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.http_url + prefix, api_key="unused", max_retries=0, timeout=120
    )


@functools.cache
def reference(directory: Path, auto: Any) -> tuple[Any, Any]:
    """The sample's tokenizer and model, loaded by transformers in this process."""
    return AutoTokenizer.from_pretrained(directory), auto.from_pretrained(directory).eval()


def texts_tensor(texts: list[str]) -> dict[str, np.ndarray]:
    return {"text": np.array(texts, dtype=object)}


def text(value: Any) -> str:
    """A BYTES element as text (tritonclient gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


# -- predictive tasks ---------------------------------------------------------------------


def test_kserve_flags_are_accepted(classifier: ServerProcess) -> None:
    assert UNKNOWN not in classifier.output()
    meta = httpx.get(f"{classifier.http_url}/v2/models/cls").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["parameters"]["default_outputs"] == ["label", "probabilities"]
    assert meta["parameters"]["max_model_len"] == 64


@pytest.mark.parametrize("protocol", ["json", "binary", "grpc"])
def test_classifier_answers_as_transformers(
    classifier: ServerProcess, samples, protocol: str
) -> None:
    tokenizer, model = reference(samples["bert-classifier"], AutoModelForSequenceClassification)
    with torch.inference_mode():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    want = logits.softmax(-1).numpy()
    got = infer(classifier, "cls", texts_tensor(TEXTS), protocol, ["label", "probabilities"])
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)
    labels = [model.config.id2label[i] for i in want.argmax(-1)]
    assert [text(v) for v in got["label"]] == labels
    v1 = v1_predict(classifier, "cls", {"instances": TEXTS}).json()["predictions"]
    assert [row["label"] for row in v1] == labels
    np.testing.assert_allclose([row["probabilities"] for row in v1], want, atol=1e-5)


def test_concurrent_texts_are_batched_with_padding(classifier: ServerProcess) -> None:
    """Texts of different lengths from concurrent requests share a padded forward pass."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [" ".join(TEXTS[: 1 + i % 3]) * (1 + i % 4) for i in range(12)]
    alone = [infer(classifier, "cls", texts_tensor([t]), "json")["probabilities"] for t in texts]
    batches = metric(classifier, "modelserver_batch_requests_count", "cls")
    with ThreadPoolExecutor(12) as pool:
        together = list(
            pool.map(lambda t: infer(classifier, "cls", texts_tensor([t]), "json"), texts)
        )
    for one, joint in zip(alone, together, strict=True):
        np.testing.assert_allclose(joint["probabilities"], one, atol=1e-5)
    merged = metric(classifier, "modelserver_batch_requests_count", "cls") - batches
    assert merged < len(texts), "some requests shared a batch"


def test_text_must_be_one_text_per_row(classifier: ServerProcess) -> None:
    body = {"inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}
    reply = v2_post(classifier, "cls", body)
    assert reply.status_code == 400 and "one text per row" in reply.json()["error"]
    reply = httpx.post(
        f"{classifier.http_url}/v1/completions", json={"model": "cls", "prompt": "x"}
    )
    assert reply.status_code == 400
    assert "does not generate text" in reply.json()["error"]["message"]


def test_token_classification_gives_entities_with_offsets(samples) -> None:
    directory = samples["bert-ner"]
    tokenizer, model = reference(directory, AutoModelForTokenClassification)
    sentence = "Tim Peters wrote the Zen of Python in Amsterdam."
    encoded = tokenizer(sentence, return_offsets_mapping=True, return_special_tokens_mask=True)
    with torch.inference_mode():
        scores = model(input_ids=torch.tensor([encoded["input_ids"]])).logits[0].softmax(-1)
    want = []
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        label = model.config.id2label[int(scores[index].argmax())]
        if not encoded["special_tokens_mask"][index] and label != "O":
            want.append((label, index, sentence[start:end], start, end))
    assert want, "the random classifier labels some tokens"
    for server in _serve(directory, "ner"):
        (row,) = infer(server, "ner", texts_tensor([sentence]), "grpc")["entities"]
        got = json.loads(text(row))
    assert [(e["entity"], e["index"], e["word"], e["start"], e["end"]) for e in got] == want
    assert all(0.0 < e["score"] <= 1.0 for e in got)


def test_fill_mask_fills_each_mask_with_the_likeliest_token(samples) -> None:
    directory = samples["bert-fill-mask"]
    tokenizer, model = reference(directory, AutoModelForMaskedLM)
    masked = "Simple is [MASK] than complex, [MASK] is better."
    ids = tokenizer(masked, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        probabilities = model(input_ids=ids).logits[0].softmax(-1)
    masks = (ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    filled = ids[0].clone()
    for position in masks:
        filled[position] = probabilities[position].argmax()
    for server in _serve(directory, "fill"):
        got = infer(server, "fill", texts_tensor([masked, "[MASK] counts."]), "json")
        missing = v2_post(
            server,
            "fill",
            {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["no mask"]}]},
        )
    assert text(got["sequence"][0]) == tokenizer.decode(filled, skip_special_tokens=True)
    predictions = json.loads(text(got["predictions"][0]))
    assert len(predictions) == len(masks) == 2
    for position, top in zip(masks, predictions, strict=True):
        assert len(top) == 5
        assert top[0]["token"] == int(probabilities[position].argmax())
        assert top[0]["score"] == pytest.approx(float(probabilities[position].max()), abs=1e-5)
    assert missing.status_code == 400 and "[MASK]" in missing.json()["error"]


def test_embeddings_are_pooled_normalised_and_served_as_openai_embeddings(samples) -> None:
    directory = samples["bert-embedding"]
    tokenizer, model = reference(directory, AutoModel)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    want = (mean / mean.norm(dim=-1, keepdim=True)).numpy()
    for server in _serve(directory, "emb"):
        got = infer(server, "emb", texts_tensor(TEXTS), "binary", ["embedding", "token_count"])
        sdk = client(server)
        as_base64 = sdk.embeddings.create(model="emb", input=TEXTS)
        as_floats = sdk.embeddings.create(model="emb", input=TEXTS[0], encoding_format="float")
        raw = httpx.post(
            f"{server.http_url}/openai/v1/embeddings",
            json={"model": "emb", "input": TEXTS[:1], "encoding_format": "base64"},
        ).json()
        meta = httpx.get(f"{server.http_url}/v2/models/emb").json()
    np.testing.assert_allclose(got["embedding"], want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got["embedding"], axis=1), 1.0, atol=1e-5)
    assert got["token_count"].tolist() == batch["attention_mask"].sum(1).tolist()
    assert meta["parameters"]["pooling"] == "mean" and meta["parameters"]["normalize"] is True
    assert [d.index for d in as_base64.data] == [0, 1, 2]
    np.testing.assert_allclose([d.embedding for d in as_base64.data], want, atol=1e-5)
    np.testing.assert_allclose(as_floats.data[0].embedding, want[0], atol=1e-5)
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, want[0], atol=1e-5)
    assert as_base64.usage.prompt_tokens == int(got["token_count"].sum())


def test_text2text_generation_is_transformers_greedy(samples) -> None:
    directory = samples["t5-text2text"]
    tokenizer, model = reference(directory, AutoModelForSeq2SeqLM)
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    want = tokenizer.decode(out[0], skip_special_tokens=True)
    params = {"max_tokens": 8, "min_tokens": 8, "temperature": 0}
    body = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [PROMPT]}],
        "parameters": params,
    }
    for server in _serve(directory, "t5"):
        rest = v2_post(server, "t5", body).json()
        completion = client(server).completions.create(
            model="t5", prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"min_tokens": 8}
        )
    assert rest["outputs"][0]["data"] == [want]
    assert completion.choices[0].text == want
    assert completion.usage.completion_tokens == 8


# -- generation: OpenAI's API -------------------------------------------------------------


def _greedy(samples, prompt: str, tokens: int) -> str:
    tokenizer, model = reference(samples["gpt2-chat"], AutoModelForCausalLM)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def _complete(server: ServerProcess, tokens: int, **options: Any) -> Any:
    extra = {"min_tokens": tokens, **options.pop("extra_body", {})}
    return client(server).completions.create(
        model="gpt", prompt=PROMPT, max_tokens=tokens, extra_body=extra, **options
    )


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1"])
def test_models_are_listed_for_openai_and_kserve(gpt: ServerProcess, prefix: str) -> None:
    sdk = client(gpt, prefix)
    assert [m.id for m in sdk.models.list()] == ["gpt"]
    assert sdk.models.retrieve("gpt").owned_by == "huggingfaceserver"
    if prefix == "/v1":  # KServe's v1 model list and status share the paths
        assert httpx.get(f"{gpt.http_url}/v1/models").json()["models"] == ["gpt"]
        assert httpx.get(f"{gpt.http_url}/v1/models/gpt").json()["ready"] is True


def test_greedy_completion_is_transformers_greedy(gpt: ServerProcess, samples) -> None:
    tokenizer, _ = reference(samples["gpt2-chat"], AutoModelForCausalLM)
    completion = _complete(gpt, 12, temperature=0)
    (choice,) = completion.choices
    assert choice.text == _greedy(samples, PROMPT, 12)
    assert choice.finish_reason == "length"
    assert completion.usage.prompt_tokens == len(tokenizer(PROMPT)["input_ids"])
    assert completion.usage.completion_tokens == 12
    assert completion.object == "text_completion" and completion.model == "gpt"


def test_a_seed_makes_sampling_reproducible(gpt: ServerProcess) -> None:
    first, again = (_complete(gpt, 10, seed=7, temperature=1.0, top_p=0.9) for _ in range(2))
    assert first.choices[0].text == again.choices[0].text
    others = {_complete(gpt, 10, seed=seed).choices[0].text for seed in (1, 2, 3)}
    assert len(others) > 1, "different seeds draw differently"


def test_n_sequences_with_logprobs(gpt: ServerProcess) -> None:
    completion = _complete(gpt, 6, n=3, logprobs=2, seed=5)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert completion.usage.completion_tokens == 18
    for choice in completion.choices:
        logprobs = choice.logprobs
        assert len(logprobs.tokens) == len(logprobs.token_logprobs) == 6
        assert "".join(logprobs.tokens) == choice.text
        assert all(lp <= 0 for lp in logprobs.token_logprobs)
        assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs)
        assert logprobs.text_offset == sorted(logprobs.text_offset)
    again = _complete(gpt, 6, n=3, logprobs=2, seed=5)
    assert [c.text for c in again.choices] == [c.text for c in completion.choices]


def test_stop_sequences_cut_the_text(gpt: ServerProcess) -> None:
    whole = _complete(gpt, 30, seed=11).choices[0].text
    stop = whole[6:9]
    cut = whole[: whole.find(stop)]
    stopped = _complete(gpt, 30, seed=11, stop=[stop, "never written \x00"])
    assert stopped.choices[0].text == cut
    assert stopped.choices[0].finish_reason == "stop"
    with client(gpt).completions.create(
        model="gpt",
        prompt=PROMPT,
        max_tokens=30,
        seed=11,
        stop=stop,
        stream=True,
        extra_body={"min_tokens": 30},
    ) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_stream_is_the_completion_in_pieces(gpt: ServerProcess) -> None:
    whole = _complete(gpt, 20, seed=3)
    with client(gpt).completions.create(
        model="gpt",
        prompt=PROMPT,
        max_tokens=20,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"min_tokens": 20},
    ) as stream:
        chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 1
    assert "".join(texts) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 20 and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    # On the wire: Server-Sent Events, ended by [DONE].
    body = {"model": "gpt", "prompt": PROMPT, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{gpt.http_url}/openai/v1/completions", json=body) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        events = [line for line in reply.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_chat_uses_the_chat_template(gpt: ServerProcess, samples) -> None:
    tokenizer, _ = reference(samples["gpt2-chat"], AutoModelForCausalLM)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
    ]
    # A message's text parts are its text.
    flat = [messages[0], {"role": "user", "content": "Hello"}]
    prompt = tokenizer.apply_chat_template(flat, add_generation_prompt=True, tokenize=False)
    sdk = client(gpt)
    chat = sdk.chat.completions.create(
        model="gpt",
        messages=messages,
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        extra_body={"min_tokens": 8},
    )
    (choice,) = chat.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == _greedy(samples, prompt, 8)
    assert chat.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False).input_ids)
    assert len(choice.logprobs.content) == 8
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    with sdk.chat.completions.create(
        model="gpt",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"min_tokens": 8},
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        choice.message.content
    )
    assert chunks[-1].usage.completion_tokens == 8


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "nope", "prompt": "x"}, 404, "nope"),
        ({"model": "gpt", "prompt": "x", "temperature": 3}, 400, "temperature"),
        ({"model": "gpt", "prompt": "x", "max_token": 3}, 400, "max_token"),
        ({"model": "gpt", "prompt": "x", "max_tokens": 5000}, 400, "maximum context length"),
        ({"model": "gpt", "prompt": "x", "echo": True}, 400, "echo"),
        ({"model": "gpt", "prompt": [70000]}, 400, "vocabulary"),
        ({"model": "gpt", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ],
)
def test_completion_errors_have_openais_shape(
    gpt: ServerProcess, body: dict[str, Any], status: int, fragment: str
) -> None:
    reply = httpx.post(f"{gpt.http_url}/v1/completions", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in gpt.output()


def test_the_client_raises_openais_errors(gpt: ServerProcess) -> None:
    sdk = client(gpt)
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError, match="tools"):
        sdk.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.BadRequestError, match="does not embed"):
        sdk.embeddings.create(model="gpt", input="x")


def _generations(server: ServerProcess) -> float:
    return metric(server, "modelserver_generations", "gpt")


def test_a_client_that_leaves_stops_its_generation(gpt: ServerProcess) -> None:
    body = {"model": "gpt", "prompt": PROMPT, "max_tokens": 480, "min_tokens": 480, "stream": True}
    body["seed"] = 17
    with httpx.stream("POST", f"{gpt.http_url}/v1/completions", json=body, timeout=60) as reply:
        lines = reply.iter_lines()
        events = [next(lines) for _ in range(6)]
    assert any(e.startswith("data: {") for e in events)
    poll_until(lambda: _generations(gpt), lambda v: v == 0, "the generation to stop")
    stopped = [line for line in gpt.output().splitlines() if "nobody reads it" in line]
    assert stopped, gpt.output()[-2000:]
    written = int(stopped[-1].split("stopped after ")[1].split()[0])
    assert written < 480


def test_generations_progress_together_and_probes_answer(gpt: ServerProcess) -> None:
    """Four streams each have text before any ends; a short request and probes pass a long one."""
    sdk = client(gpt)
    streams = [
        sdk.completions.create(
            model="gpt",
            prompt=PROMPT,
            max_tokens=300,
            seed=i,
            stream=True,
            extra_body={"min_tokens": 300},
        )
        for i in range(4)
    ]
    try:
        firsts = [next(iter(stream)) for stream in streams]
        assert all(f.choices[0].finish_reason is None for f in firsts)
        assert _generations(gpt) == 4, "each stream's first text came while all four ran"
        short = _complete(gpt, 3)
        assert short.usage.completion_tokens == 3
        assert httpx.get(f"{gpt.http_url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{gpt.http_url}/metrics").status_code == 200
        assert _generations(gpt) == 4, "the long ones were still writing"
        for stream in streams:
            assert [c.choices[0].finish_reason for c in stream][-1] == "length"
    finally:
        for stream in streams:
            stream.close()


def test_max_concurrent_requests_bounds_generations(samples) -> None:
    for server in _serve(samples["gpt2-chat"], "gpt", "--max_concurrent_requests=1"):
        sdk = client(server)
        with sdk.completions.create(
            model="gpt",
            prompt=PROMPT,
            max_tokens=400,
            stream=True,
            extra_body={"min_tokens": 400},
        ) as stream:
            next(iter(stream))
            with pytest.raises(openai.InternalServerError) as busy:
                sdk.completions.create(model="gpt", prompt=PROMPT, max_tokens=2)
        assert busy.value.status_code == 503
        assert busy.value.body["type"] == "server_error"
        assert _complete(server, 2).usage.completion_tokens == 2


# -- generation: v2 and the gRPC stream ----------------------------------------------------


def test_v2_generation_takes_sampling_parameters(gpt: ServerProcess, samples) -> None:
    want = _greedy(samples, PROMPT, 9)
    body = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [PROMPT]}],
        "parameters": {"max_tokens": 9, "min_tokens": 9, "temperature": 0},
    }
    assert v2_post(gpt, "gpt", body).json()["outputs"][0]["data"] == [want]
    body["parameters"]["temperature"] = -1
    assert "temperature" in v2_post(gpt, "gpt", body).json()["error"]


def test_grpc_stream_answers_chunk_by_chunk(gpt: ServerProcess, samples) -> None:
    """As Triton's decoupled models: several responses per request, the last one final."""
    answers: queue.Queue[Any] = queue.Queue()
    sdk = grpcclient.InferenceServerClient(gpt.grpc_address)
    sdk.start_stream(callback=lambda result, error: answers.put((result, error)))
    prompt = grpcclient.InferInput("text", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([PROMPT.encode()], dtype=object))
    params = {"max_tokens": 10, "min_tokens": 10, "temperature": 0}
    try:
        sdk.async_stream_infer("gpt", [prompt], request_id="g1", parameters=params)
        responses = []
        while not responses or not responses[-1].parameters["triton_final_response"].bool_param:
            result, error = answers.get(timeout=60)
            assert error is None, error
            responses.append(result.get_response())
    finally:
        sdk.stop_stream()
    assert len(responses) > 1
    assert all(r.id == "g1" for r in responses)
    text = "".join(
        grpcclient.InferResult(r).as_numpy("generated_text")[0].decode() for r in responses
    )
    assert text == _greedy(samples, PROMPT, 10)
    last = responses[-1].parameters
    assert last["finish_reason"].string_param == "length"
    assert sum(r.parameters["tokens"].int64_param for r in responses) == 10


# -- starting ------------------------------------------------------------------------------


def _start_fails(*args: str, env: dict[str, str] | None = None) -> str:
    done = run_to_exit(MODULE, ["--model_name=m", *FLAGS, *args], env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    return output


def test_a_hub_id_without_a_local_copy_is_a_startup_error(tmp_path: Path) -> None:
    output = _start_fails("--model_id=someone/some-model", env={"HF_HOME": str(tmp_path)})
    assert "no local copy" in output and "never downloads" in output


def test_a_hub_id_in_the_local_cache_is_served_offline(samples, tmp_path: Path) -> None:
    """The Hugging Face cache's layout (refs, snapshots), as a hub client leaves it."""
    repo = tmp_path / "hub" / "models--someone--classifier"
    commit = "0" * 40
    shutil.copytree(samples["bert-classifier"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    with ServerProcess(
        MODULE, ["--model_name=c", "--model_id=someone/classifier", *FLAGS], env
    ) as server:
        # Ready means loaded from the cache, whatever HF_HUB_OFFLINE said; and it answers.
        text = {"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["a fine day"]}
        reply = v2_post(server, "c", {"inputs": [text]})
        assert reply.status_code == 200, reply.text
        (label,) = [o for o in reply.json()["outputs"] if o["name"] == "label"]
        assert label["shape"] == [1] and isinstance(label["data"][0], str)


def test_an_engine_that_is_not_here_is_refused(samples) -> None:
    output = _start_fails(f"--model_dir={samples['bert-classifier']}", "--backend=vllm")
    assert "--backend vllm is not available" in output


def test_a_model_of_no_known_task_asks_for_task(samples, tmp_path: Path) -> None:
    target = tmp_path / "odd"
    shutil.copytree(samples["bert-classifier"], target)
    config = json.loads((target / "config.json").read_text())
    config["architectures"] = ["BertSomethingElse"]
    (target / "config.json").write_text(json.dumps(config))
    assert "pass --task" in _start_fails(f"--model_dir={target}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: CUDA would be used")
def test_cuda_without_a_gpu_is_a_startup_error(samples) -> None:
    output = _start_fails(f"--model_dir={samples['bert-classifier']}", "--device=cuda")
    assert "--device cuda" in output and "CUDA" in output


def test_dtype_is_honoured(samples) -> None:
    directory = samples["bert-classifier"]
    tokenizer, model = reference(directory, AutoModelForSequenceClassification)
    with torch.inference_mode():
        want = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.softmax(-1)
    for server in _serve(directory, "c", "--dtype=bfloat16"):
        meta = httpx.get(f"{server.http_url}/v2/models/c").json()
        got = infer(server, "c", texts_tensor(TEXTS), "json", ["probabilities"])
    assert meta["parameters"]["dtype"] == "bfloat16"
    np.testing.assert_allclose(got["probabilities"], want.numpy(), atol=2e-2)
