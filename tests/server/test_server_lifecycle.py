"""The batcher on its own, a failing batch inside the app, and a graceful stop of a loaded server."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import threading
import time

import httpx
import numpy as np
import pytest

from conftest import CORPUS
from serverutil import LiveServer, without_fast_path
from textclass.checkpoint.tokenizer import Encoded
from textclass.classifier import Classifier
from textclass.server.batcher import LANE_SHARE, ROUND_BATCHES, SPLIT_TOKENS, Batcher, BatchFailed, _Job


# ---- the batcher with a fake model ------------------------------------------------------------------
def test_batcher_keeps_each_answer_and_its_order_across_batches():
    """Jobs of many lengths and sizes share model calls (rounds of at most ROUND_BATCHES budgets of tokens, which
    the classifier cuts into forward passes); each gets its own rows back, in order."""
    budget = 64
    seen: list[list[Encoded]] = []

    def run(encoded: list[Encoded]) -> np.ndarray:  # (rows, 2): the row's tag and its length
        seen.append(encoded)
        time.sleep(0.002)  # let other jobs queue up behind the running batch
        return np.array([[e.ids[0], len(e)] for e in encoded], dtype=np.float32)

    rng = random.Random(0)
    jobs = [[Encoded([job * 1000 + row] * rng.randint(1, 40), []) for row in range(rng.randint(1, 12))]
            for job in range(40)]  # fmt: skip
    batcher = Batcher(run, max_batch_tokens=budget)
    batcher.start()

    async def submit_all() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.infer(job) for job in jobs))

    try:
        results = asyncio.run(submit_all())
    finally:
        batcher.stop()
    for job, result in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(result, [[e.ids[0], len(e)] for e in job])
    for batch in seen:
        assert len(batch) == 1 or sum(map(len, batch)) <= budget * ROUND_BATCHES
    assert any(len({e.ids[0] // 1000 for e in batch}) > 1 for batch in seen)  # requests did share calls
    # Rounds take what queued, past one budget: fewer calls than budget-sized slices would have made.
    assert any(len(batch) * max(map(len, batch)) > budget for batch in seen)
    assert len(seen) < sum(map(len, jobs))


def test_lanes_run_rounds_side_by_side_on_one_thread_each():
    """With two lanes, a round taken while another runs goes `one_thread`, at the same time as it; a lone round
    keeps every thread; an idle lane waits for LANE_SHARE's part of a forward pass's budget (or for the busy lane
    to finish) rather than take a lone request; every answer is its own, and stop drains both lanes."""
    running, most, calls, lock = [0], [0], [], threading.Lock()

    def run(encoded: list[Encoded], one_thread: bool = False) -> np.ndarray:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            calls.append((len(encoded), sum(map(len, encoded)), one_thread))
        time.sleep(0.03)
        with lock:
            running[0] -= 1
        return np.array([[e.ids[0], len(e)] for e in encoded], dtype=np.float32)

    budget = 160
    batcher = Batcher(run, max_batch_tokens=budget, lanes=2)
    assert batcher.lane_tokens == budget // LANE_SHARE == 20
    assert batcher.lanes == 2
    batcher.start()
    jobs = [[Encoded([job * 100 + row] * (1 + (job + row) % 9), []) for row in range(1 + job % 4)] for job in range(60)]

    async def scenario() -> tuple[np.ndarray, list[np.ndarray]]:
        alone = await batcher.infer([Encoded([7, 7], [])])  # nothing else queued: every thread

        async def submit(job, delay):
            await asyncio.sleep(delay)
            return await batcher.infer(job)

        return alone, await asyncio.gather(*(submit(job, 0.002 * i) for i, job in enumerate(jobs)))

    try:
        alone, results = asyncio.run(scenario())
    finally:
        batcher.stop(10)
    assert not batcher.alive
    np.testing.assert_array_equal(alone, [[7, 2]])
    for job, result in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(result, [[e.ids[0], len(e)] for e in job])
    assert calls[0] == (1, 2, False)
    assert most[0] == 2  # two rounds did run at once
    side_by_side = [call for call in calls if call[2]]
    assert side_by_side and all(tokens >= batcher.lane_tokens for _, tokens, _ in side_by_side)
    assert all(tokens <= budget * ROUND_BATCHES or rows == 1 for rows, tokens, _ in calls)


def _queued(batcher: Batcher, lengths: list[int], loop: asyncio.AbstractEventLoop) -> list[_Job]:
    """Put one single-text request per length on the batcher's queue, oldest first, without running a lane."""
    jobs = [_Job([Encoded([i] * n, [])], loop.create_future(), loop, remaining=1) for i, n in enumerate(lengths)]
    batcher._queue.extend((job, 0) for job in jobs)
    batcher._queued_tokens += sum(lengths)
    return jobs


