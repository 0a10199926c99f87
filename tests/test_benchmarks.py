"""benchmarks/run_all.py: the CPU benchmark suite (structure of its JSON/Markdown, ratios, pipeline timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
RUN_ALL = REPO / "benchmarks" / "run_all.py"

ra = load_script(RUN_ALL, "cephalo_bench_run_all")

COMPARISON = (
    "run,variant,split,stage,n_images,mre_mm,mre_ci95,sdr_2.0_pct,sdr_2.0_ci95,human_mre_mm\n"
    'zeroshot-lb,lb256,test,zero_shot,10,3.29,"3.29 [2.82, 3.76]",63.2,"63.2 [59.5, 67.9]",1.1\n'
    'finetuned-lb,lb256,test,fine_tuned,10,2.69,"2.69 [2.33, 3.05]",66.9,"66.9 [63.8, 70.7]",1.1\n'
)

MACHINE = {
    "cpu": "Test CPU 9000",
    "cores": 2,
    "cpu_count": 4,
    "torch_threads": 2,
    "torch": "2.x",
    "python": "3.11",
    "platform": "linux",
    "loadavg_at_start": [0.5, 0.4, 0.3],
}


def _table_rows(md: str) -> list[list[str]]:
    """Cells of the benchmark table (the one whose header starts with '| section')."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| section |"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    return rows


def test_figures_state_hand_computed_ratios():
    res = {
        "machine": MACHINE,
        "date": "2026-01-01T00:00:00",
        "command": "python benchmarks/run_all.py",
        "quick": False,
        "seconds": 1.0,
        "index": {
            "images": 1000,
            "image_size": [384, 480],
            "header": {"build_s_per_1000": 0.5},
            "pixels": {"build_s_per_1000": 2.0},
        },
        "loading": {
            "n_images": 8,
            "source": "ISBI",
            "original_size": [1935, 2400],
            "input_size": 768,
            "batch_size": 8,
            "timed_batches": 10,
            "per_workers": [
                {
                    "workers": 2,
                    "cache_batches_per_s": 40.0,
                    "on_the_fly_batches_per_s": 10.0,
                    "decode_only_batches_per_s": 20.0,
                    "speedup_cache_vs_on_the_fly": 4.0,
                    "on_the_fly_vs_decode_only": 0.5,
                }
            ],
        },
        "inference": {
            "results": [
                {
                    "model": "hrnet_w32",
                    "input_size": 768,
                    "images": 5,
                    "source": "ISBI",
                    "parameters": 29_300_000,
                    "predict_images_per_s": 2.0,
                    "forward_images_per_s": 5.0,
                    "overhead_ratio": 2.5,
                }
            ]
        },
        "training": {
            "results": ra.training_ratios(
                [
                    {
                        "model": "a",
                        "input_size": 512,
                        "batch_size": 2,
                        "steps": 3,
                        "warmup": 1,
                        "seconds_per_step": 2.0,
                        "peak_rss_mib": 1500.0,
                        "peak_above_baseline_mib": 700.0,
                    },
                    {
                        "model": "b",
                        "input_size": 512,
                        "batch_size": 2,
                        "steps": 3,
                        "warmup": 1,
                        "seconds_per_step": 6.0,
                        "peak_rss_mib": 3000.0,
                        "peak_above_baseline_mib": 2100.0,
                    },
                    {"model": "b", "input_size": 768, "batch_size": 2, "error": "out of memory"},
                ]
            )
        },
        "pipeline": {
            "project": "/p",
            "snakemake_args": [],
            "snakemake": {"dry_run_s": 1.25, "up_to_date": True, "noop_s": 1.5},
            "dvc": {"status_s": 0.75, "message": "Data and pipelines are up to date."},
        },
        "accuracy": {"skipped": "no --project DIR given"},
    }
    assert res["training"]["results"][1]["ratio"] == 3.0 and res["training"]["results"][1]["ratio_to"] == "a"
    assert res["training"]["results"][0]["ratio"] == 1.0
    assert "ratio" not in res["training"]["results"][2]
    res["figures"] = ra.figures(res)
    by = {(f["section"], f["figure"]): f for f in res["figures"]}
    f = by[("index", "build index, sizes from file headers")]
    assert f["value"] == "0.5 s / 1000 images" and f["ratio"] == "4 x" and "2 s / 1000 images" in f["compared_with"]
    f = by[("loading", "batches/s from the preprocessing cache, workers=2")]
    assert f["value"] == "40 batches/s" and f["ratio"] == "4 x" and "10 batches/s" in f["compared_with"]
    f = by[("loading", "batches/s decoding + letterboxing on the fly, workers=2")]
    assert f["ratio"] == "0.5 x" and f["compared_with"] == "decode-only bound: 20 batches/s"
    f = by[("inference", "predict_images, hrnet_w32 at 768 px")]
    assert f["value"] == "2 images/s" and f["ratio"] == "2.5 x" and "29.3 M parameters" in f["inputs"]
    f = by[("training", "s/step, b at 512 px")]
    assert f["value"] == "6 s/step" and f["ratio"] == "3 x" and "peak RSS 3,000 MiB" in f["inputs"]
    assert by[("training", "b at 768 px")]["value"] == "failed"
    assert by[("pipeline", "snakemake, second run (no-op)")]["value"] == "1.5 s"
    assert by[("pipeline", "dvc status")]["value"] == "0.75 s"

    md = ra.render_markdown(res)
    rows = _table_rows(md)
    assert len(rows) == len(res["figures"]) == 10
    assert all(len(r) == 7 and r[-1] == "Test CPU 9000, 2 cores, 2 torch threads" for r in rows)
    assert "accuracy: skipped (no --project DIR given)" in md
    readme = ra.render_readme(res)
    assert readme.startswith("## Performance\n") and "```bash\npython benchmarks/run_all.py\n```" in readme
    assert len(_table_rows(readme)) == 10


