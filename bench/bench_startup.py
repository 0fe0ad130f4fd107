"""Start-up cost: `import turnspec` and `turnspec --help` wall time, against `import transformers`.

Each figure is the median of several fresh interpreter runs, minus the median of an empty interpreter run.
Run: python -m bench.bench_startup
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.common import table, write_result


def wall(cmd: list[str], runs: int = 7) -> float:
    subprocess.run(cmd, capture_output=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> dict:
    py = sys.executable
    base = wall([py, "-c", "pass"])
    figures = {
        "import turnspec": wall([py, "-c", "import turnspec"]) - base,
        "import turnspec; turnspec.load (render path)": wall([py, "-c", "import turnspec.spec"]) - base,
        "turnspec --help": wall([py, "-m", "turnspec.cli", "--help"]) - base,
        "import transformers": wall([py, "-c", "import transformers"], runs=5) - base,
    }
    ref = figures["import transformers"]
    rows = [[name, f"{sec * 1000:.0f} ms", f"{ref / sec:.1f}x faster" if sec > 0 else "-"] for name, sec in figures.items()]
    print(f"(empty interpreter: {base * 1000:.0f} ms, subtracted)")
    print(table(rows, ["what", "median wall time", "vs import transformers"]))
    path = write_result("startup", {"seconds": figures, "empty_interpreter_s": base})
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
