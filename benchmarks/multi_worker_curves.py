"""Two MultiWorkerMirroredStrategy workers on loopback against one worker
(the same global batch of 8): the epoch losses of the classifier ``fit``,
the Seq2Seq ``fit`` with scheduled sampling and the TBPTT language model,
as a table and a PNG of the curves.

    python benchmarks/multi_worker_curves.py [--epochs 6]
        [--png artifacts/multi_worker.png]

It runs ``tests/scripts/multi_worker.py`` twice at once, workers 0 and 1
(each then trains some of the models alone, for the one-worker curves).
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "multi_worker.py"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--png", default="artifacts/multi_worker.png")
    args = parser.parse_args()
    sockets = [socket.socket() for _ in range(2)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = ",".join(str(h.getsockname()[1]) for h in sockets)
    for handle in sockets:
        handle.close()
    with tempfile.TemporaryDirectory() as directory:
        workers = [subprocess.Popen(
            [sys.executable, str(SCRIPT), str(index), ports, directory,
             str(args.epochs)], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
            for index in (1, 0)]
        outputs = [worker.communicate()[0] for worker in workers]
    if any(worker.returncode for worker in workers):
        sys.exit("a worker failed")
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    one = {**reports[0]["one_worker"], **reports[1]["one_worker"]}
    two = reports[1]["two_workers"]
    panels = {}
    for name in ("classifier", "seq2seq", "lm"):
        single, multi = one[name][1]["loss"], two[name][1]["loss"]
        print(f"{name}: epoch losses, one worker vs two workers")
        for epoch, (a, b) in enumerate(zip(single, multi), 1):
            print(f"  {epoch}  {a:.6f}  {b:.6f}  rel. diff "
                  f"{abs(a - b) / a:.2e}")
        panels[name] = {"one worker": {"loss": single},
                        "two workers": {"loss": multi}}
    from kerasrnn.diagnostics.plots import plot_history

    print("wrote", plot_history(panels, args.png,
                                title="2 workers vs 1, global batch 8"))


if __name__ == "__main__":
    main()
