"""Experiment tracking with MLflow: the ONLY cephalo module that imports mlflow.

MLflow is a *view* of the results: the metrics JSON files written by each stage are the truth,
and nothing in cephalo needs this module for correctness. Tracking can be switched off
(params ``tracking.enabled: false``); if it fails, the caller gets a warning, not an error.

Layout (explicit, inside the project - no ``./mlruns`` file store, nothing in the home folder):

* backend store: SQLite database ``tracking.store`` (default ``mlflow/mlflow.db``); view it with
  ``mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db``;
* artifacts: ``tracking.artifacts`` (default ``mlflow/artifacts``), one folder per experiment,
  recorded in the store as paths **relative to the project folder** (``mlflow/artifacts/...``),
  so moving or copying the project keeps them working; run ``mlflow ui`` from the project folder;
* or a tracking server (``tracking.uri: http://host:5000``, or the environment variable
  ``CEPHALO_TRACKING_URI``): ``mlflow server`` with a PostgreSQL backend and an artifact root it
  serves (``scripts/mlflow-server.sh``), so that several machines log into one store; artifacts
  are uploaded through the server and open from any machine;
* one experiment per profile/target (``tracking.experiment``, else ``tracking.experiment_prefix``
  + the pipeline's target data set, else + the run's data set): the source model's training, its
  zero-shot evaluation and the fine-tuned runs of one profile sit side by side;
* one run per stage and variant. Params are the stage's *own* effective settings (a training
  run: lr, epochs, loss, input size, architecture, init checkpoint and its hash...; an evaluation:
  split, decoder, ground-truth policy, model...), flattened with dotted names, so the compare
  view's "show diff only" shows what differs; tags: ``stage``, ``variant``, ``command``,
  ``data_index_hash``, ``checkpoint``/``checkpoint_sha256``, the provenance record
  (``cephalo.provenance.collect``: ``prov.git_commit``, ``prov.torch``, ``prov.cpu_model``...);
  an evaluation run carries ``training_run_id`` (filter ``tags.training_run_id = '<id>'``) naming
  the training run whose checkpoint it evaluated.

Several processes (Snakemake jobs) may log at once. SQLite allows one writer; every logging call
here therefore runs under an inter-process file lock beside the database (``filelock``), the
database is switched to WAL journal mode with a busy timeout, and transient "database is locked"
errors are retried with back-off.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TrackingConfig",
    "experiment_name",
    "find_training_run",
    "log_to_evaluation",
    "provenance_tags",
    "config_from_params",
    "tracking_uri",
    "flatten_params",
    "flatten_metrics",
    "git_commit",
    "log_run",
    "RunRecord",
    "EXPERIMENT_KIND",
    "HEADLINE_METRICS",
    "run_description",
]

#: MLflow 3's experiment-kind tag and value (``mlflow/server/js``: ``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT``):
#: the experiment opens on the runs table (model training), not the GenAI traces view
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
#: the figures that answer "which run is better?", logged first and named in the run description
HEADLINE_METRICS: tuple[str, ...] = (
    "mre_mm/shared",
    "sdr_2.0mm/shared",
    "mre_mm/all",
    "sdr_2.0mm/all",
    "n_landmarks/shared",
    "n_landmarks/all",
    "n_images",
    "val_mre_mm",
    "best_val_mre_mm",
)

#: MLflow's limit on a param value (characters); longer values are truncated with a marker.
_MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class TrackingConfig:
    """Where and whether to track.

    Attributes:
        enabled: log to MLflow at all.
        store: SQLite database file (absolute after :func:`config_from_params`).
        artifacts: artifact root folder (absolute).
        experiment_prefix: prepended to the target/data set name to form the experiment name.
        experiment: an explicit experiment name (None: prefix + target).
        root: the project folder; artifact locations are stored relative to it.
        uri: a tracking server's URL (None: the SQLite file ``store``).
        lock_timeout_s: how long to wait for the inter-process lock.
        retries: attempts for a logging call that hits a locked database.
    """

    enabled: bool = True
    store: Path = Path("mlflow/mlflow.db")
    artifacts: Path = Path("mlflow/artifacts")
    experiment_prefix: str = "cephalo-"
    lock_timeout_s: float = 120.0
    retries: int = 6
    experiment: str | None = None
    root: Path = Path(".")
    uri: str | None = None


def config_from_params(section: Mapping | None, root: str | Path = ".") -> TrackingConfig:
    """Build a :class:`TrackingConfig` from the ``tracking:`` params section.

    Relative paths are resolved against ``root`` (the project folder, normally the cwd).

    Raises:
        ValueError: an unknown key (the message lists the valid ones).
    """
    section = dict(section or {})
    valid = {"enabled", "store", "artifacts", "experiment_prefix", "experiment", "lock_timeout_s", "retries", "uri"}
    unknown = sorted(set(section) - valid)
    if unknown:
        raise ValueError(f"tracking: unknown keys {unknown}; valid: {sorted(valid)}")
    root = Path(root).resolve()
    d = TrackingConfig()
    return TrackingConfig(
        enabled=bool(section.get("enabled", d.enabled)),
        store=(root / Path(section.get("store", d.store))).resolve(),
        artifacts=(root / Path(section.get("artifacts", d.artifacts))).resolve(),
        experiment_prefix=str(section.get("experiment_prefix", d.experiment_prefix)),
        lock_timeout_s=float(section.get("lock_timeout_s", d.lock_timeout_s)),
        retries=int(section.get("retries", d.retries)),
        experiment=(str(section["experiment"]) if section.get("experiment") else None),
        root=root,
        uri=os.environ.get("CEPHALO_TRACKING_URI") or (str(section["uri"]) if section.get("uri") else None),
    )


def experiment_name(cfg: TrackingConfig, params: Any = None, dataset: str | None = None) -> str:
    """The experiment of a run: ``cfg.experiment``, else the prefix + ``params.pipeline.target``
    (one experiment per profile/target), else the prefix + ``dataset``."""
    if cfg.experiment:
        return cfg.experiment
    if isinstance(params, Mapping):
        target = (params.get("pipeline") or {}).get("target")
    else:  # the typed params (cephalo.config.Params)
        target = getattr(getattr(params, "pipeline", None), "target", None)
    return f"{cfg.experiment_prefix}{target or dataset or 'default'}"


def provenance_tags(prov: Mapping | None) -> dict[str, str]:
    """A :func:`cephalo.provenance.collect` record as flat ``prov.*`` tags (packages as ``prov.<dist>``)."""
    out = {}
    for k, v in dict(prov or {}).items():
        if k == "packages":
            out.update({f"prov.{n}": str(ver) for n, ver in dict(v or {}).items()})
        elif v is not None:
            out[f"prov.{k}"] = str(v)
    return out


def tracking_uri(cfg: TrackingConfig) -> str:
    """The server's URL (``cfg.uri``), else ``sqlite:////abs/path/mlflow.db`` for ``cfg.store`` (what
    ``mlflow ui --backend-store-uri`` takes)."""
    if cfg.uri:
        return cfg.uri
    return f"sqlite:///{Path(cfg.store).resolve().as_posix()}"


def flatten_params(params: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested params -> ``{"train.lr": "0.001", ...}`` (dotted names, as ``dvc params diff``).

    Mappings are flattened; lists and scalars become their string form (lists as one value,
    as DVC shows them). Values longer than MLflow's limit are truncated with ``"..."``.
    """
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, key))
        else:
            s = str(v)
            out[key] = s if len(s) <= _MAX_PARAM_CHARS else s[: _MAX_PARAM_CHARS - 3] + "..."
    return out


