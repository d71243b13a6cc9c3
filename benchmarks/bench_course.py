"""convlab against the Kaggle course's own code (Keras 3 port), whole processes, side by side.

Three workloads, each run as two commands timed from start to exit (imports, data loading,
training, and for convlab the MLflow run with its figures and model), interleaved over REPEATS
(which of the two goes first alternates), with each process's peak RSS (``wait4``) and accuracy:

1. from scratch: the course's digit CNN on a 10,000-row Kaggle CSV, 2 epochs, batch 128
   (target: convlab <= 1.0x the course's time, issue 28);
2. transfer: frozen MobileNet alpha 0.25 (weights from a local file) + softmax, SGD, batch 12,
   on ~400 real photos 300-2,600 px wide at 224x224, 10 epochs, no augmentation (<= 0.4x);
3. the same with flips and 10% shifts, 3 epochs (<= 0.7x).

The data is written by bench_data.py into ``--data`` (kept, reused) or a temporary folder. The
MLflow store is created once before timing (its one-off cost is printed). ``--profile DIR``
also runs each convlab command once under py-spy (every thread, waits included: wall-clock
seconds), writes its collapsed stacks there and prints where the main thread's seconds went
(py-spy, not pyinstrument: convlab ends without the interpreter's teardown, before an in-process
profiler writes its report).
``--tree DIR`` also times convlab from another checkout (``PYTHONPATH=DIR``, e.g. the code
before a change) in the same interleaved rounds; convlab itself runs from this script's checkout.

    python benchmarks/bench_course.py [--repeats 3] [--data DIR] [--profile DIR]
    python benchmarks/bench_course.py --only digits --repeats 5   # one workload (digits|frozen|augmented)
    python benchmarks/bench_course.py --quick      # smoke run: small data, 1 epoch, 1 repeat
    python benchmarks/bench_course.py --only digits --repeats 5 --tree ../before  # before/after

2026-12-07 (issue 28): not re-measured. At load average 14 to 18 from other work, writing the
data took 750 s and the untimed warm-up run 273 s; the timed rounds (about 150 s a command)
could not end in the session's time. The last figures (0.91x, 2026-11-26) are in the README.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_data beside this script; convlab itself is installed

import bench_data  # noqa: E402

from pipeline.tracking import contract  # noqa: E402

WORKLOADS = ("digits", "frozen", "augmented")  # the order of workloads()' list


@dataclasses.dataclass
class Workload:
    name: str
    target: float  # the ratio convlab must reach
    course: list[str]
    convlab: list[str]
    samples: dict[str, list[dict]] = dataclasses.field(default_factory=lambda: {"course": [], "convlab": []})
    env: dict[str, dict] = dataclasses.field(default_factory=dict)  # a side's environment, if not ours


def workloads(paths: dict[str, Path], epochs: tuple[int, int, int], uri: str) -> list[Workload]:
    course = [sys.executable, str(HERE / "course_code.py")]
    convlab = [sys.executable, "-m", "pipeline", f"tracking.uri={uri}"]
    transfer = [
        "experiment=transfer_learning",
        "backbone=mobilenet",
        "backbone.alpha=0.25",
        f"backbone.weights={paths['weights']}",
        f"dataset.path={paths['photos']}",
    ]
    scratch, frozen, augmented = epochs
    transfer_course = [*course, "transfer", str(paths["photos"]), str(paths["weights"])]
    return [
        Workload(
            f"from-scratch CNN, digit CSV, {scratch} epochs",
            1.0,
            [*course, "digits", str(paths["csv"]), "--epochs", str(scratch)],
            [
                *convlab,
                "dataset=digit_recognizer",
                f"dataset.path={paths['csv']}",
                f"trainer.epochs={scratch}",
            ],
        ),
        Workload(
            f"frozen MobileNet, photos 224x224, {frozen} epochs",
            0.4,
            [*transfer_course, "--epochs", str(frozen)],
            [*convlab, *transfer, f"trainer.epochs={frozen}"],
        ),
        Workload(
            f"the same + flip/shift, {augmented} epochs",
            0.7,
            [*transfer_course, "--epochs", str(augmented), "--augment"],
            [*convlab, *transfer, "augmentation=flip_shift", f"trainer.epochs={augmented}"],
        ),
    ]


def measure(command: list[str], cwd: str, env: dict | None = None) -> dict:
    """Runs ``command`` to its end: seconds, peak RSS (MiB, from ``wait4``) and its stdout."""
    env = env or {**os.environ, "PYTHONPATH": str(HERE.parent)}  # convlab from this checkout
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        stdout.seek(0), stderr.seek(0)
        if process.returncode:
            raise SystemExit(f"failed: {' '.join(command)}\n{stderr.read().decode()[-3000:]}")
        return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout.read().decode()}


def convlab_accuracy(uri: str) -> dict:
    """The final and best ``val_accuracy`` of the latest convlab run in the store."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)[0]
    metrics = run.data.metrics
    return {
        "val_accuracy": metrics[contract.VAL_ACCURACY],
        "best_val_accuracy": metrics[contract.BEST_VAL_ACCURACY],
    }


