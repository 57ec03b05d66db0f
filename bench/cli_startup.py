"""Start-up time of ``dockyard version --client`` beside the docker CLI's ``docker --version``.

Run: ``python bench/cli_startup.py [--runs N]``. Prints medians and the ratio; target: dockyard's
median under 80 ms on the CI machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from dockyard.testing.peers import beside_python


def median_ms(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    dockyard = beside_python("dockyard") or sys.exit(
        f"dockyard is not installed beside {sys.executable}, nor on PATH"
    )
    docker = shutil.which("docker")
    results = {
        "python -c pass (floor)": median_ms([sys.executable, "-c", "pass"], runs),
        "dockyard version --client": median_ms([dockyard, "version", "--client"], runs),
    }
    if docker:
        results["docker --version"] = median_ms([docker, "--version"], runs)
    for name, value in results.items():
        print(f"{name:<28} median {value:7.1f} ms  ({runs} runs)")
    ours = results["dockyard version --client"]
    if docker:
        print(f"ratio dockyard/docker: {ours / results['docker --version']:.2f}")
    print(f"target < 80 ms: {'met' if ours < 80 else 'MISSED'}")


if __name__ == "__main__":
    main()