def flatten_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> ``{"overall.mre_mm": 1.8, "overall.sdr.2.0": 0.6, ...}``; finite numbers only."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key))
        elif isinstance(v, bool):
            continue
        elif isinstance(v, (int, float)) and math.isfinite(float(v)):
            out[key] = float(v)
        else:
            try:  # numpy scalars
                f = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if math.isfinite(f) and not isinstance(v, (str, bytes, list, tuple)):
                out[key] = f
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The HEAD commit of the git work tree holding the imported cephalo package (or ``cwd``),
    ``+dirty`` appended when its source tree is modified (:func:`cephalo.provenance.git_state`:
    generated files such as ``dvc.lock`` do not count), or None."""
    from .provenance import git_state

    sha, dirty = git_state(None if cwd is None else str(Path(cwd).resolve()))
    return sha + ("+dirty" if dirty else "") if sha else None


def _prepare_store(cfg: TrackingConfig) -> None:
    """Create the folders and switch a (new or existing) database to WAL with a busy timeout."""
    Path(cfg.store).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.artifacts).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(cfg.store), timeout=60)
    try:
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA journal_mode = WAL")
    finally:
        con.close()


def _store_lock(cfg: TrackingConfig):
    """The inter-process lock beside the SQLite file (one writer at a time); none for a server,
    which orders its writers itself (and the working folder then gets no ``mlflow/`` at all)."""
    import contextlib

    import filelock

    if cfg.uri:
        return contextlib.nullcontext()
    Path(cfg.store).parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(Path(cfg.store).with_suffix(".lock")), timeout=cfg.lock_timeout_s)


def _is_locked_error(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}".lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def _retry(fn, retries: int):
    delay = 0.2
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - mlflow wraps sqlite errors in its own types
            if attempt == retries or not _is_locked_error(e):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class RunRecord:
    """What one finished stage run is and where it belongs (the tags of its MLflow run).

    Attributes:
        dataset: data set name; the experiment is ``cfg.experiment_prefix + dataset``.
        stage: ``evaluate``, ``train``, ... (tag ``stage``).
        variant: preprocessing variant (tag ``variant``).
        run_name: MLflow run name (default ``"<stage>/<variant>"``).
        experiment: the experiment name (default: :func:`experiment_name` of ``dataset``).
        command: the exact command that reproduces the run (tag ``command``).
        data_index_hash: tag ``data_index_hash``.
        checkpoint: a model checkpoint, *referenced* (tag ``checkpoint``, path), not copied.
        checkpoint_hash: tag ``checkpoint_sha256``.
        provenance: a :func:`cephalo.provenance.collect` record, logged as ``prov.*`` tags.
        link_checkpoints: SHA-256s of the checkpoint evaluated and of the ones it derives from
            (AdaBN: its source): the first training run (tag ``stage=train``) whose best
            checkpoint has one of them is named in tags ``training_run_id`` / ``training_run_name``.
    """

    dataset: str
    stage: str
    variant: str = ""
    run_name: str | None = None
    experiment: str | None = None
    command: str | None = None
    data_index_hash: str | None = None
    checkpoint: str | Path | None = None
    checkpoint_hash: str | None = None
    provenance: Mapping | None = None
    link_checkpoints: Sequence[str] = ()
    description: str | None = None


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.3g}{unit}"


def run_description(
    rec: RunRecord, metrics: Mapping[str, float], params: Mapping | None = None, training_run_name: str | None = None
) -> str:
    """The run's description (MLflow tag ``mlflow.note.content``, Markdown): stage, model, variant,
    data and the headline figure, so the runs table and the run page say what the run is."""
    params = params or {}
    model = params.get("model") or (Path(str(rec.checkpoint)).as_posix() if rec.checkpoint else None)
    arch = params.get("model_arch") or params.get("arch")
    what = f"**{rec.stage}**" + (f" on variant `{rec.variant}`" if rec.variant else "") + f" of {rec.dataset}"
    if params.get("split"):
        what += f", split {params['split']}"
    lines = [what]
    if model:
        lines.append(f"model `{model}`" + (f" ({arch})" if arch else ""))
    figs = []
    for s in ("shared", "all"):
        if metrics.get(f"mre_mm/{s}") is not None:
            n = metrics.get(f"n_landmarks/{s}")
            figs.append(
                f"MRE {_fmt(metrics[f'mre_mm/{s}'], ' mm')} over {s} landmarks"
                + (f" ({int(n)})" if n is not None else "")
                + (
                    f", SDR@2mm {_fmt(metrics.get(f'sdr_2.0mm/{s}'), '%')}"
                    if metrics.get(f"sdr_2.0mm/{s}") is not None
                    else ""
                )
            )
            break
    if not figs and metrics.get("best_val_mre_mm") is not None:
        figs.append(f"best validation MRE {_fmt(metrics['best_val_mre_mm'], ' mm')}")
    lines += figs
    if training_run_name:
        lines.append(f"weights from training run `{training_run_name}`")
    return "  \n".join(lines)


def _ordered_metrics(flat: Mapping[str, float]) -> list[tuple[str, float]]:
    """Headline figures first (:data:`HEADLINE_METRICS`), then the rest by name."""
    head = [(k, flat[k]) for k in HEADLINE_METRICS if k in flat]
    return head + sorted((k, v) for k, v in flat.items() if k not in HEADLINE_METRICS)


def _write_tables(run_dir: Path, tables: Mapping[str, Sequence[Mapping]]) -> None:
    """Each table as ``<name>.json`` in MLflow's table format (``{"columns", "data"}``, what
    ``mlflow.log_table`` writes; the artifact view shows it as a table)."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        data = [[r.get(c) for c in cols] for r in rows]
        (run_dir / f"{name}.json").write_text(json.dumps({"columns": cols, "data": data}, default=str))