def test_lanes_take_their_share_of_a_full_queue_by_length():
    """While another lane runs and SPLIT_TOKENS are queued, a lane takes the half of the queue by length (tokens)
    that holds the oldest text, in arrival order; the next take gets the rest. Below SPLIT_TOKENS, or with no other
    lane running (one lane, an idle server), a lane takes the queue as it came."""
    loop = asyncio.new_event_loop()
    try:
        lengths = [30, 5, 40, 6, 35, 7, 8, 45, 50, 9, 10, 60]  # 305 tokens; sorted, halves at 150 and 155
        assert sum(lengths) >= SPLIT_TOKENS
        batcher = Batcher(lambda encoded: None, max_batch_tokens=64, lanes=2)
        batcher._busy = 1  # the other lane is running a round
        _queued(batcher, lengths, loop)
        first = [len(job.encoded[0]) for job, _ in batcher._take()]
        assert first == [30, 5, 40, 6, 35, 7, 8, 9, 10]  # the oldest (30) and its half, in queue order
        assert batcher._queued_tokens == 45 + 50 + 60 < SPLIT_TOKENS
        assert [len(job.encoded[0]) for job, _ in batcher._take()] == [45, 50, 60]  # the rest, as queued
        assert not batcher._queue and batcher._queued_tokens == 0

        _queued(batcher, [60, *lengths[1:]], loop)  # the oldest is now the longest: the long half goes first
        assert [len(job.encoded[0]) for job, _ in batcher._take()] == [60, 50, 60]

        batcher._queue.clear()
        batcher._queued_tokens = 0
        batcher._busy = 0  # no other lane running: the queue as it came, every thread on it
        _queued(batcher, lengths, loop)
        assert [len(job.encoded[0]) for job, _ in batcher._take()] == lengths
    finally:
        loop.close()


@pytest.mark.parametrize("seed", range(20))
def test_a_length_share_always_holds_the_oldest_text_and_loses_none(seed):
    """Whatever the queue, each take starts with the oldest live text, keeps arrival order, stays within the
    round's tokens, leaves the rest in order, and takes and leaves exactly the queue: every text is taken within
    len(queue) takes."""
    rng = random.Random(seed)
    loop = asyncio.new_event_loop()
    try:
        batcher = Batcher(lambda encoded: None, max_batch_tokens=rng.choice([16, 64, 256]), lanes=rng.choice([2, 3]))
        batcher._busy = 1
        jobs = _queued(batcher, [rng.randint(1, 120) for _ in range(rng.randint(1, 80))], loop)
        jobs[rng.randrange(len(jobs))].future.cancel()  # a client that went away: dropped, never taken
        live = [job for job in jobs if not job.future.cancelled()]
        taken_all: list[_Job] = []
        for _ in range(len(jobs)):
            if not batcher._queue:
                break
            head = next((job for job, _ in batcher._queue if not job.future.cancelled()), None)
            before = [job for job, _ in batcher._queue if not job.future.cancelled()]
            taken = [job for job, _ in batcher._take()]
            # What is left keeps its order: the window's rest back at the head, the queue beyond it untouched.
            assert [job for job, _ in batcher._queue if not job.future.cancelled()] == [
                job for job in before if job not in taken]
            if head is None:
                assert not taken
                continue
            assert taken[0] is head
            assert [jobs.index(job) for job in taken] == sorted(jobs.index(job) for job in taken)
            assert len(taken) == 1 or sum(len(job.encoded[0]) for job in taken) <= batcher.max_round_tokens
            assert batcher._queued_tokens == sum(len(job.encoded[row]) for job, row in batcher._queue)
            taken_all += taken
        assert not batcher._queue
        assert sorted(map(id, taken_all)) == sorted(map(id, live))
    finally:
        loop.close()


