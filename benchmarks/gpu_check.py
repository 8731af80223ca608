"""`make gpu-check`: the built-in trainers on a GPU, through the trainer contract, without Ray.

For each built-in trainer it trains the same config with `trainers.workercontext.LocalContext`
on the CPU, on the CPU data-parallel (gloo, world size 1), on `cuda`, and on `cuda`
data-parallel (NCCL, world size 1), and prints training samples/s against the CPU run. The
rate is taken over epochs 2..N (training rows x epochs / the time between the first and the
last epoch's report), so process start, model set-up and the first epoch's warm-up are left
out. Then it checks that each run's final checkpoint goes the way a trial's goes to serving
(saved as the trial saves it, loaded with map_location="cpu", `model_state` -> `build_model`
on the CPU -> `load_state_dict` -> `predict`) and that the CPU model's predictions equal the
trained model's own on its device, and its validation accuracy (or RMSE) the one reported.

It needs torch and numpy, and imports our `trainers` modules, which import `anneal.errors` and
`anneal.spec` (pydantic, grpc, protobuf, PyYAML). On a machine with a CUDA build of torch and
nothing else of ours, `--wheels DIR` puts the wheels in DIR that suit this Python on the path
first; `--data-dir DIR` reads the bundled datasets from copies of scikit-learn's files
(`digits.csv.gz`, `diabetes_data_raw.csv.gz`, `diabetes_target.csv.gz`). Without scikit-learn
or those files it trains on synthetic rows of the same shapes, and says so.

Without CUDA it runs the CPU parts, says that the GPU parts were skipped, and exits 0. It
exits 1 when a check fails. The figures go to a JSON file (`--json`, and `$OUT/gpu_check.json`
when OUT is set), written after each run so a run cut short keeps what it had.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import gzip
import io
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "gpu_check.json"
TRAINERS = ("mlp_classifier", "mlp_regressor", "quadratic")
DATASET_OF = {"mlp_classifier": "digits", "mlp_regressor": "diabetes", "quadratic": "digits"}
# name -> (features file, target file or None when the label is the last column, delimiter)
SKLEARN_FILES: dict[str, tuple[str, str | None, str | None]] = {
    "digits": ("digits.csv.gz", None, ","),
    "diabetes": ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz", None),
}
SYNTHETIC_SHAPES = {"digits": (1797, 64, 10), "diabetes": (442, 10, 0)}  # rows, features, classes (0: regression)
# Predictions on the CPU against the trained model's own on its device.
RTOL, ATOL = 1e-4, 1e-5


def use_wheels(directory: Path) -> list[str]:
    """Extracts the wheels in `directory` that suit this interpreter into a temporary folder
    put first on sys.path (no pip needed); returns their file names."""
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    machine = platform.machine()
    target = Path(tempfile.mkdtemp(prefix="gpu-check-wheels-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    used = []
    for wheel in sorted(directory.glob("*.whl")):
        python_tags, abi, plat = wheel.stem.split("-")[-3:]
        pythons = python_tags.split(".")
        fits_python = (
            "py3" in pythons
            or here in pythons
            or (abi == "abi3" and any(p.startswith("cp3") and int(p[3:]) <= sys.version_info.minor for p in pythons))
        )
        fits_platform = plat == "any" or (sys.platform == "linux" and "linux" in plat and machine in plat)
        if fits_python and fits_platform:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
            used.append(wheel.name)
    google = target / "google"
    if google.is_dir() and not (google / "__init__.py").exists():
        # protobuf's `google` is a namespace package: a `google` package with an __init__
        # elsewhere on the path would win over it whatever the order. This one comes first
        # and extends itself with the others.
        (google / "__init__.py").write_text("__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    sys.path.insert(0, str(target))
    return used


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each MLP run (default 30)")
    parser.add_argument("--hidden-size", type=int, default=1024)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="3 epochs, hidden size 256: to check the script runs")
    parser.add_argument("--data-dir", type=Path, help="copies of scikit-learn's digits and diabetes files")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels (pydantic, ...) to import from first")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the figures ({DEFAULT_JSON})")
    parser.add_argument("--no-ddp", action="store_true", help="skip the torch.distributed runs")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.hidden_size = min(args.epochs, 3), min(args.hidden_size, 256)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the rate is taken over epochs 2..N")
    return args


def main() -> int:
    args = parse_args()
    began = time.monotonic()
    wheels = use_wheels(args.wheels) if args.wheels else []
    sys.path.insert(0, str(ROOT))
    # After the wheels: torch and our modules must find them first.
    import numpy as np
    import torch

    from trainers.builtins import BUILT_INS
    from trainers.contract import Splits, Task
    from trainers.datasets import split_arrays
    from trainers.workercontext import LocalContext

    cuda = torch.cuda.is_available()
    default_threads = torch.get_num_threads()
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "cpus": os.cpu_count(),
            "torch_threads": default_threads,
            "platform": platform.platform(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wheels": wheels,
        },
        "settings": {
            "epochs": args.epochs,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "batch_size": args.batch_size,
            "quick": args.quick,
        },
        "datasets": {},
        "runs": [],
        "probes": {},
        "failures": [],
        "gpu_skipped": not cuda,
    }
    outputs = [args.json] + ([Path(os.environ["OUT"]) / "gpu_check.json"] if os.environ.get("OUT") else [])

    def save() -> None:
        report["seconds"] = round(time.monotonic() - began, 1)
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2, default=str))

    def fail(message: str) -> None:
        print(f"FAILED: {message}", flush=True)
        report["failures"].append(message)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{'CUDA ' + str(torch.version.cuda) + ' on ' + torch.cuda.get_device_name(0) if cuda else 'no CUDA'}, "
        f"{os.cpu_count()} CPUs ({default_threads} torch threads)",
        flush=True,
    )

    if wheels:
        print(f"from --wheels: {', '.join(wheels)}", flush=True)

    # --- data -------------------------------------------------------------------------------
    def arrays(name: str) -> tuple[np.ndarray, np.ndarray, str]:
        if args.data_dir is not None:
            features, target, delimiter = SKLEARN_FILES[name]
            paths = [args.data_dir / features] + ([args.data_dir / target] if target else [])
            if all(p.is_file() for p in paths):
                tables = []
                for p in paths:
                    with gzip.open(p, "rt") as handle:
                        tables.append(np.loadtxt(handle, delimiter=delimiter, dtype=np.float64, ndmin=2))
                if target is None:
                    return tables[0][:, :-1].astype(np.float32), tables[0][:, -1].astype(np.int64), str(paths[0])
                return tables[0].astype(np.float32), tables[1].astype(np.float32).reshape(-1), str(args.data_dir)
        try:
            from trainers.datasets import load_arrays

            x, y = load_arrays(name)
            return x, y, "scikit-learn's bundled files"
        except (ModuleNotFoundError, FileNotFoundError):
            pass
        rows, width, classes = SYNTHETIC_SHAPES[name]
        rng = np.random.default_rng(0)
        x = rng.normal(size=(rows, width)).astype(np.float32)
        w = rng.normal(size=(width, max(classes, 1))).astype(np.float32)
        if classes:
            return x, (x @ w).argmax(axis=1).astype(np.int64), "SYNTHETIC rows (no scikit-learn, no --data-dir)"
        return (
            x,
            (x @ w[:, 0] + rng.normal(size=rows).astype(np.float32)).astype(np.float32),
            "SYNTHETIC rows (no scikit-learn, no --data-dir)",
        )

    splits: dict[str, Splits] = {}
    for name in sorted(set(DATASET_OF.values())):
        x, y, source = arrays(name)
        task = Task.REGRESSION if name == "diabetes" else Task.CLASSIFICATION
        splits[name] = split_arrays(x, y, 0.2, 0.2, 0, task)
        s = splits[name]
        report["datasets"][name] = {"source": source, "train": len(s.y_train), "val": len(s.y_val)}
        print(f"{name}: {len(s.y_train)} training rows, {len(s.y_val)} validation rows, from {source}", flush=True)

    # --- runs -------------------------------------------------------------------------------
    class TimedContext(LocalContext):
        """Stamps each report, and remembers what prepare_model made of the model."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.stamps: list[float] = []
            self.prepared: str = ""

        def report(self, metrics: Any, checkpoint: Any = None, *, final: bool = False) -> None:
            self.stamps.append(time.perf_counter())
            super().report(metrics, checkpoint, final=final)

        def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
            prepared = super().prepare_model(model)
            self.prepared = type(prepared).__name__
            return prepared

    def config_of(trainer_name: str) -> dict[str, Any]:
        if trainer_name == "quadratic":
            return {"epochs": args.epochs, "x": 0.1, "y": 0.1}
        return {
            "epochs": args.epochs,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "batch_size": args.batch_size,
            "lr": 1e-3,  # the regressor's default 1e-2 makes its val_r2 jump between epochs
            "seed": 0,
        }

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port

    variants: list[tuple[str, str, str | None]] = [("cpu", "cpu", None)]
    if not args.no_ddp:
        variants.append(("cpu+gloo", "cpu", "gloo"))
    if cuda:
        variants.append(("cuda", "cuda:0", None))
        if not args.no_ddp:
            variants.append(("cuda+nccl", "cuda:0", "nccl"))
        torch.ones(64, 64, device="cuda:0").matmul(torch.ones(64, 64, device="cuda:0")).sum().item()  # CUDA set-up

    def train(trainer_name: str, label: str, device: str, backend: str | None) -> dict[str, Any]:
        info = BUILT_INS[trainer_name]
        trainer = info.load()
        data = splits[DATASET_OF[trainer_name]]
        config = config_of(trainer_name)
        gpu_ids = (0,) if device.startswith("cuda") else ()
        if backend is not None:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
            if backend == "nccl":
                torch.cuda.set_device(0)
            torch.distributed.init_process_group(backend, rank=0, world_size=1, timeout=datetime.timedelta(seconds=120))
        torch.set_num_threads(default_threads)
        context = TimedContext(config, data, device, num_threads=default_threads, gpu_ids=gpu_ids)
        started = time.perf_counter()
        try:
            trainer.train(context)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        finally:
            if backend is not None:
                torch.distributed.destroy_process_group()
        total = time.perf_counter() - started
        stamps = context.stamps
        rows = len(data.y_train)
        run: dict[str, Any] = {
            "trainer": trainer_name,
            "run": label,
            "device": device,
            "backend": backend,
            "epochs": len(context.reports),
            "train_rows": rows,
            "prepared_model": context.prepared,
            "seconds_total": round(total, 3),
            "seconds_first_epoch": round(stamps[0] - started, 3) if stamps else None,
            "samples_per_s": None,
            "final": context.reports[-1] if context.reports else {},
        }
        if trainer_name != "quadratic" and len(stamps) >= 2:  # quadratic trains nothing: no rate
            run["samples_per_s"] = round(rows * (len(stamps) - 1) / (stamps[-1] - stamps[0]), 1)
        run["checks"] = check(trainer_name, trainer, info.task, config, data, context, device, run)
        return run

    def check(
        trainer_name: str,
        trainer: Any,
        task: Any,
        config: dict[str, Any],
        data: Splits,
        context: Any,
        device: str,
        run: dict[str, Any],
    ) -> dict[str, Any]:
        where = f"{trainer_name} {run['run']}"
        checks: dict[str, Any] = {}
        if len(context.reports) != args.epochs:
            fail(f"{where}: {len(context.reports)} reports for {args.epochs} epochs")
        if any(not math.isfinite(v) for r in context.reports for v in r.values()):
            fail(f"{where}: a reported metric is not finite: {context.reports[-1]}")
        if run["backend"] is not None and trainer_name != "quadratic" and context.prepared != "DistributedDataParallel":
            fail(f"{where}: prepare_model gave {context.prepared}, not DistributedDataParallel")
        if context.checkpoint is None:
            fail(f"{where}: no checkpoint reported")
            return checks
        state = trainer.model_state(context.checkpoint)
        checks["weights_on"] = sorted({str(t.device) for t in state.values()})
        if trainer_name != "quadratic" and checks["weights_on"] != [device]:
            fail(f"{where}: trained weights are on {checks['weights_on']}, not {device}")

        # The trained model on its own device: the reference.
        trained = trainer.build_model(config, data.shape).to(device)
        trained.load_state_dict(state)
        x_val = torch.from_numpy(data.x_val)
        expected = trainer.predict(trained, x_val.to(device)).cpu()

        # As a trial and serving do it: the checkpoint saved, loaded to the CPU; the weights
        # saved as the model package holds them, loaded to the CPU; the model rebuilt there.
        saved = io.BytesIO()
        torch.save({"state": context.checkpoint}, saved)
        saved.seek(0)
        loaded = torch.load(saved, weights_only=True, map_location="cpu")["state"]
        package = io.BytesIO()
        torch.save(dict(trainer.model_state(loaded)), package)
        package.seek(0)
        weights = torch.load(package, weights_only=True, map_location="cpu")
        model = trainer.build_model(config, data.shape)
        model.load_state_dict(weights)
        on = {str(p.device) for p in list(model.parameters()) + list(model.buffers())}
        if on != {"cpu"}:
            fail(f"{where}: the model rebuilt for serving has tensors on {sorted(on)}")
        predicted = trainer.predict(model, x_val)
        difference = float((predicted - expected).abs().max())
        checks["max_abs_difference"] = difference
        if predicted.shape != expected.shape or not torch.allclose(predicted, expected, rtol=RTOL, atol=ATOL):
            fail(f"{where}: CPU predictions differ from the {device} model's by up to {difference:.3g}")

        final = context.reports[-1]
        if task is Task.CLASSIFICATION and "val_accuracy" in final:
            labels = predicted.argmax(dim=1).numpy()
            correct = int((labels == data.y_val).sum())
            reported = final["val_accuracy"]
            checks["cpu_val_accuracy"] = correct / len(data.y_val)
            checks["reported_val_accuracy"] = reported
            if abs(correct - reported * len(data.y_val)) > 0.5:
                fail(f"{where}: val accuracy on the CPU {correct}/{len(data.y_val)}, reported {reported:.6f}")
        elif task is Task.REGRESSION and "val_rmse" in final:
            truth = data.y_val.reshape(len(data.y_val), -1).astype(np.float64)
            rmse = float(np.sqrt(((predicted.numpy().astype(np.float64).reshape(truth.shape) - truth) ** 2).mean()))
            checks["cpu_val_rmse"] = rmse
            checks["reported_val_rmse"] = final["val_rmse"]
            if not math.isclose(rmse, final["val_rmse"], rel_tol=1e-4):
                fail(f"{where}: val RMSE on the CPU {rmse:.6f}, reported {final['val_rmse']:.6f}")
        return checks

    # Every trainer on one device before the next device; NCCL last, so that a hang there (its
    # watchdog ends the process) leaves the other runs' figures in the JSON.
    for label, device, backend in variants:
        for trainer_name in TRAINERS:
            print(f"training {trainer_name} on {label} ...", flush=True)
            try:
                run = train(trainer_name, label, device, backend)
            except Exception as error:  # one broken run must not hide the others' figures
                fail(f"{trainer_name} {label}: {type(error).__name__}: {error}")
                report["runs"].append({"trainer": trainer_name, "run": label, "error": repr(error)})
                save()
                continue
            report["runs"].append(run)
            save()

    # The same config on two devices starts from the same weights and batches: its final
    # metrics may drift apart with rounding, not far.
    by_run = {(r["trainer"], r["run"]): r for r in report["runs"] if "error" not in r}
    for (trainer_name, label), run in by_run.items():
        cpu = by_run.get((trainer_name, "cpu"))
        if label == "cpu" or cpu is None:
            continue
        for metric, tolerance in (("val_accuracy", 0.05), ("val_r2", 0.15)):
            here, there = run["final"].get(metric), cpu["final"].get(metric)
            if here is not None and there is not None and abs(here - there) > tolerance:
                fail(f"{trainer_name} {label}: {metric} {here:.4f}, on cpu {there:.4f}")

    if cuda:
        report["probes"]["cpu_only_checkpoint_load"] = probe_cpu_only_load(torch, splits, BUILT_INS, LocalContext)
    save()
    print_table(report)
    print(f"\ngpu check took {time.monotonic() - began:.0f} s; figures in {', '.join(map(str, outputs))}")
    if not cuda:
        print(
            "\nCUDA is not available here: the GPU parts (cuda and cuda+nccl training, the GPU -> CPU "
            "serving check) were SKIPPED; the CPU parts ran."
        )
    if report["failures"]:
        print(f"\n{len(report['failures'])} check(s) FAILED:")
        for failure in report["failures"]:
            print(f"  - {failure}")
        return 1
    print("\nall checks passed")
    return 0