def log_run(
    cfg: TrackingConfig,
    run: RunRecord,
    *,
    params: Mapping | None = None,
    metrics: Mapping | None = None,
    artifacts: Iterable[str | Path] = (),
    tags: Mapping[str, Any] | None = None,
    series: Mapping[str, Sequence[float]] | None = None,
    tables: Mapping[str, Sequence[Mapping]] | None = None,
    strict: bool = False,
) -> str | None:
    """Log one finished stage run (params, metrics, artifacts, tags) to MLflow.

    Args:
        cfg: from :func:`config_from_params`.
        run: what the run is (:class:`RunRecord`: data set, stage, variant, name, command,
            checkpoint, provenance, the checkpoints it derives from).
        params: the params dict (nested); logged flattened with dotted names.
        metrics: nested metrics (e.g. the ``metrics.json`` content); finite numbers are logged
            with dotted names.
        artifacts: files or folders to copy into the run's artifact folder.
        tags: extra tags.
        series: per-step curves, name -> values (step = position, e.g. epoch - 1), so the MLflow UI
            plots them (e.g. a training run's ``val_mre_mm`` per epoch); non-finite values skipped.
        tables: name -> rows (dicts), logged as table artifacts ``<name>.json`` rather than as
            dozens of metrics (e.g. the per-measurement errors), so Compare shows the headline.
        strict: raise instead of warning when logging fails (tests).

    Returns:
        the MLflow run id, or None when tracking is disabled or failed (a ``UserWarning`` says why).
    """
    if not cfg.enabled:
        return None
    try:
        return _log_run(
            cfg,
            run,
            params=params or {},
            metrics=metrics or {},
            artifacts=list(artifacts),
            tags=dict(tags or {}),
            series=dict(series or {}),
            tables=dict(tables or {}),
        )
    except Exception as e:  # noqa: BLE001 - tracking is never needed for correctness
        if strict:
            raise
        warnings.warn(f"MLflow tracking failed (results are unaffected): {type(e).__name__}: {e}", stacklevel=2)
        return None


