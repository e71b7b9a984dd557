"""The command's entry point (the console script and pipelines/stripe_pipeline.py): Arrow's
allocator is chosen before anything imports pyarrow, then the command runs."""

from __future__ import annotations

import os


def main() -> int:
    """Run the command; its exit code."""
    # Arrow picks its allocator when first imported: mimalloc, its default, keeps freed pages
    # (benchmarks/RESULTS.md). Set later, as tuning.prepare_process must for a process that
    # already imported pyarrow, the C++ parts keep the default.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from .command import main as command

    return command()
