"""The README against the code: its Python API example runs as written (on a small generated data set instead of
../shared); its command lines, options, paths and stated defaults exist, so a renamed option or a moved default
shows here instead of in a user's shell."""
from __future__ import annotations

import os
import re
import runpy
from pathlib import Path
from typing import Iterator

import click
import pytest

from coseg.data import make_synthetic_coseg

README = Path(__file__).resolve().parents[1] / "README.md"
SHARED_ICOSEG = '"../shared/data/icoseg"'


def python_api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README has no ```python block under '## Python API'"
    return match.group(1)


@pytest.mark.slow
def test_python_api_example_runs(tmp_path: Path) -> None:
    code = python_api_block()
    assert code.count(SHARED_ICOSEG) == 1, "the example should read iCoseg from ../shared once"
    data = make_synthetic_coseg(tmp_path / "icoseg", num_groups=2, images_per_group=3, size=64, seed=0)
    script = tmp_path / "api.py"
    script.write_text(code.replace(SHARED_ICOSEG, repr(str(data))), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = runpy.run_path(str(script))
    finally:
        os.chdir(cwd)
    assert namespace["probs"].shape == (40, 1, 224, 224)
    assert namespace["masks"].shape == (40, 1, 336, 336)
    assert len(namespace["ensemble"].members) == 2
    assert len(namespace["scan"].samples) == 6
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "other.safetensors").is_file()


REPO = README.parent
TEXT = README.read_text(encoding="utf-8")
PROSE = re.sub(r"```.*?```", "", TEXT, flags=re.S)  # the text outside code blocks
PATH = re.compile(r"\.?[\w.-]+(/[\w.-]+)*\.(py|sh|md|png|txt|ini)|(scripts|\.ci|tests|docs|benchmarks)/[\w./-]+")
RUN_OUTPUTS = ("runs/", "bench_out/", "demo_out/", "../shared/")  # made by the commands shown, or beside the repo
OTHER_TOOLS = {"--nproc_per_node", "--standalone", "--exclude-editable", "--all"}  # torchrun's and pip's own


def commands() -> dict[tuple[str, ...], click.Command]:
    """Every ``coseg`` command by its words (``("retrieval", "train")``)."""
    from apps.cli import main

    def walk(group: click.Group, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + (name,))
            else:
                yield prefix + (name,), cmd

    return dict(walk(main, ()))


def options(cmd: click.Command) -> set[str]:
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}


def bash_lines() -> list[str]:
    """Every line of the README's ```bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*", "", line).strip()
            if line:
                lines.append(line)
    return lines


def flags(text: str) -> list[str]:
    return re.findall(r"(?<![\w-])--[a-z][\w-]*", text)


def code_spans() -> list[str]:
    """The README's `inline code` outside code blocks (a span may wrap onto the next line)."""
    return re.findall(r"`([^`]+)`", PROSE)


def test_command_lines_name_existing_commands_and_their_options() -> None:
    known = commands()
    checked = 0
    for line in bash_lines():
        match = re.search(r"(?:^coseg|-m apps\.cli)\s+(.*)", line)
        if not match:
            continue
        words = match.group(1).split()
        path = (words[0],) if (words[0],) in known else tuple(words[:2])
        assert path in known, f"README runs an unknown command: {line}"
        unknown = set(flags(line)) - options(known[path]) - OTHER_TOOLS
        assert not unknown, f"`coseg {' '.join(path)}` has no option {sorted(unknown)}: {line}"
        checked += 1
    assert checked >= 15


def test_resume_lines_read_the_run_s_own_config() -> None:
    # --resume refuses options other than the run's, so a line after `--config my.yaml --lr 3e-4` must not reuse my.yaml
    resumes = [line for line in bash_lines() if "--resume" in flags(line)]
    assert resumes
    for line in resumes:  # the saved file given, or none: --resume then reads OUTPUT/config.yaml
        assert re.search(r"--config \S+/config\.yaml", line) or "--config" not in flags(line), \
            f"resume from the run's saved config.yaml: {line}"


def test_every_command_is_documented() -> None:
    for path in commands():
        assert f"coseg {' '.join(path)}" in TEXT, f"README never shows `coseg {' '.join(path)}`"


def test_every_option_named_exists() -> None:
    from apps.cli import main

    known = set().union(*map(options, commands().values())) | options(main) | OTHER_TOOLS
    for script in (REPO / "benchmarks").glob("*.py"):
        known |= set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text(encoding="utf-8")))
    named = {flag for span in code_spans() for flag in flags(span)}
    named |= {flag for line in bash_lines() for flag in flags(line)}
    assert not named - known, f"README names options no command or benchmark has: {sorted(named - known)}"


BENCHMARK_LINE = re.compile(r"benchmarks/(\w+)\.py\b([^`]*)")  # a benchmark script and what follows it


def benchmark_lines() -> list[tuple[str, str]]:
    """(script, the rest of its command line) of every ``benchmarks/X.py`` run in a bash block or inline code."""
    texts = bash_lines() + [span for span in code_spans() if "benchmarks/" in span]
    return [match.groups() for text in texts for match in BENCHMARK_LINE.finditer(text)]