def _client(cfg: TrackingConfig):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    return _retry(lambda: MlflowClient(tracking_uri=tracking_uri(cfg)), cfg.retries)


def _relative_location(cfg: TrackingConfig, path: Path) -> str:
    """``path`` relative to the project folder when inside it (POSIX), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(cfg.root).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _set_relative_locations(
    cfg: TrackingConfig,
    exp_id: str | None = None,
    run_id: str | None = None,
    exp_loc: str | None = None,
    run_loc: str | None = None,
) -> None:
    """Store artifact locations relative to the project (MLflow itself would store absolute URIs)."""
    con = sqlite3.connect(str(cfg.store), timeout=60)
    try:
        con.execute("PRAGMA busy_timeout = 60000")
        if exp_id is not None:
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (exp_loc, int(exp_id)))
        if run_id is not None:
            con.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (run_loc, run_id))
        con.commit()
    finally:
        con.close()


def _copy_artifacts(dest: Path, artifacts: Sequence[Path]) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for a in artifacts:
        a = Path(a)
        if a.is_dir():
            shutil.copytree(a, dest / a.name, dirs_exist_ok=True)
        elif a.is_file():
            shutil.copy2(a, dest / a.name)


def find_training_run(client, checkpoint_hashes: Sequence[str], experiment_ids: Sequence[str] | None = None):
    """The newest training run (tag ``stage=train``) whose ``checkpoint_sha256`` is one of the hashes, or None."""
    if not checkpoint_hashes:
        return None
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    for h in checkpoint_hashes:
        runs = client.search_runs(
            list(experiment_ids),
            filter_string=f"tags.stage = 'train' and tags.checkpoint_sha256 = '{h}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            return runs[0]
    return None


def log_to_evaluation(
    cfg: TrackingConfig,
    *,
    metrics_sha256: str | None,
    run_name: str,
    metrics: Mapping[str, float | None],
    strict: bool = False,
) -> str | None:
    """Add metrics (e.g. ``cephalo compare``'s ``/shared`` figures) to the evaluation run whose
    ``metrics.json`` has this SHA-256 (tag ``metrics_sha256``; newest first). Returns its id or None."""
    if not cfg.enabled or not metrics_sha256 or (not cfg.uri and not Path(cfg.store).is_file()):
        return None
    try:
        from mlflow.entities import Metric

        with _store_lock(cfg):
            client = _client(cfg)
            exps = [e.experiment_id for e in client.search_experiments()]
            runs = _retry(
                lambda: client.search_runs(
                    exps,
                    filter_string=f"tags.metrics_sha256 = '{metrics_sha256}'",
                    order_by=["attributes.start_time DESC"],
                    max_results=1,
                ),
                cfg.retries,
            )
            if not runs:
                return None
            rid = runs[0].info.run_id
            now = int(time.time() * 1000)
            m = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
            for i in range(0, len(m), 1000):
                _retry(lambda i=i: client.log_batch(rid, metrics=m[i : i + 1000]), cfg.retries)
            shared = metrics.get("mre_mm/shared")
            note = runs[0].data.tags.get("mlflow.note.content", "")
            if shared is not None and math.isfinite(float(shared)) and "shared landmarks" not in note:
                n, sdr = metrics.get("n_landmarks/shared"), metrics.get("sdr_2.0mm/shared")
                line = (
                    f"compared: MRE {_fmt(float(shared), ' mm')} over the shared landmarks"
                    + (f" ({int(n)})" if n is not None else "")
                    + (f", SDR@2mm {_fmt(float(sdr), '%')}" if sdr is not None else "")
                )
                _retry(
                    lambda: client.set_tag(rid, "mlflow.note.content", (note + "  \n" if note else "") + line),
                    cfg.retries,
                )
            return rid
    except Exception as e:  # noqa: BLE001 - tracking is never needed for correctness
        if strict:
            raise
        warnings.warn(
            f"MLflow tracking failed for {run_name} (results are unaffected): {type(e).__name__}: {e}", stacklevel=2
        )
        return None


def _log_run(cfg: TrackingConfig, rec: RunRecord, *, params, metrics, artifacts, tags, series, tables) -> str:
    dataset, stage, variant, run_name = rec.dataset, rec.stage, rec.variant, rec.run_name
    experiment = rec.experiment or experiment_name(cfg, None, dataset)
    provenance = dict(rec.provenance or {})
    link_checkpoints = [h for h in rec.link_checkpoints if h]
    command, data_index_hash = rec.command, rec.data_index_hash
    checkpoint, checkpoint_hash = rec.checkpoint, rec.checkpoint_hash
    with _store_lock(cfg):
        if not cfg.uri:
            _prepare_store(cfg)
        from mlflow.entities import Metric, Param

        client = _client(cfg)
        name = experiment
        exp_dir = Path(cfg.artifacts) / name

        def get_or_create() -> str:
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # stores made before the tag
                    client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
                return exp.experiment_id
            if cfg.uri:  # the server's artifact root: uploaded through it, readable from any machine
                return client.create_experiment(name, tags={EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]})
            eid = client.create_experiment(
                name, artifact_location=exp_dir.resolve().as_uri(), tags={EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]}
            )
            _set_relative_locations(cfg, exp_id=eid, exp_loc=_relative_location(cfg, exp_dir))
            return eid

        exp_id = _retry(get_or_create, cfg.retries)
        all_tags = {"stage": stage, "variant": variant, "dataset": dataset}
        all_tags.update(provenance_tags(provenance))
        commit = git_commit()
        if commit:
            all_tags["git_commit"] = commit
            all_tags["mlflow.source.git.commit"] = commit.split("+")[0]
        if link_checkpoints:
            tr = _retry(lambda: find_training_run(client, link_checkpoints), cfg.retries)
            if tr is not None:
                all_tags["training_run_id"] = tr.info.run_id
                all_tags["training_run_name"] = tr.info.run_name or ""
        if command:
            all_tags["command"] = command
        if data_index_hash:
            all_tags["data_index_hash"] = data_index_hash
        if checkpoint:
            all_tags["checkpoint"] = str(checkpoint)
        if checkpoint_hash:
            all_tags["checkpoint_sha256"] = checkpoint_hash
        all_tags.update({str(k): str(v) for k, v in tags.items()})
        flat = flatten_metrics(metrics)
        if "mlflow.note.content" not in all_tags:
            all_tags["mlflow.note.content"] = rec.description or run_description(
                rec, flat, params, all_tags.get("training_run_name")
            )
        run = _retry(
            lambda: client.create_run(
                exp_id,
                run_name=run_name or f"{stage}/{variant or 'default'}",
                tags={k: str(v)[:5000] for k, v in all_tags.items()},
            ),
            cfg.retries,
        )
        run_id = run.info.run_id
        run_dir = exp_dir / run_id / "artifacts"
        if not cfg.uri:
            _retry(
                lambda: _set_relative_locations(cfg, run_id=run_id, run_loc=_relative_location(cfg, run_dir)),
                cfg.retries,
            )
        now = int(time.time() * 1000)
        p = [Param(k, v) for k, v in flatten_params(params).items()]
        m = [Metric(k, v, now, 0) for k, v in _ordered_metrics(flat)]
        for key, values in series.items():
            m += [
                Metric(str(key), float(v), now, step)
                for step, v in enumerate(values)
                if v is not None and math.isfinite(float(v))
            ]
        for i in range(0, max(len(p), 1), 100):
            _retry(lambda i=i: client.log_batch(run_id, params=p[i : i + 100]), cfg.retries)
        for i in range(0, max(len(m), 1), 1000):
            _retry(lambda i=i: client.log_batch(run_id, metrics=m[i : i + 1000]), cfg.retries)
        if cfg.uri:
            import tempfile

            with tempfile.TemporaryDirectory() as staging:
                _copy_artifacts(Path(staging), [Path(a) for a in artifacts])
                _write_tables(Path(staging), tables)
                _retry(lambda: client.log_artifacts(run_id, staging), cfg.retries)
        else:
            _copy_artifacts(run_dir, [Path(a) for a in artifacts])
            _write_tables(run_dir, tables)
        _retry(lambda: client.set_terminated(run_id, "FINISHED"), cfg.retries)
        return run_id
