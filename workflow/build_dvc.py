"""Write dvc.yaml from the stage table in workflow/stages.py.

dvc.yaml is generated, never edited by hand: the table names each stage's command, inputs, params
and outputs once, and the outputs shared by stages of one kind once for all of them.

    python workflow/build_dvc.py          # rewrite dvc.yaml
    python workflow/build_dvc.py --check  # exit 1 if dvc.yaml is out of date (run by the tests)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DVC_YAML = HERE.parent / "dvc.yaml"


def _stages_module():
    """workflow/stages.py (loaded by path: workflow/ is no package)."""
    spec = importlib.util.spec_from_file_location("cephalo_workflow_stages", HERE / "stages.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key (``deps:\\n  - a``), as dvc.yaml has always been written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):  # noqa: ARG002
        return super().increase_indent(flow, False)


def _dump(data, indent: int) -> list[str]:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=72, indent=2)
    return [" " * indent + line if line else line for line in text.splitlines()]


def _comment(text: str, indent: int) -> list[str]:
    return [" " * indent + ("# " + line if line else "#") for line in text.splitlines()]


def render() -> str:
    """The text of dvc.yaml."""
    st = _stages_module()
    lines = _comment(st.HEADER, 0) + ["stages:"]
    for stage in st.STAGES:
        if stage.heading:
            lines += _comment(stage.heading, 2)
        lines.append(f"  {stage.name}:")
        if stage.doc:
            lines += _comment(stage.doc, 4)
        lines += _dump(stage.to_dvc(), 4)
        if stage.blank_after:
            lines.append("")
    lines += _comment(st.PLOTS_DOC, 0) + _dump({"plots": list(st.PLOTS)}, 0)
    text = "\n".join(lines) + "\n"
    assert yaml.safe_load(text) == st.dvc_document(), "the writer changed the table's meaning"
    return text


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DVC_YAML.is_file() or DVC_YAML.read_text() != text:
            print(
                f"{DVC_YAML.name} is out of date with workflow/stages.py; run: python workflow/build_dvc.py",
                file=sys.stderr,
            )
            return 1
        return 0
    DVC_YAML.write_text(text)
    print(f"wrote {DVC_YAML.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
