"""The one tabular reader (fileio/tables.py) and the commands built on it: `check`, `batch`, `eval` and `train` read
the same columns from the same files, refuse the same broken files with one line, and read the header before the
model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from textclass.cli.app import app
from textclass.errors import InputError
from textclass.fileio.tables import Record, open_table, pick_column, read_lines, records
from textclass.train.data import load_dataset

runner = CliRunner()
GLUE = "sentence\tlabel\nit 's a charming journey .\t1\na dull , lifeless mess .\t0\n"


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model(tiny_checkpoints) -> str:
    return str(tiny_checkpoints["bert"][0])  # labels LABEL_0..2


def rows_of(path: Path, columns: dict, **options) -> list[Record]:
    return list(records(open_table(path), columns, **options))


# ---- the reader ------------------------------------------------------------------------------------------------
def test_one_column_rule(tmp_path):
    for header, expected in [("text,sentence", "text"), ("id,sentence", "sentence"), ("sentence,text", "text")]:
        (tmp_path / "d.csv").write_text(header + "\na,b\n", encoding="utf-8")
        assert pick_column(open_table(tmp_path / "d.csv"), None) == expected
    (tmp_path / "d.csv").write_text("id,review\n1,fine\n", encoding="utf-8")
    table = open_table(tmp_path / "d.csv")
    assert pick_column(table, "review") == "review"
    with pytest.raises(InputError, match="has no 'text' or 'sentence' column; its columns are: id, review"):
        pick_column(table, None)
    with pytest.raises(InputError, match=r"has no column 'body' \(--text-column\); its columns are: id, review"):
        pick_column(table, "body")


def test_every_format_reads_the_same_rows(tmp_path):
    texts = ["plain", 'a "quoted", comma', "two\nlines", "café ünïcode 中文", "  padded  "]
    with open(tmp_path / "d.csv", "w", encoding="utf-8", newline="") as handle:
        import csv

        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([[i, t] for i, t in enumerate(texts)])
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    (tmp_path / "d.json").write_text(json.dumps([{"id": i, "text": t} for i, t in enumerate(texts)]))
    pq.write_table(pa.table({"id": [str(i) for i in range(5)], "text": texts}), tmp_path / "d.parquet")
    for name in ("d.csv", "d.jsonl", "d.json", "d.parquet"):
        got = rows_of(tmp_path / name, {"text": "text", "id": "id"}, lenient_roles=("id",))
        assert [r.values["text"] for r in got] == texts, name
        assert [r.values["id"] for r in got] == [str(i) for i in range(5)], name
        assert [r.number for r in got] == list(range(5)) and all(r.error is None for r in got)
        assert [r.values["text"] for r in rows_of(tmp_path / name, {"text": "text"}, skip=3)] == texts[3:]


def test_a_bad_row_is_that_rows_error(tmp_path):
    source = tmp_path / "bad.csv"
    source.write_bytes(b"\xef\xbb\xbfid,text\n1,fine\n2,caf\xe9\n3,a,b\n\n4\n5,last\n")  # BOM, latin-1, ragged, blank
    got = rows_of(source, {"text": "text", "id": "id"}, lenient_roles=("id",))
    assert [r.values["id"] for r in got] == ["1", "2", None, None, "5"]  # the blank line is not a row
    assert [r.error for r in got] == [None, "invalid UTF-8 at byte 3 of the text", "the row has 3 fields, the header 2",
                                      "the row has 1 fields, the header 2", None]  # fmt: skip
    with pytest.raises(InputError, match=r"bad.csv: data row 2: invalid UTF-8 at byte 3 of the text; fix that row"):
        [r.check(str(source)) for r in got]
    lenient = tmp_path / "ids.csv"
    lenient.write_bytes(b"id,text\nx\xff,fine\n")
    assert rows_of(lenient, {"text": "text", "id": "id"}, lenient_roles=("id",))[0].values == {"text": "fine",
                                                                                               "id": "x\ufffd"}


def test_unreadable_files_are_one_error(tmp_path):
    cases = {
        "empty.csv": (b"", "is empty; expected a header row"),
        "utf16.csv": ("text\nhi\n".encode("utf-16"), "is UTF-16 text; re-encode it as UTF-8"),
        "header.csv": (b"t\xe9xt\nhi\n", "the header is not UTF-8 (invalid UTF-8 at byte 1)"),
        "broken.parquet": (b"PAR1 not really parquet", "is not a readable Parquet file"),
        "broken.json": (b'[{"text": ', "is not valid JSON"),
        "scalar.json": (b'{"text": "hi"}', "must hold a JSON array of objects"),
        "data.xlsx": (b"PK", "cannot tell the format"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_table(tmp_path / name)
    with pytest.raises(InputError, match="does not exist"):
        open_table(tmp_path / "missing.csv")
    (tmp_path / "quote.csv").write_text('text\n"never closed\n' + "x\n" * 10)  # the rest of the file is one field
    assert [r.values["text"] for r in rows_of(tmp_path / "quote.csv", {"text": "text"})] == ["never closed\n" +
                                                                                            "x\n" * 10]  # fmt: skip


def test_huge_fields_and_lines(tmp_path):
    big = "word " * 100_000  # 500 KB: past the csv module's default 128 KiB field limit
    (tmp_path / "big.csv").write_text(f'text\n"{big}"\nsmall\n', encoding="utf-8")
    assert [len(r.values["text"]) for r in rows_of(tmp_path / "big.csv", {"text": "text"})] == [len(big), 5]
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": big}) + "\n", encoding="utf-8")
    assert rows_of(tmp_path / "big.jsonl", {"text": "text"})[0].values["text"] == big


def test_lines_longer_than_a_block(tmp_path, monkeypatch):
    """Lines are cut the same whatever the read size: a 7-byte block splits BOMs, CRLFs and every line."""
    from textclass.fileio import tables

    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps({"text": "x" * n}).encode() + b"\r\n"
                                                              for n in (0, 5, 40, 300)))  # fmt: skip
    (tmp_path / "d.txt").write_bytes("\ufeffone\r\n\ntwo\u2028three\n".encode() + b"y" * 100)
    expected = {name: [r.values["text"] for r in rows_of(tmp_path / name, {"text": "text"})]
                for name in ("d.jsonl", "d.txt")}  # fmt: skip
    assert expected == {"d.jsonl": ["", "x" * 5, "x" * 40, "x" * 300], "d.txt": ["one", "two", "three", "y" * 100]}
    monkeypatch.setattr(tables, "BLOCK_BYTES", 7)
    for name, texts in expected.items():
        assert [r.values["text"] for r in rows_of(tmp_path / name, {"text": "text"})] == texts


def test_read_lines():
    assert read_lines(b"\xef\xbb\xbfa\n\n  \nb\r\nc", "f") == (["a", "b", "c"], 2)
    for raw, message in [(b"", "is empty"), (b"\n \n", "its 2 lines are blank"), (b"caf\xe9", "not UTF-8 text"),
                         ("hi".encode("utf-16"), "UTF-16")]:  # fmt: skip
        with pytest.raises(InputError, match=message):
            read_lines(raw, "f")


# ---- the commands ----------------------------------------------------------------------------------------------
def test_a_glue_file_reads_alike_in_check_batch_and_eval(tmp_path, model):
    data = tmp_path / "dev.tsv"
    data.write_text(GLUE, encoding="utf-8")
    checked = runner.invoke(app, ["check", "--data", str(data), "--model", model, "--json"])
    assert checked.exit_code in (0, 2), checked.output
    assert json.loads(checked.stdout)["verdict"]["texts"] == 2
    out = tmp_path / "out.jsonl"
    scored = runner.invoke(app, ["batch", "-i", str(data), "-o", str(out), "--model", model, "-q"])
    assert scored.exit_code == 0, scored.output
    assert [json.loads(line)["error"] for line in out.read_text().splitlines()] == [None, None]
    evaluated = runner.invoke(app, ["eval", "--data", str(data), "--model", model, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["rows"] == 2  # labels 0 and 1: the model's class ids
    assert load_dataset(data)[0].texts == ["it 's a charming journey .", "a dull , lifeless mess ."]


def test_bad_files_are_one_line_errors_before_the_model_loads(tmp_path, model, monkeypatch):
    from textclass.classifier import Classifier

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the file was checked")

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(no_model))
    (tmp_path / "cols.csv").write_text("id,body\n1,fine\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\nok\n".encode("latin-1"))
    (tmp_path / "ragged.csv").write_text("text,label\nfine,LABEL_0\na,b,LABEL_1\n", encoding="utf-8")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 garbage")
    (tmp_path / "utf16.jsonl").write_bytes('{"text": "hi"}\n'.encode("utf-16"))
    out = str(tmp_path / "out.jsonl")
    cases = [
        (["check", "--data", "cols.csv"], "no 'text' or 'sentence' column; its columns are: id, body"),
        (["check", "--data", "cols.csv", "--text-column", "x"], "has no column 'x' (--text-column)"),
        (["check", "--data", "latin1.txt"], "data row 1: invalid UTF-8 at byte 3 of the text"),
        (["check", "--data", "ragged.csv"], "data row 2: the row has 3 fields, the header 2"),
        (["check", "--data", "broken.parquet"], "is not a readable Parquet file"),
        (["check", "--data", "utf16.jsonl"], "is UTF-16 text"),
        (["batch", "-i", "cols.csv", "-o", out], "no 'text' or 'sentence' column"),
        (["batch", "-i", "broken.parquet", "-o", out], "is not a readable Parquet file"),
        (["batch", "-i", "utf16.jsonl", "-o", out], "is UTF-16 text"),
        (["eval", "--data", "cols.csv"], "no 'text' or 'sentence' column"),
        (["eval", "--data", "ragged.csv"], "data row 2: the row has 3 fields, the header 2"),
        (["eval", "--data", "broken.parquet"], "is not a readable Parquet file"),
        (["eval", "--data", "latin1.txt"], "cannot tell the format"),
    ]
    monkeypatch.chdir(tmp_path)
    for args, message in cases:
        one_line_error(runner.invoke(app, [*args, "--model", model]), message)
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.parts").exists()


def test_batch_writes_bad_rows_as_error_rows(tmp_path, model):
    source = tmp_path / "in.csv"
    source.write_bytes(b"text,id\nfine,1\ncaf\xe9,2\ntoo,many,fields\n\n,4\nlast,5\n")
    out = tmp_path / "out.jsonl"
    done = runner.invoke(app, ["batch", "-i", str(source), "-o", str(out), "--model", model, "--id-column", "id",
                               "-q"])  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", None, "4", "5"]
    assert [r["error"] for r in rows] == [None, "invalid UTF-8 at byte 3 of the text",
                                          "the row has 3 fields, the header 2", "empty text", None]  # fmt: skip
    assert [r["label"] is None for r in rows] == [False, True, True, True, False]