def test_benchmark_lines_use_their_own_script_s_options() -> None:
    # each script's own options: one script's --rounds or --images on another's line is an error in a user's shell
    from dataclasses import fields

    from apps.retrieval.config import RetrievalTrainConfig
    from coseg.config import CosegTrainConfig

    set_keys = {"coseg_icoseg": {f.name for f in fields(CosegTrainConfig)},
                "retrieval_flowers": {f.name for f in fields(RetrievalTrainConfig)}}  # what their --set overrides
    checked = 0
    for script, rest in benchmark_lines():
        path = REPO / "benchmarks" / f"{script}.py"
        assert path.is_file(), f"README runs a benchmark that does not exist: benchmarks/{script}.py"
        source = path.read_text(encoding="utf-8")
        own = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source)) | {"--help"}
        unknown = set(flags(rest)) - own
        assert not unknown, f"benchmarks/{script}.py has no option {sorted(unknown)}: {rest.strip()}"
        for key in re.findall(r"--set\s+(\w+)=", rest):
            assert key in set_keys.get(script, set()), f"benchmarks/{script}.py --set {key}=: no such config key"
        checked += 1
    assert checked >= 15, "the benchmark pattern no longer finds the README's benchmark command lines"


def test_named_paths_exist() -> None:
    words = [w for span in code_spans() for w in span.split()] + re.findall(r"\]\(([^)#]+)\)", PROSE)
    words += [w for line in bash_lines() for w in line.split()]
    paths = {w for w in words if PATH.fullmatch(w) and not w.startswith(RUN_OUTPUTS)}
    assert {"coseg/data/layouts.py", "scripts/bootstrap.sh", "docs/report.png", "constraints.txt",
            "benchmarks/large_group.py"} <= paths, "the path pattern no longer finds the README's paths"
    missing = sorted(p for p in paths if "/" in p and not (REPO / p).exists())
    assert not missing, f"README names files that do not exist: {missing}"


def stated(pattern: str) -> str:
    match = re.search(pattern, TEXT, flags=re.S)
    assert match, f"README no longer states {pattern!r}"
    return match.group(1)


def test_stated_defaults_match_the_code() -> None:
    from apps.retrieval.config import RetrievalTrainConfig
    from coseg import demo, inference
    from coseg.config import CosegTrainConfig
    from coseg.models import cosegnet

    known = commands()

    def default(path: tuple[str, ...], name: str) -> object:
        return next(p.default for p in known[path].params if p.name == name)

    for path in (("evaluate",), ("predict",)):
        edge_radius = stated(r"`--edge-radius`, a fraction of the image side,\s+default ([\d.]+)")
        assert float(edge_radius) == default(path, "edge_radius")
        colour_scale = stated(r"at (\S+) × the model's input side\s+\(`--colour-scale`")
        assert float(colour_scale) == default(path, "colour_scale")
    assert int(stated(r"`--per-group N` \(default (\d+)\)")) == default(("report",), "per_group")
    stream_above = stated(r"A group of more than (\d+) images \(`coseg\.inference\.STREAM_ABOVE`")
    assert int(stream_above) == inference.STREAM_ABOVE
    assert int(stated(r"at most \d+ of its group \(default (\d+)\)")) == cosegnet.MAX_REFERENCES
    assert int(stated(r"`make demo` generates (\d+) groups")) == demo.DEMO_GROUPS
    assert int(stated(r"generates \d+ groups of (\d+) synthetic images")) == demo.DEMO_IMAGES_PER_GROUP
    assert int(stated(r"evaluates the (\d+) groups it never saw")) == demo.DEMO_TEST_GROUPS
    assert float(stated(r"`--minutes` \(default (\d+)\) sets the budget")) == default(("demo",), "minutes")
    demo_output = stated(r"`make demo` is `coseg demo --output\s+(\w+)`")
    assert f"coseg demo --output {demo_output}\n" in (REPO / "Makefile").read_text(encoding="utf-8")
    retrieval = RetrievalTrainConfig()
    assert int(stated(r"the defaults \((\d+) classes per batch")) == retrieval.classes_per_batch
    assert float(stated(r"classes per batch, (\d+) % of the training classes")) / 100 == retrieval.val_fraction
    assert CosegTrainConfig().members == 3 and "an **ensemble of three models**" in TEXT
    assert float(stated(r"Validation = (\d+) % of the `train30` groups")) / 100 == CosegTrainConfig().val_fraction


def test_options_a_resume_may_change_are_the_code_s() -> None:
    from coseg.engine import RESUMABLE

    row = stated(r"\| `--resume` with other options than the run's \(both trainers\) \|([^\n]*)")
    coseg_part = stated_in(row, r"only (.*?) may change")
    retrieval_part = stated_in(row, r"`retrieval train`: also (.*?)\)")
    assert set(re.findall(r"`(\w+)`", coseg_part)) == RESUMABLE - {"overwrite"}
    source = (REPO / "apps/retrieval/train.py").read_text(encoding="utf-8")
    extra = set(re.findall(r"\"(\w+)\"", stated_in(source, r"resumable=RESUMABLE \| \{([^}]*)\}")))  # its own list
    assert set(re.findall(r"`(\w+)`", retrieval_part)) == extra


def stated_in(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    assert match, f"not found: {pattern!r}"
    return match.group(1)
