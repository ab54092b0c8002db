"""Peak resident memory after loading each mode, in a fresh process each, next to the weights' size.

python bench/memory.py --model bench/models/distilbert-sst2-shape
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import MODES, ROOT, table

PROBE = """
import json, resource, sys
from textclass import Classifier
clf = Classifier.from_pretrained(sys.argv[1], backend=sys.argv[2], dtype=sys.argv[3])
clf("warm up")
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    weights = sum(p.stat().st_size for p in Path(args.model).glob("*.safetensors"))
    env_path = str(ROOT / "src")
    base = subprocess.run([sys.executable, "-c", "import resource, numpy, tokenizers; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    rows = [["python + numpy + tokenizers", f"{int(base.stdout) / 1024:.0f}", "", ""]]
    for name, backend, dtype in MODES:
        command = [sys.executable, "-c", PROBE, args.model, backend, dtype]
        done = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": env_path},
                              check=True)  # fmt: skip
        peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_kb"] / 1024
        rows.append([f"textclass {name}", f"{peak:.0f}", f"{weights / 2**20:.0f}", f"{peak / (weights / 2**20):.1f}"])
    print(f"\n{Path(args.model).name}: peak RSS after load + one text\n")
    print(table(["mode", "peak RSS MiB", "weights MiB (safetensors)", "RSS / weights"], rows))


if __name__ == "__main__":
    main()