def test_batcher_failure_reaches_only_the_failing_request():
    def run(encoded: list[Encoded]) -> np.ndarray:
        if any(e.ids[0] == -1 for e in encoded):
            raise RuntimeError("poisoned row")
        time.sleep(0.05)
        return np.zeros((len(encoded), 2), dtype=np.float32)

    batcher = Batcher(run, max_batch_tokens=1024)
    batcher.start()

    async def scenario():
        first = asyncio.ensure_future(batcher.infer([Encoded([1], [])]))
        await asyncio.sleep(0.01)  # the next two queue behind it and go into one batch
        return await asyncio.gather(first, batcher.infer([Encoded([-1], [])]), batcher.infer([Encoded([2], [])]),
                                    return_exceptions=True)  # fmt: skip

    try:
        first, poisoned, neighbour = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert isinstance(poisoned, BatchFailed) and "poisoned row" in str(poisoned)
    assert isinstance(first, np.ndarray) and isinstance(neighbour, np.ndarray)


# ---- a failing batch inside the real app ------------------------------------------------------------
class FlakyClassifier(Classifier):
    """The real classifier, except that one text makes the model raise and another holds it until released."""

    poison: list[int] = []
    slow: list[int] = []
    calls: list[list[list[int]]] = []
    holding = threading.Event()
    release = threading.Event()

    def run(self, encoded, batch_size=None):
        ids = [list(e.ids) for e in encoded]
        self.calls.append(ids)
        if self.poison in ids:
            raise RuntimeError("CUDA error: device-side assert triggered (simulated)")
        if self.slow in ids:
            self.holding.set()
            self.release.wait(30)
        return super().run(encoded, batch_size)


async def metric_reaches(http: httpx.AsyncClient, name: str, value: float) -> None:
    for _ in range(1000):
        metrics = (await http.get("/metrics")).text
        if float(re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", metrics, re.M).group(1)) >= value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never reached {value}")


SLOW = "slow text held back here for a long while"  # 9 words: no other text here has its length


def test_failing_batch_answers_500_for_its_request_only(tiny_checkpoints):
    from textclass.server.app import create_app
    from textclass.server.settings import ServerSettings

    real = Classifier.from_pretrained(tiny_checkpoints["bert"][0])
    clf = FlakyClassifier(real.checkpoint, real.tokenizer, real.engine, True, real.device, real.max_batch_tokens)
    # The tiny vocabulary maps most words to [UNK]: the word counts tell these texts apart.
    clf.poison, clf.slow = clf.encode(["poison"])[0].ids, clf.encode([SLOW])[0].ids
    app = create_app(clf, ServerSettings())

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                slow = asyncio.ensure_future(http.post("/predict", json={"inputs": SLOW}))
                for _ in range(1000):  # until the worker is inside the slow batch
                    if clf.holding.is_set():
                        break
                    await asyncio.sleep(0.01)
                poisoned = asyncio.ensure_future(http.post("/predict", json={"inputs": "poison"}))
                good = asyncio.ensure_future(http.post("/", json={"inputs": "a good text"}))
                await metric_reaches(http, "textclass_queue_size", 2)  # both wait behind the held batch
                clf.release.set()
                poisoned, good = await poisoned, await good
                after = await http.post("/predict", json={"inputs": "after the failure"})
                health = await http.get("/health")
                return await slow, poisoned, good, after, health

    slow, poisoned, good, after, health = asyncio.run(scenario())
    assert poisoned.status_code == 500
    assert poisoned.json()["error_type"] == "Backend" and "device-side assert" in poisoned.json()["error"]
    assert [slow.status_code, good.status_code, after.status_code, health.status_code] == [200] * 4
    assert good.json()[0][0]["label"] in clf.labels
    assert any(clf.poison in call and len(call) > 1 for call in clf.calls)  # it really shared a batch


