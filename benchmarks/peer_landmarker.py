"""A peer side by side: cephalo and the `landmarker` package (PyPI), same data, same wall clock.

Both train on the ISBI 2015 TrainingData images (001-150), one after the other on this machine,
for the same wall-clock budget; both predict Test1 (151-300) from the weights they had at
``--marks`` equally spaced wall-clock marks; every prediction is scored with cephalo's metric code
(``cephalo.evaluate.metrics``: radial error in mm with each image's spacing, 0.1 mm/px; MRE,
SDR). landmarker's own ``point_error`` is computed on the final predictions of both sides and
must agree with cephalo's MRE.

* cephalo: the CLI with the real-data profile's source-model settings (profiles/real.yaml:
  ``cephalo index``, ``cephalo preprocess --variant letterbox384``, ``cephalo train --stage source``:
  timm:hrnet_w18_small, Gaussian targets, DARK decoding). ``cephalo train`` has no wall-clock
  limit, so its epochs are chosen from the budget (less 15 s of start-up) and the seconds one
  epoch takes on this machine (``--cephalo-sec-per-epoch``; ``--cephalo-epochs`` overrides), so
  that its cosine schedule ends within the budget; the run is stopped at the budget if it is
  still going. Snapshots: a copy of ``last.pt`` (the weights after the last
  finished epoch) at each mark; its training time is the time that ``last.pt`` was written.
* landmarker: benchmarks/peer/landmarker_side.py in the peer's own environment (``.venv-peer``,
  benchmarks/peer/setup.sh), with the recipe of landmarker's ISBI 2015 example (SCN, adaptive
  Gaussian heatmaps, local soft-argmax) at ``--peer-size`` instead of 512 px.

Training time counts the training process only (cephalo: from the start of ``cephalo train``,
its per-epoch validation included; landmarker: from the first step, its per-epoch validation
included, image loading and resizing excluded). Indexing, preprocessing and the Test1
predictions are not counted.

Full comparison (about 28 min on 2 idle CPU cores; the SCN's Test1 predictions, about 2.5 min
per mark, are what limits the marks)::

    python benchmarks/peer_landmarker.py --budget-min 8 --marks 3 --out benchmarks/results/peer

Smoke (12 training and 4 Test1 images, about 1 min of training per side, small inputs)::

    python benchmarks/peer_landmarker.py --smoke --out /tmp/peer-smoke

Writes ``OUT/peer-landmarker-<date>.json`` and ``.md`` (the table); the working files
(index, variant, checkpoints, predictions) go to ``OUT/work-<date>/`` (``--keep-work`` keeps them,
otherwise the checkpoints are removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import machine_info  # noqa: E402

THRESHOLDS_MM = (1.5, 2.0)  # time-to-reach targets on Test1 (MRE, mm)
SMOKE = {
    "n_train": 12,
    "n_test": 4,
    "budget_min": 1.0,
    "marks": 2,
    "cephalo_variant": "letterbox256",
    "peer_size": 128,
    "cephalo_sec_per_epoch": 10.0,
}
CEPHALO = [sys.executable, "-m", "cephalo"]  # the CLI of the environment running this script
DEFAULT_SEC_PER_EPOCH = 47.0  # profiles/real.yaml source stage: 40 epochs in 1894 s on 2 cores (letterbox384)
STARTUP_S = 15.0  # `cephalo train` start-up (imports, model, variant) before its first epoch


def log(msg: str) -> None:
    print(f"[peer {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def default_isbi_root() -> Path:
    shared = os.environ.get("CEPHALO_SHARED")
    base = Path(shared) if shared else REPO.parent / "shared"
    return base / "data" / "isbi2015"


def run(cmd: list[str], log_path: Path, env: dict | None = None) -> float:
    """Run a command to completion (output to ``log_path``); seconds taken. Raises on failure."""
    t = time.perf_counter()
    with open(log_path, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if rc != 0:
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"command failed ({rc}): {shlex.join(cmd)}\n--- {log_path} ---\n{tail}")
    return time.perf_counter() - t


# --------------------------------------------------------------------------- data


def prepare_data(a, work: Path) -> dict:
    """Index ISBI (cephalo CLI), optionally subset it, preprocess the cephalo variant, write the manifest."""
    import pandas as pd
    import yaml

    params = yaml.safe_load((REPO / "profiles" / "real.yaml").read_text())
    params.setdefault("tracking", {})["enabled"] = False
    params["train"]["tracking"] = False
    params["train"]["stages"]["source"]["epochs"] = int(a.cephalo_epochs_resolved)
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    index = work / "index.parquet"
    t_index = 0.0
    if not index.exists():
        t_index = run(
            [
                *CEPHALO,
                "index",
                "--dataset",
                "isbi2015",
                "--root",
                str(a.isbi_root),
                "--out",
                str(index),
                "--report",
                str(work / "quality"),
                "--params",
                str(params_path),
            ],
            work / "index.log",
        )
    df = pd.read_parquet(index)
    train_ids = sorted(df.loc[df.split == "train", "image_id"].unique())
    test_ids = sorted(df.loc[df.split == "test1", "image_id"].unique())
    if a.n_train:
        train_ids = train_ids[: a.n_train]
    if a.n_test:
        test_ids = test_ids[: a.n_test]
    sub = df[df.image_id.isin(set(train_ids) | set(test_ids))]
    used_index = index
    if len(sub) != len(df):
        from cephalo.index.core import read_index_metadata, write_index

        used_index = work / "index_subset.parquet"
        meta = read_index_metadata(index)
        meta["subset"] = {"n_train": len(train_ids), "n_test1": len(test_ids)}
        write_index(sub.reset_index(drop=True), used_index, meta)

    variant = work / "variant"
    t_pre = 0.0
    if not (variant / "variant.json").exists():
        t_pre = run(
            [
                *CEPHALO,
                "preprocess",
                "--index",
                str(used_index),
                "--variant",
                a.cephalo_variant,
                "--out",
                str(variant),
                "--params",
                str(params_path),
            ],
            work / "preprocess.log",
        )

    def items(ids: list[str]) -> list[dict]:
        out = []
        for iid in ids:
            rows = sub[sub.image_id == iid].sort_values("landmark_index")
            r0 = rows.iloc[0]
            out.append(
                {
                    "id": iid,
                    "path": str(Path(a.isbi_root) / r0.image_path),
                    "xy": rows[["x", "y"]].to_numpy(dtype=float).tolist(),
                    "spacing": [float(r0.spacing_x_mm), float(r0.spacing_y_mm)],
                }
            )
        return out

    first = sub[sub.image_id == train_ids[0]].sort_values("landmark_index")
    manifest = {"landmark_names": first.landmark_name.tolist(), "train": items(train_ids), "test": items(test_ids)}
    (work / "manifest.json").write_text(json.dumps(manifest))
    return {
        "params": params_path,
        "index": used_index,
        "variant": variant,
        "manifest": work / "manifest.json",
        "n_train": len(train_ids),
        "n_test": len(test_ids),
        "index_s": round(t_index, 1),
        "preprocess_s": round(t_pre, 1),
    }


# --------------------------------------------------------------------------- cephalo side


def train_cephalo(a, data: dict, work: Path) -> dict:
    """``cephalo train --stage source`` for at most the budget; copies of last.pt at the marks."""
    run_dir = work / "cephalo_run"
    snap_dir = work / "cephalo_snaps"
    snap_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        *CEPHALO,
        "train",
        "--data",
        str(data["variant"]),
        "--out",
        str(run_dir),
        "--stage",
        "source",
        "--params",
        str(data["params"]),
        "--restart",
        "--no-progress",
    ]
    budget = a.budget_min * 60.0
    marks = [budget * (i + 1) / a.marks for i in range(a.marks)]
    last = run_dir / "last.pt"
    snaps: list[dict] = []
    log_fh = open(work / "cephalo_train.log", "w")  # noqa: SIM115 (the child writes it; closed at the end)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    log(f"cephalo train started ({a.cephalo_epochs_resolved} epochs planned, budget {budget:.0f} s)")
    stopped = False
    seen_mtime = None
    while len(snaps) < a.marks:
        finished = proc.poll() is not None
        now = time.time() - t0
        if not finished and now < marks[len(snaps)]:
            time.sleep(0.5)
            continue
        # a mark passed (or training ended): snapshot the weights of the last finished epoch
        if not finished and len(snaps) == a.marks - 1:
            os.killpg(proc.pid, signal.SIGSTOP)  # freeze at the budget while last.pt is copied
        if last.exists():
            mtime = last.stat().st_mtime
            dst = snap_dir / f"snap_{len(snaps) + 1}.pt"
            if mtime != seen_mtime:
                shutil.copy2(last, dst)
                seen_mtime = mtime
            elif snaps:
                dst = Path(snaps[-1]["path"])
            snaps.append(
                {
                    "mark": len(snaps) + 1,
                    "mark_s": round(marks[len(snaps)], 1),
                    "trained_s": round(mtime - t0, 2),
                    "path": str(dst),
                }
            )
            log(f"cephalo snapshot {len(snaps)}/{a.marks}: weights of {mtime - t0:.0f} s")
        else:
            snaps.append(
                {"mark": len(snaps) + 1, "mark_s": round(marks[len(snaps)], 1), "trained_s": None, "path": None}
            )
            log(f"cephalo snapshot {len(snaps)}/{a.marks}: no finished epoch yet")
        if finished:
            # training ended before this mark: the remaining marks hold the same final weights
            while len(snaps) < a.marks:
                snaps.append({**snaps[-1], "mark": len(snaps) + 1, "mark_s": round(marks[len(snaps)], 1)})
    if proc.poll() is None:
        stopped = True
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log_fh.close()
    rc = proc.returncode
    if not stopped and rc != 0:
        raise SystemExit(f"cephalo train failed ({rc}); see {work / 'cephalo_train.log'}")
    hist = run_dir / "history.csv"
    epochs_done = max(0, len(hist.read_text().strip().splitlines()) - 1) if hist.exists() else 0
    return {
        "command": shlex.join(["cephalo", *cmd[3:]]),
        "stopped_at_budget": stopped,
        "epochs_planned": a.cephalo_epochs_resolved,
        "epochs_completed": epochs_done,
        "wall_s": round(time.time() - t0, 1),
        "snapshots": snaps,
    }


def predict_cephalo(a, data: dict, side: dict) -> tuple[np.ndarray, np.ndarray, list, dict]:
    """Predict Test1 from every cephalo snapshot (the path `cephalo evaluate` uses)."""
    from cephalo.inference import Predictor, predict_variant
    from cephalo.models.checkpoint import load_checkpoint
    from cephalo.preprocess import load_variant

    v = load_variant(data["variant"])
    rows = [i for i, s in enumerate(v.splits) if s == "test1"]
    ids = [v.image_ids[i] for i in rows]
    gt = np.asarray(v.landmarks_original[rows], dtype=np.float64)
    spacing = np.asarray(v.spacing[rows], dtype=np.float64)
    preds: dict = {}
    for s in side["snapshots"]:
        if s["path"] is None or s["path"] in preds:
            continue
        t = time.perf_counter()
        model, meta, extra = load_checkpoint(s["path"])
        model.eval()
        pr = predict_variant(Predictor.from_meta(model, meta, device="cpu"), v, rows, batch_size=4)
        epoch = (extra.get("training") or {}).get("epoch") if isinstance(extra, dict) else None
        preds[s["path"]] = (np.asarray(pr.coords, dtype=np.float64), round(time.perf_counter() - t, 1), epoch)
    info = {
        "model": f"{meta.arch} (cephalo train --stage source, profiles/real.yaml)",
        "input": f"{a.cephalo_variant}: {v.input_size[0]}x{v.input_size[1]}, "
        f"normalisation {v.normalisation.get('name', v.normalisation) if v.normalisation else None}",
        "decoding": json.dumps(dict(getattr(meta, "codec", None) or {})),
    }
    return gt, spacing, ids, {"preds": preds, **info}


# --------------------------------------------------------------------------- peer side


def peer_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the peer must not see cephalo's sources
    return env


def train_peer(a, data: dict, work: Path) -> dict:
    out = work / "peer"
    cmd = [
        str(a.peer_python),
        str(REPO / "benchmarks" / "peer" / "landmarker_side.py"),
        "train",
        "--manifest",
        str(data["manifest"]),
        "--out",
        str(out),
        "--budget-s",
        str(a.budget_min * 60.0),
        "--marks",
        str(a.marks),
        "--size",
        str(a.peer_size),
    ]
    log(f"landmarker train started (budget {a.budget_min * 60:.0f} s, {a.peer_size} px)")
    wall = run(cmd, work / "peer_train.log", env=peer_env())
    info = json.loads((out / "train.json").read_text())
    info["command"] = shlex.join(cmd)
    info["wall_s"] = round(wall, 1)
    return info


def predict_peer(a, data: dict, work: Path) -> dict:
    out = work / "peer"
    cmd = [
        str(a.peer_python),
        str(REPO / "benchmarks" / "peer" / "landmarker_side.py"),
        "predict",
        "--manifest",
        str(data["manifest"]),
        "--out",
        str(out),
    ]
    run(cmd, work / "peer_predict.log", env=peer_env())
    return json.loads((out / "predict.json").read_text())


def peer_point_error(a, data: dict, pred_path: Path, work: Path) -> float:
    cmd = [
        str(a.peer_python),
        str(REPO / "benchmarks" / "peer" / "landmarker_side.py"),
        "point-error",
        "--manifest",
        str(data["manifest"]),
        "--pred",
        str(pred_path),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=peer_env())
    if res.returncode != 0:
        raise SystemExit(f"point-error failed: {res.stderr[-2000:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["point_error_mm"])


# --------------------------------------------------------------------------- scoring and report


def score(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> dict:
    from cephalo.evaluate.metrics import radial_errors_mm, summarise

    s = summarise(radial_errors_mm(pred, gt, spacing), thresholds=(1.5, 2.0, 2.5, 3.0, 4.0))
    return {
        "mre_mm": s["mre_mm"],
        "sd_mm": s["sd_mm"],
        "median_mm": s["median_mm"],
        "sdr_2mm": s["sdr"]["2.0"],
        "sdr_2.5mm": s["sdr"]["2.5"],
        "sdr_4mm": s["sdr"]["4.0"],
        "n": s["n"],
        "n_missing": s["n_missing"],
    }


def time_to_reach(rows: list[dict], target: float):
    for r in rows:
        m = r.get("metrics", {}).get("mre_mm")
        if m is not None and np.isfinite(m) and m <= target:
            return r["trained_s"]
    return None


def _f(v, nd=2, unit="") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}{unit}"


def _reach(v) -> str:
    return "not reached" if v is None else f"{v / 60:.1f} min ({v:.0f} s)"


def write_markdown(rep: dict, path: Path) -> None:
    c, p = rep["sides"]["cephalo"], rep["sides"]["landmarker"]
    m = rep["machine"]
    lines = [
        f"# Peer side by side: cephalo vs landmarker {rep['landmarker_version']} ({rep['date']})",
        "",
        f"Command: `{rep['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; cephalo torch {m['torch']}, landmarker torch "
        f"{p.get('torch', '?')}. Budget: {rep['budget_min']:g} min of training wall clock per side, "
        f"run one after the other. Data: ISBI 2015 TrainingData ({rep['data']['n_train']} images) -> "
        f"Test1 ({rep['data']['n_test']} images), 0.1 mm/px, scored with cephalo.evaluate.metrics."
        + (" **SMOKE RUN: tiny data, not a result.**" if rep["smoke"] else ""),
        "",
        "| | cephalo | landmarker |",
        "|---|---|---|",
        f"| model | {c['model']} | {p['recipe']['model']} |",
        f"| input | {c['input']} | {p['recipe']['input']} |",
        f"| decoding | {c['decoding']} | {p['recipe']['decoding']} |",
        f"| epochs in budget | {c['epochs_completed']} of {c['epochs_planned']} planned | "
        f"{p['epochs_completed']} (+ part) |",
        f"| final Test1 MRE (mm) | {_f(c['final']['mre_mm'], 3)} | {_f(p['final']['mre_mm'], 3)} |",
        f"| final SDR 2 mm | {_f(100 * c['final']['sdr_2mm'], 1, ' %')} | {_f(100 * p['final']['sdr_2mm'], 1, ' %')} |",
        f"| time to MRE <= 2.0 mm | {_reach(c['time_to_2.0mm_s'])} | {_reach(p['time_to_2.0mm_s'])} |",
        f"| time to MRE <= 1.5 mm | {_reach(c['time_to_1.5mm_s'])} | {_reach(p['time_to_1.5mm_s'])} |",
        "",
        f"MRE ratio landmarker / cephalo: **{_f(rep['mre_ratio_landmarker_over_cephalo'], 2)}**.",
        "",
        "Metric cross-check (landmarker.metrics.point_error vs cephalo MRE on the same final predictions): "
        + "; ".join(
            f"{k}: {_f(v['point_error_mm'], 4)} vs {_f(v['cephalo_mre_mm'], 4)} mm (|diff| {v['abs_diff_mm']:.1e})"
            for k, v in rep["metric_agreement"].items()
        )
        + (" - agree." if rep["metric_agreement_ok"] else " - **DISAGREE**."),
        "",
        "Test1 at each wall-clock mark (training time of the weights; times are a resolution of one mark):",
        "",
        "| side | mark | training time | epoch | MRE (mm) | SDR 2 mm |",
        "|---|---|---|---|---|---|",
    ]
    for name, side in (("cephalo", c), ("landmarker", p)):
        for r in side["marks"]:
            mt = r.get("metrics", {})
            ep = r.get("epoch")
            lines.append(
                f"| {name} | {r['mark']} ({r['mark_s'] / 60:.1f} min) | {_f(r['trained_s'], 0, ' s')} | "
                f"{'-' if ep is None else _f(float(ep), 1)} | {_f(mt.get('mre_mm'), 3)} | "
                f"{_f(100 * mt['sdr_2mm'], 1, ' %') if mt else '-'} |"
            )
    lines += [
        "",
        "Not counted in the training time: indexing, preprocessing, image loading/resizing, the "
        "Test1 predictions. cephalo's epochs come from the budget and its measured seconds per epoch "
        f"({rep['cephalo_sec_per_epoch']:g} s); the run is stopped at the budget if still going.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--budget-min", type=float, default=10.0, help="training wall clock per side (minutes)")
    ap.add_argument("--marks", type=int, default=4, help="checkpoints at equally spaced wall-clock marks")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peer")
    ap.add_argument("--isbi-root", type=Path, default=default_isbi_root())
    ap.add_argument("--peer-python", type=Path, default=REPO / ".venv-peer" / "bin" / "python")
    ap.add_argument("--peer-size", type=int, default=256, help="landmarker input size (square; docs: 512)")
    ap.add_argument("--cephalo-variant", default="letterbox384", help="profiles/real.yaml variant (source stage)")
    ap.add_argument("--cephalo-sec-per-epoch", type=float, default=DEFAULT_SEC_PER_EPOCH)
    ap.add_argument("--cephalo-epochs", type=int, default=None, help="override the epochs derived from the budget")
    ap.add_argument("--n-train", type=int, default=None, help="first N TrainingData images (default all)")
    ap.add_argument("--n-test", type=int, default=None, help="first N Test1 images (default all)")
    ap.add_argument("--smoke", action="store_true", help="tiny end-to-end run (12 train, 4 test, 1 min per side)")
    ap.add_argument("--keep-work", action="store_true", help="keep checkpoints under OUT/work-<date>/")
    a = ap.parse_args(argv)
    if a.smoke:
        for k, v in SMOKE.items():
            if k == "budget_min" and "--budget-min" in (argv or sys.argv):
                continue
            setattr(a, k, v)
    if not (a.isbi_root / "RawImage").is_dir():
        ap.error(f"no ISBI 2015 data at {a.isbi_root} (set --isbi-root or CEPHALO_SHARED)")
    if not a.peer_python.exists():
        ap.error(f"no peer interpreter at {a.peer_python}: run benchmarks/peer/setup.sh")
    a.cephalo_epochs_resolved = a.cephalo_epochs or max(
        1, int((a.budget_min * 60.0 - STARTUP_S) // a.cephalo_sec_per_epoch)
    )

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.out / f"work-{stamp}"
    work.mkdir(parents=True)
    t_all = time.perf_counter()
    machine = machine_info()

    data = prepare_data(a, work)
    log(
        f"data: {data['n_train']} train / {data['n_test']} Test1 images; index {data['index_s']} s, "
        f"preprocess {data['preprocess_s']} s"
    )
    ceph = train_cephalo(a, data, work)
    peer = train_peer(a, data, work)
    log("predicting Test1 from every snapshot")
    gt, spacing, ids, cpred = predict_cephalo(a, data, ceph)
    ppred = predict_peer(a, data, work)
    man = json.loads(Path(data["manifest"]).read_text())
    if [it["id"] for it in man["test"]] != ids or ppred["ids"] != ids:
        raise SystemExit("Test1 image order differs between the variant and the manifest")
    gt_man = np.asarray([it["xy"] for it in man["test"]], dtype=np.float64)
    if not np.allclose(gt_man, gt, atol=1e-6, equal_nan=True):
        raise SystemExit("ground truth differs between the variant and the index")

    c_rows = []
    for s in ceph["snapshots"]:
        row = dict(s)
        if s["path"] is not None:
            pred, pt, epoch = cpred["preds"][s["path"]]
            row["metrics"] = score(pred, gt, spacing)
            row["predict_s"] = pt
            row["epoch"] = epoch
        c_rows.append(row)
    p_rows = []
    for s in ppred["snapshots"]:
        pred = np.load(work / "peer" / s["pred"])
        p_rows.append({**s, "metrics": score(pred, gt, spacing)})

    # final predictions of both sides -> landmarker.metrics.point_error vs cephalo's MRE
    c_final_pred = cpred["preds"][c_rows[-1]["path"]][0] if c_rows[-1]["path"] else None
    agreement = {}
    if c_final_pred is not None:
        np.save(work / "cephalo_final_pred.npy", c_final_pred)
        agreement["cephalo"] = {
            "point_error_mm": peer_point_error(a, data, work / "cephalo_final_pred.npy", work),
            "cephalo_mre_mm": c_rows[-1]["metrics"]["mre_mm"],
        }
    agreement["landmarker"] = {
        "point_error_mm": p_rows[-1]["point_error_mm"],
        "cephalo_mre_mm": p_rows[-1]["metrics"]["mre_mm"],
    }
    for v in agreement.values():
        v["abs_diff_mm"] = abs(v["point_error_mm"] - v["cephalo_mre_mm"])
    ok = all(v["abs_diff_mm"] < 1e-3 for v in agreement.values())

    c_final = c_rows[-1].get("metrics") or {"mre_mm": float("nan"), "sdr_2mm": float("nan")}
    p_final = p_rows[-1]["metrics"]
    sides = {
        "cephalo": {
            **{k: v for k, v in ceph.items() if k != "snapshots"},
            "model": cpred["model"],
            "input": cpred["input"],
            "decoding": cpred["decoding"],
            "marks": c_rows,
            "final": c_final,
            "time_to_2.0mm_s": time_to_reach(c_rows, 2.0),
            "time_to_1.5mm_s": time_to_reach(c_rows, 1.5),
        },
        "landmarker": {
            **{k: v for k, v in peer.items() if k not in ("snapshots", "history")},
            "history": peer.get("history"),
            "marks": p_rows,
            "final": p_final,
            "time_to_2.0mm_s": time_to_reach(p_rows, 2.0),
            "time_to_1.5mm_s": time_to_reach(p_rows, 1.5),
        },
    }
    ratio = p_final["mre_mm"] / c_final["mre_mm"] if c_final["mre_mm"] else float("nan")
    cmd = "python benchmarks/peer_landmarker.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    rep = {
        "date": stamp,
        "command": cmd.strip(),
        "smoke": bool(a.smoke),
        "budget_min": a.budget_min,
        "marks": a.marks,
        "machine": machine,
        "landmarker_version": peer.get("landmarker", "?"),
        "data": {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()},
        "isbi_root": str(a.isbi_root),
        "cephalo_sec_per_epoch": a.cephalo_sec_per_epoch,
        "sides": sides,
        "mre_ratio_landmarker_over_cephalo": ratio,
        "metric_agreement": agreement,
        "metric_agreement_ok": ok,
        "total_wall_s": round(time.perf_counter() - t_all, 1),
    }
    base = a.out / f"peer-landmarker-{'smoke-' if a.smoke else ''}{stamp}"
    base.with_suffix(".json").write_text(json.dumps(rep, indent=2, default=float))
    write_markdown(rep, base.with_suffix(".md"))
    if not a.keep_work:
        for f in list((work / "cephalo_snaps").glob("*.pt")) + list((work / "peer").glob("*.pt")):
            f.unlink()
        shutil.rmtree(work / "cephalo_run", ignore_errors=True)
        shutil.rmtree(work / "variant", ignore_errors=True)
    log(
        f"MRE cephalo {c_final['mre_mm']:.3f} mm, landmarker {p_final['mre_mm']:.3f} mm, ratio {ratio:.2f}; "
        f"metric agreement {'ok' if ok else 'FAILED'}; total {rep['total_wall_s']:.0f} s"
    )
    log(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