def probe_cpu_only_load(
    torch: Any, splits: Any, built_ins: Any, local_context: Any, device: str = "cuda:0"
) -> dict[str, str]:
    """How a process without CUDA (a driver on a CPU-only head node) loads a checkpoint trained
    on the GPU, saved as a trial saves it: with `torch.load(weights_only=True)` as is, and with
    map_location="cpu". Reported, not a check: serving passes map_location, a driver may not."""
    trainer = built_ins["mlp_classifier"].load()
    context = local_context({"epochs": 1, "hidden_size": 8, "num_layers": 1}, splits["digits"], device, gpu_ids=(0,))
    trainer.train(context)
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-ckpt-"))
    try:
        torch.save({"state": context.checkpoint}, folder / "checkpoint.pt")
        code = (
            "import sys, torch\n"
            "for kw in ({}, {'map_location': 'cpu'}):\n"
            "    try:\n"
            "        torch.load(sys.argv[1], weights_only=True, **kw); print('ok')\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__ + ': ' + str(e).splitlines()[0])\n"
        )
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder / "checkpoint.pt")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = (done.stdout.strip().splitlines() + ["(no answer: " + done.stderr.strip()[-300:] + ")"] * 2)[:2]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {"without_map_location": lines[0], "with_map_location_cpu": lines[1]}
    print(f"\nA GPU-trained trial checkpoint loaded in a process without CUDA: {result}")
    return result