# ---- the fast path answers as FastAPI's declared routes do ------------------------------------------
JSON = {"content-type": "application/json"}
FAST_PATH_CASES = [  # (path, body, headers, answered by the fast path itself)
    ("/predict", {"inputs": "a fine film"}, JSON, True),
    ("/predict", {"inputs": [["a fine film"], ["dull", "and long"]], "raw_scores": True}, JSON, True),
    ("/predict", {"inputs": ["first", "second"], "truncation_direction": "Left"}, JSON, True),
    ("/", {"inputs": ["one", "two"], "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}}, JSON, True),
    ("/", {"inputs": "ünïcödé ✓"}, {"content-type": "application/vnd.api+json; charset=utf-8"}, True),
    ("/predict", {"inputs": [["t"]] * 33}, JSON, True),  # 413 from the route function
    ("/predict", {"inputs": "word " * 100, "truncate": False}, JSON, True),  # over the 64-token limit
    ("/predict", {"inputs": ["a", "b", "c"]}, JSON, False),  # does not validate: FastAPI words the 422
    ("/", {"inputs": "x", "parameters": {"function_to_apply": "tanh"}}, JSON, False),
    ("/predict", {"inputs": []}, JSON, False),
    ("/predict", {"inputs": "x", "raw_scores": "true"}, JSON, False),
    ("/predict", {"inputs": 5}, JSON, False),
    ("/", {"parameters": {}}, JSON, False),
    ("/predict", b'{"inputs": "x', JSON, False),  # not JSON
    ("/predict", b"", JSON, False),
    ("/predict", b'\xef\xbb\xbf{"inputs": "a BOM first"}', JSON, False),
    ("/predict", b'{"inputs": "form-encoded"}', {"content-type": "application/x-www-form-urlencoded"}, False),
    ("/", b'{"inputs": "no content type"}', {}, False),
]


def test_fast_path_answers_as_the_declared_routes_do(tiny_checkpoints, monkeypatch):
    """POST / and /predict are answered by server/fastpath.py; FastAPI's routes for them (what /docs shows)
    must give the same answers, and whatever the fast path hands on must reach them unchanged."""
    from textclass.server import fastpath
    from textclass.server.app import create_app
    from textclass.server.settings import ServerSettings

    app = create_app(Classifier.from_pretrained(tiny_checkpoints["bert"][0]), ServerSettings())
    answered = []
    monkeypatch.setattr(fastpath, "send_json", lambda *args, send=fastpath.send_json: answered.append(1) or send(*args))

    async def both() -> list[tuple[httpx.Response, httpx.Response, int]]:
        async with app.router.lifespan_context(app):
            full = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
            # The same middleware stack without FastPath: these requests reach the FastAPI routes.
            declared = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=without_fast_path(app)), base_url="http://app"
            )
            out = []
            async with full, declared:
                for path, body, headers, _ in FAST_PATH_CASES:
                    content = body if isinstance(body, bytes) else json.dumps(body).encode()
                    before = len(answered)
                    fast = await full.post(path, content=content, headers=headers)
                    out.append(
                        (fast, await declared.post(path, content=content, headers=headers), len(answered) - before)
                    )
            return out

    for (path, body, _, by_fast_path), (fast, slow, sent) in zip(FAST_PATH_CASES, asyncio.run(both()), strict=True):
        case = (path, body)
        assert sent == by_fast_path, case
        assert fast.status_code == slow.status_code, case
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json", case
        if fast.status_code == 200:
            assert fast.content == slow.content, case
            assert float(fast.headers["x-total-time"]) >= 0, case
        else:
            assert fast.json() == slow.json(), case


