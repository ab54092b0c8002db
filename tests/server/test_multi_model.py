"""Several models in one server: each route under /models/NAME/ answers as a single-model server of that model, the
first model also at the root, unknown names are a 404 listing the names, and one model's overload or failure never
reaches another's requests. The CLI's --model NAME=PATH rules and a model that fails to load."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from conftest import CORPUS, build_checkpoint
from serverutil import ROOT, LiveServer
from textclass.classifier import Classifier
from textclass.cli.app import app as cli_app
from textclass.server.app import create_app
from textclass.server.settings import ServerSettings

NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
ZERO_SHOT = {"inputs": CORPUS[2], "parameters": {"candidate_labels": ["sports", "politics", "cooking"]}}


@pytest.fixture(scope="module")
def folders(tiny_checkpoints, tmp_path_factory, vocab_txt) -> dict[str, object]:
    nli, rr = tmp_path_factory.mktemp("nli"), tmp_path_factory.mktemp("rr")
    build_checkpoint(nli, "bert", vocab_txt, num_labels=3, id2label=NLI_LABELS,
                     label2id={v: k for k, v in NLI_LABELS.items()}, initializer_range=0.5)  # fmt: skip
    build_checkpoint(rr, "bert", vocab_txt, num_labels=1)
    return {"sent": tiny_checkpoints["bert"][0], "nli": nli, "rr": rr}


@pytest.fixture(scope="module")
def classifiers(folders) -> dict[str, Classifier]:
    return {name: Classifier.from_pretrained(folder, dtype="fp32") for name, folder in folders.items()}


# (route suffix, body) per model: every route each model can answer.
CASES = {
    "sent": [("/", {"inputs": [CORPUS[0], CORPUS[1]], "parameters": {"top_k": 2}}),
             ("/predict", {"inputs": [[CORPUS[3]], [CORPUS[4], CORPUS[5]]]}),
             ("/predict", {"inputs": " ".join(CORPUS), "long_text": "chunk", "aggregate": "max"}),
             ("/explain", {"inputs": CORPUS[6]}), ("/tokenize", {"inputs": CORPUS[7]}),
             ("/decode", {"ids": [101, 2000, 102]})],
    "nli": [("/", ZERO_SHOT), ("/predict", {"inputs": [CORPUS[0], CORPUS[1]]})],
    "rr": [("/rerank", {"query": CORPUS[0], "texts": CORPUS[1:6], "return_text": True})],
}  # fmt: skip


def exchange(app, requests: list[tuple[str, str, object]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
                return [await http.request(method, path, json=body) for method, path, body in requests]

    return asyncio.run(run())


def test_each_model_answers_as_its_own_single_model_server(classifiers):
    fleet = create_app(classifiers, ServerSettings())
    requests = [("POST", f"/models/{name}{path.rstrip('/')}", body) for name, cases in CASES.items()
                for path, body in cases]  # fmt: skip
    requests += [("POST", path, body) for path, body in CASES["sent"]]  # the first model, at the root
    got = exchange(fleet, requests)
    want = []
    for name, cases in CASES.items():
        want += exchange(create_app(classifiers[name], ServerSettings()), [("POST", p, b) for p, b in cases])
    want += want[: len(CASES["sent"])]
    for request, mine, single in zip(requests, got, want, strict=True):
        assert mine.status_code == single.status_code == 200, (request, mine.text)
        assert_same(mine, single)


def test_the_protocols_pick_a_model_by_name(classifiers):
    """Cohere/Jina rerank by their `model` field, OIP by /v2/models/NAME: each answers as that model's own server
    (a model's /rerank and /predict); no name, an unknown one or one that cannot rank are errors naming why."""
    docs = CORPUS[1:6]
    oip_texts = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": CORPUS[:2]}]}
    answers = exchange(create_app(classifiers, ServerSettings()), [
        ("POST", "/v2/rerank", {"model": "rr", "query": CORPUS[0], "documents": docs}),
        ("POST", "/v1/rerank", {"model": "rr", "query": CORPUS[0], "documents": docs, "top_n": 2}),
        ("POST", "/models/rr/rerank", {"query": CORPUS[0], "texts": docs}),
        ("POST", "/v2/models/nli/infer", oip_texts),
        ("POST", "/models/nli/predict", {"inputs": [[t] for t in CORPUS[:2]]}),
        ("POST", "/v2/rerank", {"query": CORPUS[0], "documents": docs}),
        ("POST", "/v2/rerank", {"model": "nope", "query": CORPUS[0], "documents": docs}),
        ("POST", "/v1/rerank", {"model": "sent", "query": CORPUS[0], "documents": docs}),
        ("POST", "/v2/models/nope/infer", oip_texts),
    ])  # fmt: skip
    v2, v1, tei, infer, predict, unnamed, unknown, classifier, oip_unknown = answers
    assert [r.status_code for r in answers] == [200] * 5 + [422, 404, 424, 404], [r.text for r in answers]
    ranked = [(r["index"], pytest.approx(r["score"], abs=1e-6)) for r in tei.json()]
    assert [(r["index"], r["relevance_score"]) for r in v2.json()["results"]] == ranked
    assert [(r["index"], r["relevance_score"]) for r in v1.json()["results"]] == ranked[:2]
    assert v1.json()["model"] == "rr"
    outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
    assert outputs["label"] == [row[0]["label"] for row in predict.json()]
    assert outputs["score"] == pytest.approx([row[0]["score"] for row in predict.json()], abs=1e-6)
    assert unnamed.json()["error"] == "model is required: this server serves 'sent', 'nli', 'rr'"
    assert "unknown model 'nope'; this server serves 'sent', 'nli', 'rr'" in unknown.json()["error"]
    assert "one output" in classifier.json()["error"] and list(oip_unknown.json()) == ["error"]


def assert_same(mine: httpx.Response, single: httpx.Response) -> None:
    """Equal JSON, scores within float tolerance (batches shared with other texts may differ in padding)."""

    def flat(value: object) -> list:
        if isinstance(value, dict):
            return [(k, *flat(v)) for k, v in sorted(value.items())]
        if isinstance(value, list):
            return [item for v in value for item in flat(v)]
        return [value]

    for a, b in zip(flat(mine.json()), flat(single.json()), strict=True):
        assert a == (pytest.approx(b, abs=1e-5) if isinstance(a, float) else b)


def test_unknown_names_info_metrics_and_schema_describe_every_model(classifiers):
    app = create_app(classifiers, ServerSettings())
    oip_text = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    unknown, wrong_method, oip_infer, oip_ready, info, nli_info, metrics, schema, rerank_on_sent = exchange(app, [
        ("POST", "/models/topics/predict", {"inputs": "x"}), ("GET", "/models/sent/predict", None),
        ("POST", "/v2/models/nli/infer", oip_text), ("GET", "/v2/models/rr/ready", None),
        ("GET", "/info", None), ("GET", "/models/nli/info", None), ("GET", "/metrics", None),
        ("GET", "/openapi.json", None), ("POST", "/rerank", {"query": "q", "texts": ["a"]}),
    ])  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "Validation"
    assert "no model named 'topics'; this server serves 'sent', 'nli', 'rr'" in unknown.json()["error"]
    assert wrong_method.status_code == 405
    models = {m["name"]: m for m in info.json()["models"]}
    assert list(models) == ["sent", "nli", "rr"] and info.json()["name"] == "sent"
    assert models["nli"]["labels"] == list(NLI_LABELS.values()) and "zero-shot" in models["nli"]["tasks"]
    assert "rerank" in models["rr"]["tasks"] and "rerank" not in models["sent"]["tasks"]
    assert models["sent"]["family"] == "bert" and models["sent"]["precision"]
    assert nli_info.json()["name"] == "nli" and nli_info.json()["labels"] == list(NLI_LABELS.values())
    for name in ("sent", "nli", "rr"):
        assert f'textclass_queue_size{{model="{name}"}}' in metrics.text
    assert 'model="nli",route="/models/{name}/info"' in metrics.text
    # OIP names the model in its path: its requests are that model's too.
    assert oip_infer.status_code == oip_ready.status_code == 200
    requests = {(s.labels["model"], s.labels["route"]) for family in text_string_to_metric_families(metrics.text)
                for s in family.samples if s.name == "textclass_requests_total"}  # fmt: skip
    assert {("nli", "/v2/models/{name:path}/infer"), ("rr", "/v2/models/{name:path}/ready")} <= requests, requests
    paths = schema.json()["paths"]
    assert "/models/rr/rerank" in paths and "/rerank" not in paths and "/models/nli/rerank" not in paths
    components = schema.json()["components"]["schemas"]
    assert "candidate_labels" in components["ClassifyParameters-nli"]["properties"]
    assert "candidate_labels" not in components["ClassifyParameters"]["properties"]  # sent, the default
    assert components["ExplainRequest-nli"]["properties"]["target"]["anyOf"][0]["enum"] == list(NLI_LABELS.values())
    assert rerank_on_sent.status_code == 424  # still TEI's answer on the route, though the schema leaves it out


class HeldClassifier(Classifier):
    """The real classifier; while `hold` is set every batch waits for `release`; a text of 'poison' raises."""

    hold = threading.Event()
    release = threading.Event()

    def run(self, encoded, batch_size=None):
        if self.hold.is_set():
            self.release.wait(30)
        if any(e.ids == self.encode(["poison"])[0].ids for e in encoded):
            raise RuntimeError("this model failed (simulated)")
        return super().run(encoded, batch_size)


def test_one_model_saturated_or_failing_while_another_answers(classifiers):
    real = classifiers["sent"]
    held = HeldClassifier(real.checkpoint, real.tokenizer, real.engine, True, real.device, real.max_batch_tokens)
    app = create_app({"busy": held, "nli": classifiers["nli"]}, ServerSettings(max_concurrent_requests=2))

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
                held.hold.set()
                stuck = [asyncio.ensure_future(http.post("/models/busy/predict", json={"inputs": t}))
                         for t in CORPUS[:2]]  # fmt: skip
                await asyncio.sleep(0.3)
                refused = await http.post("/models/busy/predict", json={"inputs": "one more"})
                others = [await http.post("/models/nli/", json=ZERO_SHOT) for _ in range(3)]
                health = await http.get("/models/nli/health")
                held.hold.clear()
                held.release.set()
                await asyncio.gather(*stuck)
                poisoned = await http.post("/models/busy/predict", json={"inputs": "poison"})
                others.append(await http.post("/models/nli/predict", json={"inputs": "after the failure"}))
                return [refused, poisoned], others, health, await http.get("/health")

    (refused, poisoned), others, nli_health, health = asyncio.run(run())
    assert refused.status_code == 429 and "'busy'" in refused.json()["error"]
    assert poisoned.status_code == 500 and "this model failed" in poisoned.json()["error"]
    assert [r.status_code for r in others] == [200] * 4 and nli_health.status_code == 200
    assert health.status_code == 200  # a failed batch is the request's answer, not the server's state


@pytest.mark.parametrize("specs, message", [
    (["=dir"], "'=dir': expected NAME=PATH with both parts"),
    (["a="], "'a=': expected NAME=PATH with both parts"),
    (["a=x", "a=y"], "the name 'a' is given twice"),
    (["a=x", "plain/folder"], "each one needs a name, as NAME=PATH"),
    (["bad name=x"], "must be letters, digits"),
])  # fmt: skip
def test_malformed_model_specs_are_one_line_errors(specs, message):
    result = CliRunner().invoke(cli_app, ["serve", *[arg for spec in specs for arg in ("--model", spec)]])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --model") and message in lines[0], result.output


def test_a_model_that_fails_to_load_stops_the_start_up_naming_it(folders, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    run = subprocess.run(
        [sys.executable, "-m", "textclass", "serve", "--model", f"sent={folders['sent']}", "--model", f"nli={broken}",
         "--port", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model 'nli' (") and "did not load" in last and "config.json" in last, run.stderr
    assert "Traceback" not in run.stderr and "Uvicorn running" not in run.stderr


@pytest.mark.slow
def test_three_models_over_http_with_the_real_inference_client(folders, classifiers, tmp_path):
    from huggingface_hub import InferenceClient

    args = [arg for name in ("nli", "rr") for arg in ("--model", f"{name}={folders[name]}")]
    server = LiveServer(f"sent={folders['sent']}", tmp_path / "server.log", *args).wait_healthy()
    try:
        root = InferenceClient(base_url=server.url).text_classification(CORPUS[0], top_k=3)
        named = InferenceClient(base_url=f"{server.url}/models/sent").text_classification(CORPUS[0], top_k=3)
        zero_shot = InferenceClient(base_url=f"{server.url}/models/nli").zero_shot_classification(
            CORPUS[2], ["sports", "politics", "cooking"]
        )
        rerank = server.http.post("/models/rr/rerank", json={"query": CORPUS[0], "texts": CORPUS[1:4]}).json()
    finally:
        code = server.stop()
    want = classifiers["sent"](CORPUS[0], top_k=3)
    for got in (root, named):
        assert [g.label for g in got] == [w["label"] for w in want]
        assert [g.score for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    offline = classifiers["nli"].zero_shot(CORPUS[2], ["sports", "politics", "cooking"])
    assert [z.label for z in zero_shot] == offline["labels"]
    assert [z.score for z in zero_shot] == pytest.approx(offline["scores"], abs=1e-5)
    ranked = classifiers["rr"].rerank(CORPUS[0], CORPUS[1:4])
    assert [r["index"] for r in rerank] == [r["index"] for r in ranked]
    assert code == 0, server.log()
