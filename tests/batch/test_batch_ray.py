"""`textclass batch --engine ray`: the same output as the local engine, on a local Ray with 2 workers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_batch import cli, make_texts, write_input

from conftest import build_checkpoint
from textclass.batch import BatchJob, ScoreOptions, run_batch

pytestmark = pytest.mark.slow  # the quick tier (-m 'not slow') leaves these out

ray = pytest.importorskip("ray", reason="the Ray engine needs Ray Data: pip install 'textclass[ray]'")

ROWS, CHUNK = 600, 100


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (run_batch joins it instead of starting its own): 2 actors + a reader."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_output_equals_local_engine_output(tmp_path, vocab_txt, local_ray):
    model = tmp_path / "model"
    build_checkpoint(model, "bert", vocab_txt, num_labels=3)
    texts = make_texts(ROWS, seed=5)
    texts[3] = texts[450] = ""
    source = write_input(tmp_path / "in.csv", [f"id{i}" for i in range(ROWS)], texts)
    with open(source, "ab") as f:
        f.write(b"bad,caf\xe9\n")  # invalid UTF-8: an error row on both engines
    options = ScoreOptions(top_k=2, all_scores=True)

    def job(output: str, engine: str, resume: bool = False) -> BatchJob:
        return BatchJob(
            str(source), str(tmp_path / output), str(model), id_column="id", score=options, chunk_rows=CHUNK,
            engine=engine, resume=resume,
        )  # fmt: skip

    run_batch(job("local.parquet", "local"), show_progress=False)
    result = run_batch(job("ray.parquet", "ray"), show_progress=False)
    assert (result.rows, result.errors) == (ROWS + 1, 3)
    local, distributed = (pq.read_table(tmp_path / name) for name in ("local.parquet", "ray.parquet"))
    assert distributed.schema == local.schema
    for column in ("id", "label", "error"):
        assert distributed.column(column).to_pylist() == local.column(column).to_pylist()
    assert distributed.column("id").to_pylist()[-1] == "bad"
    # Actors run torch on one thread, the local engine on two: scores agree to float rounding.
    for column in ["score"] + [c for c in local.column_names if c.startswith("score_")]:
        a, b = (np.array(t.column(column).to_pylist(), dtype=float) for t in (local, distributed))
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert [[x["label"] for x in r or []] for r in distributed.column("top_k").to_pylist()] == [
        [x["label"] for x in r or []] for r in local.column("top_k").to_pylist()
    ]

    # A local run killed after 2 chunks, finished on Ray: Ray's readers skip the 200 done rows without scoring.
    args = ["-m", str(model), "-i", str(source), "-o", str(tmp_path / "resumed.parquet"), "--chunk-rows", str(CHUNK)]
    crashed = cli(*args, "--id-column", "id", "--top-k", "2", "--all-scores", crash_at="part-listed:1")
    assert crashed.returncode == -signal.SIGKILL
    parts = Path(tmp_path / "resumed.parquet.parts")
    assert json.loads((parts / "manifest.json").read_text())["rows_done"] == 2 * CHUNK
    resumed = run_batch(job("resumed.parquet", "ray", resume=True), show_progress=False)
    assert (resumed.rows, resumed.scored_now) == (ROWS + 1, ROWS + 1 - 2 * CHUNK)
    table = pq.read_table(tmp_path / "resumed.parquet")
    assert table.column("id").to_pylist() == local.column("id").to_pylist()
    assert table.column("label").to_pylist() == local.column("label").to_pylist()
