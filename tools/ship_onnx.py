"""Write the ONNX graph a bundled model ships: `model.fp32.onnx` beside its checkpoint, reading its weights from
the checkpoint's safetensors files (onnx/link.py; ~0.1 MB, no second copy of the weights).

    python tools/ship_onnx.py src/textclass/bundled/sentiment-en

Run it whenever the bundled model's weights or config change, and commit the result: textclass trusts a shipped
graph as it is (onnx/cache.py) and tests/onnx/test_cache.py checks it against a fresh export. Only the BERT
lineage (a torch-free graph builder) and plain safetensors files (not symlinks) can be shipped this way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textclass.checkpoint import open_checkpoint
from textclass.onnx.export import export_onnx


def main(folder: str) -> None:
    checkpoint = open_checkpoint(folder)
    if checkpoint.weight_format != "safetensors" or any(path.is_symlink() for path in checkpoint.weight_files):
        sys.exit(f"error: {folder}: only plain safetensors files can be linked from a shipped graph")
    out = Path(folder) / "model.fp32.onnx"
    export_onnx(checkpoint, out, "fp32", link=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
