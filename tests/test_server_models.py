"""Several models behind one server: the shipped SmolLM2 GGUF on llama.cpp and its dequantized HF folder on
transformers (conftest `smollm2_hf`), through the official `openai` client. The request's `model` picks one; one is
resident at a time; an unknown model is a 404; a swap that would not fit in memory is a 503.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the GGUF needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
pytest.importorskip("torch", reason="the HF folder needs the transformers engine: pip install 'turnspec[transformers]'")
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

import turnspec  # noqa: E402
from turnspec.server import create_app  # noqa: E402
from turnspec.server.models import ModelManager, served_model  # noqa: E402

from test_server import client, raw_request, running, user  # noqa: E402

FRANCE = user("What is the capital of France?")
CAPABILITIES = {"chat": True, "completion": True, "tools": False, "reasoning": False, "fim": False, "constrained": True}


@pytest.fixture(scope="module")
def specs(smollm2_gguf, smollm2_hf):
    return {"smol-gguf": turnspec.load(smollm2_gguf), "smol-hf": turnspec.load(smollm2_hf)}


@pytest.fixture(scope="module")
def two(specs):
    models = ModelManager([served_model(name, spec) for name, spec in specs.items()])
    models.acquire(models.models["smol-gguf"])
    try:
        with running(create_app(models=models)) as url:
            yield client(url).with_options(timeout=600), url
    finally:
        models.close()


def resident(url: str) -> tuple[str, str]:
    _, health = raw_request(url, "GET", "/health")
    return health["model"], health["engine"]


def test_models_lists_every_model_with_capabilities(two, specs):
    api, _ = two
    cards = {m.id: m for m in api.models.list().data}
    assert set(cards) == {"smol-gguf", "smol-hf"}
    gguf, hf = cards["smol-gguf"].model_extra, cards["smol-hf"].model_extra
    assert gguf["capabilities"] == hf["capabilities"] == CAPABILITIES
    assert (gguf["engine"], gguf["context_length"]) == ("llamacpp", 4096)  # min(trained 8192, llama.cpp's 4096)
    assert (hf["engine"], hf["context_length"]) == ("transformers", 8192)
    assert cards["smol-gguf"].owned_by == "HuggingFaceTB" and cards["smol-hf"].owned_by == "local"
    assert api.models.retrieve("smol-hf").id == "smol-hf"


def test_each_request_is_answered_by_the_model_it_names(two):
    api, url = two
    for name, engine in (("smol-gguf", "llamacpp"), ("smol-hf", "transformers"), ("smol-gguf", "llamacpp")):
        reply = api.chat.completions.create(model=name, messages=FRANCE, temperature=0, max_tokens=30)
        assert reply.model == name and "Paris" in reply.choices[0].message.content
        assert resident(url) == (name, engine)  # the answer came from this engine, the other one is unloaded
        text = api.completions.create(model=name, prompt="The capital of France is", temperature=0, max_tokens=3)
        assert text.model == name and "Paris" in text.choices[0].text
    _, health = raw_request(url, "GET", "/health")
    assert health["swaps"] >= 3 and health["failed"] == 0


def test_unknown_or_missing_model(two):
    api, url = two
    with pytest.raises(openai.NotFoundError) as err:
        api.chat.completions.create(model="smol-xl", messages=FRANCE)
    assert err.value.body["code"] == "model_not_found" and "smol-gguf, smol-hf" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        api.completions.create(model="smol-xl", prompt="Hi")
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("smol-xl")
    status, body = raw_request(url, "POST", "/v1/chat/completions", {"messages": FRANCE})
    assert status == 400 and body["error"]["param"] == "model"


def test_a_swap_that_would_not_fit_is_a_503(specs):
    small, large = served_model("smol-gguf", specs["smol-gguf"]), served_model("smol-hf", specs["smol-hf"])
    assert small.footprint < large.footprint  # Q4_1 + f16 KV vs float32 weights + f32 KV
    budget = (small.footprint + large.footprint) // 2
    models = ModelManager([small, large], memory_limit=budget)
    try:
        with running(create_app(models=models)) as url:
            api = client(url).with_options(timeout=600)
            with pytest.raises(openai.InternalServerError) as err:
                api.chat.completions.create(model="smol-hf", messages=FRANCE)
            assert err.value.status_code == 503 and err.value.body["code"] == "insufficient_memory"
            assert "--max-memory" in err.value.body["message"] and models.resident is None  # nothing was loaded
            reply = api.chat.completions.create(model="smol-gguf", messages=FRANCE, temperature=0, max_tokens=30)
            assert "Paris" in reply.choices[0].message.content and resident(url) == ("smol-gguf", "llamacpp")
    finally:
        models.close()


def test_serve_command_with_a_name_and_a_models_dir(smollm2_gguf, smollm2_hf, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "smol-hf").symlink_to(smollm2_hf)
    (folder / smollm2_gguf.name).symlink_to(smollm2_gguf)
    (folder / "notes").mkdir()  # not a model: ignored
    proc = subprocess.Popen([sys.executable, "-m", "turnspec.cli", "serve", f"tiny={smollm2_gguf}", "--models-dir",
                             str(folder), "--port", "0", "--json", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        started = json.loads(proc.stdout.readline())
        assert started["command"] == "serve" and started["ok"], started
        ids = [m["id"] for m in started["data"]["models"]]
        assert ids == ["tiny", "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1", "smol-hf"]
        assert [m["loaded"] for m in started["data"]["models"]] == [True, False, False]
        api = client(started["data"]["url"].removesuffix("/v1"))
        assert [m.id for m in api.models.list().data] == ids
        reply = api.completions.create(model="tiny", prompt="The capital of France is", temperature=0, max_tokens=3)
        assert "Paris" in reply.choices[0].text
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in stderr
    assert "serving tiny (llamacpp, context 4096, loaded), HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1 (llamacpp" in stderr
