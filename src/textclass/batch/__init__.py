"""`textclass batch`: score large files, resumably, on one machine or on Ray Data.

readers.py (streaming CSV/TSV/JSONL/Parquet chunks) ─▶ score.py (decode, validate, Classifier, format rows)
─▶ writer.py (part files + atomic manifest, final merge); local.py and ray_engine.py drive them; job.py holds
the options, the resume fingerprint and the progress bar, and run.py dispatches a job to an engine.
"""

from textclass.batch.job import BatchJob, BatchResult
from textclass.batch.run import run_batch
from textclass.batch.score import ScoreOptions

__all__ = ["BatchJob", "BatchResult", "ScoreOptions", "run_batch"]