# ---- graceful shutdown of a loaded server -----------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_classifier(minilm_dir, tmp_path_factory):
    """all-MiniLM-L6-v2 with a random 2-label head: slow enough on CPU to keep requests in flight."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("minilm-2-labels")
    AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir / name).is_file():
            shutil.copy(minilm_dir / name, folder / name)
    return folder


def in_flight(server: LiveServer) -> float:
    metrics = server.http.get("/metrics").text
    return float(re.search(r"^textclass_requests_in_flight\{[^}]*\} (\S+)$", metrics, re.M).group(1))


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_and_exits_0(minilm_classifier, tmp_path):
    # A grace period ample for these requests on two loaded CPUs: they must all be answered, not cut off.
    server = LiveServer(minilm_classifier, tmp_path / "server.log", "--graceful-timeout", "60").wait_healthy()
    texts = [" ".join(CORPUS[i : i + 6]) for i in range(8)]  # ~100 tokens each: ~1 s of MiniLM work in all
    responses: dict[int, httpx.Response] = {}

    def client(index: int) -> None:
        responses[index] = server.http.post("/predict", json={"inputs": [[t] for t in texts]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while in_flight(server) < len(threads):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)
    server.terminate()
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # no new connections once stopping
        httpx.get(f"{server.url}/health", timeout=2)
    for thread in threads:
        thread.join(120)
    assert sorted(responses) == list(range(len(threads)))
    for response in responses.values():
        assert response.status_code == 200, server.log()
        assert [len(ranked) for ranked in response.json()] == [2] * len(texts)
    assert server.stop() == 0
    assert "Shutting down" in server.log()


def test_an_unexpected_error_answers_json_500_and_the_server_carries_on(tiny_checkpoints, monkeypatch):
    from textclass import postprocess
    from textclass.server.app import create_app
    from textclass.server.settings import ServerSettings

    app = create_app(Classifier.from_pretrained(tiny_checkpoints["bert"][0]), ServerSettings())
    rank = postprocess.rank

    async def scenario() -> tuple[httpx.Response, ...]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                monkeypatch.setattr(postprocess, "rank", lambda *a: 1 / 0)  # a bug in the answer's last step
                broken = [await http.post(path, json={"inputs": "x"}) for path in ("/", "/predict")]
                monkeypatch.setattr(postprocess, "rank", rank)
                return *broken, await http.post("/predict", json={"inputs": "x"})

    *broken, after = asyncio.run(scenario())
    for response in broken:
        assert response.status_code == 500
        assert response.json()["error_type"] == "Backend" and "ZeroDivisionError" in response.json()["error"]
    assert after.status_code == 200


# ---- logging ----------------------------------------------------------------------------------------
def test_logs_are_json_lines_and_the_access_log_can_be_turned_off(capsys):
    import logging

    from textclass.server.run import configure_logging

    root, access = logging.getLogger(), logging.getLogger("textclass.access")
    handlers, level = root.handlers[:], root.level
    try:
        for enabled in (True, False):
            listener = configure_logging(access_log=enabled)
            access.info("access", extra={"fields": {"event": "access", "status": 200}})
            logging.getLogger("textclass.server").info(json.dumps({"event": "ready", "warm_up_ms": 1.5}))
            changing = {"state": "at the call"}
            logging.getLogger("textclass.server").warning("plain text %s", changing)
            changing["state"] = "changed later"  # the line must show the arguments as they were
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("textclass.server").exception("failed")
            listener.stop()  # flushes what the listener thread has not written yet
            logging.getLogger("textclass.server").warning("after the stop")  # written directly, not lost
            lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
            expected = (["access"] if enabled else []) + ["ready", None, None, None]
            assert [line.get("event") for line in lines] == expected
            assert lines[-3]["message"] == "plain text {'state': 'at the call'}" and lines[-3]["level"] == "warning"
            assert lines[-2]["message"] == "failed" and "ValueError: boom" in lines[-2]["exception"]
            assert lines[-1]["message"] == "after the stop"
            assert lines[-4]["warm_up_ms"] == 1.5  # a JSON message is merged, not quoted
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        access.setLevel(logging.NOTSET)
