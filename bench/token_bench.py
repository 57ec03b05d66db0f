"""Token auth's cost: ``dockyard registry`` in token mode beside the same registry without auth.

Run: ``python bench/token_bench.py [--seconds 4] [--pairs 5] [--hash-cost 10]``. Two registry
processes serve one filesystem root (the registry keeps all state in its backend, so both see
the same image), on loopback:

* **manifest GETs**: 16 keep-alive connections fetching one manifest by tag for ``--seconds``,
  without auth on one registry and with a bearer token (pull scope) on the other. Runs are
  paired (without, then with, ``--pairs`` times, so drift on the shared machine hits both
  alike); the ratio of each pair is reported and the median taken. Target: the token costs at
  most 10% of requests/s (median ratio >= 0.90).
* **tokens issued per second**: 4 threads asking ``GET /token`` with Basic credentials for
  ``--seconds`` (one bcrypt check each, at ``--hash-cost``), and the same with a refresh token
  (``POST`` grant_type=refresh_token: a signature check, no bcrypt).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_bench import free_port, manifest_gets, push_small_image, wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "dockyard-registry"
PASSWORD = "bench password"


def start(workdir: Path, label: str, auth: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = workdir / f"{label}.toml"
    config.write_text(
        f'[registry]\ndata-root = "{workdir}/{label}-state"\nlog-level = "warning"\n{auth}'
        f'[registries.filesystem]\nroot = "{workdir}/data"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if auth:
        subprocess.run(
            [sys.executable, "-m", "dockyard", "registry", "user", "add", "bench",
             "--config", str(config), "--password-stdin"],
            input=PASSWORD.encode(), env=env, check=True, capture_output=True,
        )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config),
         "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"{label}.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    wait_for(port, process)
    return process, port


def tokens_per_second(url: str, seconds: float, form: dict | None, threads: int = 4) -> float:
    """Tokens answered per second by ``threads`` clients: GET with Basic, or POST ``form``."""
    counts = [0] * threads
    until = time.perf_counter() + seconds

    def client(index: int) -> None:
        session = requests.Session()
        while time.perf_counter() < until:
            if form is None:
                reply = session.get(
                    f"{url}/token",
                    params={"service": SERVICE, "scope": "repository:bench/small:pull"},
                    auth=("bench", PASSWORD),
                    timeout=30,
                )
            else:
                reply = session.post(f"{url}/token", data=form, timeout=30)
            assert reply.status_code == 200, reply.text
            counts[index] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--hash-cost", type=int, default=10)
    args = parser.parse_args()
    token_auth = (
        'auth = "token"\ntoken-requests-per-minute = 100000000\n'
        f"[auth.token]\nhash-cost = {args.hash_cost}\nlifetime = 3600\n"
    )
    with tempfile.TemporaryDirectory(prefix="token-bench-") as temp:
        workdir = Path(temp)
        plain, plain_port = start(workdir, "plain", "")
        token, token_port = start(workdir, "token", token_auth)
        try:
            push_small_image(f"http://127.0.0.1:{plain_port}", "bench/small")
            url = f"http://127.0.0.1:{token_port}"
            reply = requests.get(
                f"{url}/token",
                params={"service": SERVICE, "scope": "repository:bench/small:pull",
                        "offline_token": "true"},
                auth=("bench", PASSWORD), timeout=30,
            )  # fmt: skip
            bearer = f"Authorization: Bearer {reply.json()['token']}\r\n"
            refresh = reply.json()["refresh_token"]
            manifest_gets(plain_port, "bench/small", 0.5)  # warm up both
            manifest_gets(token_port, "bench/small", 0.5, extra_headers=bearer)
            rows = []
            for _ in range(args.pairs):
                without, _p99 = manifest_gets(plain_port, "bench/small", args.seconds)
                with_token, _p99 = manifest_gets(
                    token_port, "bench/small", args.seconds, extra_headers=bearer
                )
                rows.append((without, with_token, with_token / without))
            basic = tokens_per_second(url, args.seconds, None)
            form = {"grant_type": "refresh_token", "refresh_token": refresh,
                    "service": SERVICE, "client_id": "bench"}  # fmt: skip
            refreshed = tokens_per_second(url, args.seconds, form)
        finally:
            for process in (plain, token):
                process.terminate()
                process.wait(30)
    print(f"{'pair':<6}{'no auth req/s':>15}{'bearer req/s':>15}{'ratio':>8}")
    for index, (without, with_token, ratio) in enumerate(rows, 1):
        print(f"{index:<6}{without:>15.0f}{with_token:>15.0f}{ratio:>8.3f}")
    median = statistics.median(ratio for _, _, ratio in rows)
    print(f"median ratio bearer/no-auth: {median:.3f}")
    print(f"target token verification <= 10% of req/s: {'met' if median >= 0.9 else 'MISSED'}")
    print(f"tokens/s, GET with Basic (bcrypt cost {args.hash_cost}): {basic:.1f}")
    print(f"tokens/s, POST refresh_token grant: {refreshed:.1f}")


if __name__ == "__main__":
    main()