def print_table(report: dict[str, Any]) -> None:
    runs = [r for r in report["runs"] if "error" not in r]
    cpu_rate = {r["trainer"]: r["samples_per_s"] for r in runs if r["run"] == "cpu"}
    s = report["settings"]
    print(
        f"\nTraining, {s['epochs']} epochs, hidden {s['hidden_size']} x {s['num_layers']} layers, "
        f"batch {s['batch_size']}; samples/s over epochs 2..N:\n"
    )
    print("| trainer | run | samples/s | x cpu | first epoch s | total s | final val metrics | CPU reload max diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(report["runs"], key=lambda r: TRAINERS.index(r["trainer"])):
        if "error" in r:
            print(f"| {r['trainer']} | {r['run']} | ERROR | | | | {r['error'][:80]} | |")
            continue
        rate = r["samples_per_s"]
        base = cpu_rate.get(r["trainer"])
        ratio = f"{rate / base:.1f}" if rate and base else "–"
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in r["final"].items() if k.startswith("val_") and k != "val_loss"
        ) or ", ".join(f"{k} {v:.4g}" for k, v in r["final"].items() if k == "loss")
        diff = r["checks"].get("max_abs_difference")
        print(
            f"| {r['trainer']} | {r['run']} | {f'{rate:,.0f}' if rate else '–'} | {ratio} | "
            f"{r['seconds_first_epoch']:.2f} | {r['seconds_total']:.2f} | {metrics} | "
            f"{f'{diff:.1e}' if diff is not None else '–'} |"
        )


if __name__ == "__main__":
    sys.exit(main())