def test_accuracy_section_reads_comparison_csv(tmp_path):
    assert "skipped" in ra.section_accuracy(None)
    assert "not found" in ra.section_accuracy(tmp_path)["skipped"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "comparison.csv").write_text(COMPARISON)
    acc = ra.section_accuracy(tmp_path)
    assert [r["run"] for r in acc["rows"]] == ["zeroshot-lb", "finetuned-lb"]
    assert acc["rows"][1]["mre_mm"] == 2.69
    table = ra.accuracy_table(acc).splitlines()
    assert table[0] == "| run | stage | variant | split | n_images | mre_ci95 | sdr_2.0_ci95 | human_mre_mm |"
    assert table[3] == "| finetuned-lb | fine_tuned | lb256 | test | 10 | 2.69 [2.33, 3.05] | 66.9 [63.8, 70.7] | 1.1 |"


def test_readme_without_results_is_one_line_error(tmp_path, capsys):
    assert ra.main(["--readme", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no cpu-*.json" in err and str(tmp_path) in err
    bad = tmp_path / "cpu-x.json"
    bad.write_text('{"format": "other"}')
    assert ra.main(["--readme", "--from", str(bad)]) == 1
    assert "not a cephalo-benchmarks results file" in capsys.readouterr().err


def test_bad_project_is_usage_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        ra.main(["--quick", "--out", str(tmp_path), "--project", str(tmp_path / "missing")])
    assert e.value.code == 2
    assert not list(tmp_path.glob("cpu-*"))


@pytest.mark.slow
@pytest.mark.pipeline
def test_pipeline_noop_and_dvc_status_times(tmp_path):
    snakemake, dvc = ra._tool("snakemake"), ra._tool("dvc")
    if snakemake is None or dvc is None:
        pytest.skip("snakemake/dvc not installed (cephalo[pipeline])")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Snakefile").write_text(
        'rule all:\n    input: "out/done.txt"\n\n'
        'rule make:\n    output: "out/done.txt"\n    shell: "echo ok > {output}"\n'
    )
    (proj / "dvc.yaml").write_text("stages:\n  make:\n    cmd: echo ok > dvcout.txt\n    outs:\n      - dvcout.txt\n")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")

    before = ra.section_pipeline(proj, [])  # nothing run yet: no no-op timing (it would be a real run)
    assert before["snakemake"]["up_to_date"] is False and before["snakemake"]["dry_run_rc"] == 0
    assert "noop_s" not in before["snakemake"] and "run it to the end" in before["snakemake"]["skipped_noop"]
    assert not (proj / "out" / "done.txt").exists()  # the dry run ran nothing
    assert "not a DVC project" in before["dvc"]["skipped"]

    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=proj, check=True, env=env)

    subprocess.run([snakemake, "--cores", "1", "-q"], cwd=proj, check=True, capture_output=True)
    subprocess.run([dvc, "repro", "-q"], cwd=proj, check=True, env=env, capture_output=True)
    after = ra.section_pipeline(proj, [])
    sm, dv = after["snakemake"], after["dvc"]
    assert sm["up_to_date"] is True and sm["noop_rc"] == 0 and sm["dry_run_s"] > 0 and sm["noop_s"] > 0
    assert dv["up_to_date"] is True and dv["status_rc"] == 0 and dv["status_s"] > 0
    assert "up to date" in dv["message"]