def run_all(jobs: list[Workload], repeats: int, cwd: str, uri: str) -> None:
    for repeat in range(repeats):
        for job in jobs:
            names = list(job.samples)  # course, convlab, convlab @tree: the order rotates
            for side in names[repeat % len(names) :] + names[: repeat % len(names)]:
                command = job.course if side == "course" else job.convlab
                sample = measure(command, cwd, job.env.get(side))
                if side == "course":
                    sample.update(json.loads(sample.pop("stdout").strip().splitlines()[-1]))
                else:
                    sample.pop("stdout")
                    sample.update(convlab_accuracy(uri))
                job.samples[side].append(sample)
                print(f"  [{repeat + 1}/{repeats}] {job.name}: {side} {sample['seconds']:.1f} s", flush=True)


def profile(jobs: list[Workload], cwd: str, out: Path) -> None:
    """Each convlab command once under py-spy: collapsed stacks in ``out/<n>.txt``, and the
    main thread's seconds in convlab's own functions (inclusive), largest first."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    for number, job in enumerate(jobs, 1):
        target = out / f"{number}.txt"
        command = [spy, "record", "--idle", "--threads", "-r", "50", "-f", "raw", "-o", str(target), "--"]
        subprocess.run([*command, *job.convlab], cwd=cwd, check=True, capture_output=True)
        print(f"  profile of {job.name}: {target}")
        seconds: dict[str, float] = {}
        for line in target.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if "MainThread" not in frames[0]:
                continue
            for name in {re.sub(r":\d+\)$", ")", f) for f in frames[1:] if "pipeline/" in f}:
                seconds[name] = seconds.get(name, 0.0) + int(count) / 50
        for name, value in sorted(seconds.items(), key=lambda item: -item[1])[:25]:
            print(f"    {value:7.2f} s  {name}")


def report(jobs: list[Workload], repeats: int) -> None:
    def median(side: dict, key: str) -> float:
        return statistics.median(s[key] for s in side)

    print(f"\nwhole processes, medians of {repeats} interleaved repeats, {os.cpu_count()} CPUs")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = f"{'workload':<44}{'course s':>9}{'convlab s':>10}{'ratio':>7}{'target':>8}"
    print(header + f"{'RSS MiB course/convlab':>24}   val acc course/convlab (best)")
    for job in jobs:
        course = job.samples["course"]
        for side in [name for name in job.samples if name != "course"]:
            convlab = job.samples[side]
            ratio = median(convlab, "seconds") / median(course, "seconds")
            pairs = statistics.median(c["seconds"] / k["seconds"] for c, k in zip(convlab, course))
            mark = "ok" if ratio <= job.target else "MISSED"
            rss = f"{median(course, 'rss_mib'):.0f} / {median(convlab, 'rss_mib'):.0f}"
            accuracy = (
                f"{median(course, 'val_accuracy'):.3f} ({median(course, 'best_val_accuracy'):.3f}) / "
                f"{median(convlab, 'val_accuracy'):.3f} ({median(convlab, 'best_val_accuracy'):.3f})"
            )
            name = job.name if side == "convlab" else f"  {side}"
            line = f"{name:<44}{median(course, 'seconds'):>9.1f}{median(convlab, 'seconds'):>10.1f}"
            print(line + f"{ratio:>6.2f}x{job.target:>6.1f}x {mark:<6}{rss:>16}   {accuracy}"
                  f"   (median of per-round ratios {pairs:.2f}x)")  # fmt: skip
        spread = [f"{side} {min(s['seconds'] for s in v):.1f}-{max(s['seconds'] for s in v):.1f} s"
                  for side, v in job.samples.items()]  # fmt: skip
        print(f"{'':<44}range: {', '.join(spread)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="where the generated data is kept (default: a temp folder)")
    parser.add_argument(
        "--profile", type=Path, help="also profile each convlab command once, into this folder"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2,000 rows, 60 photos, 1 epoch, 1 repeat"
    )
    parser.add_argument("--only", choices=WORKLOADS, action="append", help="run only these workloads")
    parser.add_argument("--tree", type=Path, help="also time convlab from this checkout (PYTHONPATH)")
    args = parser.parse_args()
    rows, photos, epochs = (2000, 60, (1, 1, 1)) if args.quick else (10_000, 400, (2, 10, 3))
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        started = time.perf_counter()
        paths = bench_data.prepare(data, rows, photos)
        print(f"data in {data} ({time.perf_counter() - started:.1f} s to prepare)")
        uri = f"sqlite:///{tmp}/mlflow.db"
        jobs = workloads(paths, epochs, uri)
        if args.only:
            jobs = [job for key, job in zip(WORKLOADS, jobs) if key in args.only]
        if args.tree is not None:
            for job in jobs:
                job.samples[f"convlab @{args.tree.name}"] = []
                job.env[f"convlab @{args.tree.name}"] = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
        warm_up = [*workloads(paths, epochs, uri)[0].convlab, "trainer.epochs=1", "tracking.log_model=false"]
        first = measure(warm_up, tmp)
        print(f"creating the MLflow store (one untimed convlab run, 1 epoch): {first['seconds']:.1f} s")
        if args.profile:
            profile(jobs, tmp, args.profile)
        run_all(jobs, repeats, tmp, uri)
    report(jobs, repeats)


if __name__ == "__main__":
    main()