@pytest.mark.slow
def test_run_all_quick_writes_json_and_markdown(tmp_path):
    proj = tmp_path / "proj"
    (proj / "results").mkdir(parents=True)
    (proj / "results" / "comparison.csv").write_text(COMPARISON)
    out = tmp_path / "results"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [
        sys.executable,
        str(RUN_ALL),
        "--quick",
        "--out",
        str(out),
        "--project",
        str(proj),
        "--models",
        "timm:hrnet_w18_small",
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (jpath,), (mpath,) = list(out.glob("cpu-*.json")), list(out.glob("cpu-*.md"))
    assert jpath.stem == mpath.stem and len(jpath.stem) == len("cpu-20260101-120000")
    res = json.loads(jpath.read_text())
    assert res["format"] == "cephalo-benchmarks" and res["quick"] is True
    m = res["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["torch_threads"] >= 1
    assert "--quick" in res["command"] and "--models timm:hrnet_w18_small" in res["command"]

    ix = res["index"]
    assert ix["images"] == 20 and ix["rows"] == 20 * 29 * 2
    assert ix["header"]["build_s_per_1000"] > 0 and ix["pixels"]["build_s_per_1000"] > 0

    ld = res["loading"]
    assert [w["workers"] for w in ld["per_workers"]] == [0, 1, 2] and ld["input_size"] == 64
    for w in ld["per_workers"]:
        assert w["cache_batches_per_s"] > 0 and w["on_the_fly_batches_per_s"] > 0 and w["decode_only_batches_per_s"] > 0
        assert w["speedup_cache_vs_on_the_fly"] == pytest.approx(
            w["cache_batches_per_s"] / w["on_the_fly_batches_per_s"]
        )

    (inf,) = res["inference"]["results"]
    assert inf["model"] == "timm:hrnet_w18_small" and inf["input_size"] == 64 and inf["output_shape"] == [1, 19, 16, 16]
    assert inf["finite_predictions"] is True
    assert inf["overhead_ratio"] == pytest.approx(inf["predict_s"] / inf["forward_s"])

    (tr,) = res["training"]["results"]
    assert "error" not in tr, tr
    assert tr["seconds_per_step"] > 0 and tr["final_loss"] > 0 and tr["ratio"] == 1.0
    assert tr["peak_rss_mib"] >= tr["baseline_rss_mib"] > 50  # python + torch alone exceed 50 MiB

    assert (
        "no Snakefile" in res["pipeline"]["snakemake"]["skipped"]
        and "not a DVC project" in res["pipeline"]["dvc"]["skipped"]
    )
    assert [r["run"] for r in res["accuracy"]["rows"]] == ["zeroshot-lb", "finetuned-lb"]

    md = mpath.read_text()
    assert md.startswith("# cephalo CPU benchmarks (")
    rows = _table_rows(md)
    assert len(rows) == len(res["figures"]) == 1 + 6 + 1 + 1
    assert {r[0] for r in rows} == {"index", "loading", "inference", "training"}
    assert all(r[-1].startswith(m["cpu"]) and r[2] and r[5] for r in rows)  # machine, value, inputs on every row
    assert "| finetuned-lb | fine_tuned |" in md and "pipeline/snakemake: no Snakefile" in md

    r = subprocess.run(
        [sys.executable, str(RUN_ALL), "--readme", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("## Performance") and res["command"] in r.stdout
    assert len(_table_rows(r.stdout)) == len(rows)
