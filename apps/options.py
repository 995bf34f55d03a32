"""Click options generated from a config dataclass: every field becomes ``--field-name`` (default: unset, so the
YAML file or the dataclass default applies), with the field's ``help`` text."""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import click

from coseg.config import MASKS_HELP


class UserPath(click.Path):
    """``click.Path`` whose value's leading ``~`` is the home folder, as the shell makes an unquoted one and the config
    loader a config file's (:func:`coseg.engine.config.expand_paths`): a quoted ``"~/data"`` would otherwise be a folder
    named ``~`` in the current one. The type of every path option and argument of the commands."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        return super().convert(os.path.expanduser(value), param, ctx)


class OutputFolder(UserPath):
    """``UserPath`` of a folder a command writes into, refusing an empty value (an unset shell variable,
    ``--output "$OUT"``), which would be the current folder, its files among whatever that holds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(file_okay=False, **kwargs)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty (the current folder is '.')", param, ctx)
        return super().convert(value, param, ctx)


class ModelFile(UserPath):
    """``UserPath`` of an existing model file; a folder given instead (a run's) is refused naming the file to give,
    its ``best.safetensors``, where click says only "is a directory"."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        folder = Path(os.path.expanduser(value)) if isinstance(value, str) else None
        if folder is not None and folder.is_dir():
            best = folder / "best.safetensors"
            self.fail(f"{click.format_filename(value)} is a folder; a run's model is its best.safetensors"
                      + (f": {click.format_filename(best)}" if best.is_file() else ""), param, ctx)
        return super().convert(value, param, ctx)


def _click_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if typing.get_origin(annotation) is Union and len(args) == 1 else annotation
    if base in (int, float, str):
        return base
    return str  # lists are given comma-separated; the config loader splits and checks them


NAMES_FILE_HELP = "Names holding a comma: @FILE, a UTF-8 file of one name a line."
"""The help of every option that takes a list of names (:func:`name_list`)."""


def config_options(cls: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator adding one option per field of dataclass ``cls`` (except ``exclude``)."""
    hints = typing.get_type_hints(cls)

    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude:
                continue
            flag = f.name.replace("_", "-")
            text = f.metadata.get("help", "")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            if hints[f.name] == list[str]:  # the groups or classes to use: :func:`name_list`
                text = f"{text} {NAMES_FILE_HELP}"
            if shown not in ("", None, []):
                text = f"{text} [default: {shown}]"
            elif not re.search(r"\b(default|required)\b", text, re.IGNORECASE):  # else the text says what unset means
                text = f"{text} [default: unset]"
            if hints[f.name] in (bool, Optional[bool]):  # Optional: unset lets the component choose
                fn = click.option(f"--{flag}/--no-{flag}", f.name, default=None, help=text)(fn)
            else:
                fn = click.option(f"--{flag}", f.name, type=_click_type(hints[f.name]), default=None, help=text)(fn)
        return fn

    return decorate


def overrides(params: dict[str, Any], cls: type) -> dict[str, Any]:
    """The entries of click ``params`` that are fields of ``cls`` and were given."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in params.items() if k in names and v is not None}


TRAINERS: dict[type, Callable] = {}
"""Each trainer's config dataclass and its command's function (:func:`training_options`): a config file of one
trainer given to another is told as such (:func:`other_trainers_file`)."""


def training_options(cls: type) -> Callable:
    """``--config FILE.yaml``, ``--resume`` and one option per field of config dataclass ``cls``."""

    def decorate(fn: Callable) -> Callable:
        TRAINERS[cls] = fn
        fn = config_options(cls)(fn)
        fn = click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint, "
                                                         "with the options of its config.yaml (or of --config).")(fn)
        return click.option("--config", "config_file", type=UserPath(exists=True, dir_okay=False, path_type=Path),
                            help="YAML file with any of the options below but --resume, spelt as keys "
                                 "(image_size: 256; lists as YAML lists or comma-separated); flags given on the "
                                 "command line override it.")(fn)

    return decorate


def training_config(cls: type, config_file: Optional[Path], params: dict[str, Any], resume: bool = False) -> Any:
    """The resolved config: ``cls`` defaults ← YAML file ← flags; ``data`` must be set by one of them. With
    ``resume`` and no YAML file, the run's own ``config.yaml`` in ``--output`` is the file, when it is there (when it
    is not and no ``--data`` is given, nothing is resumed: an error naming the folder). ``data``, ``masks``
    (where ``cls`` has it), ``output``, ``cache_dir`` and ``device``, wherever they were given, are checked as the
    other commands' options are (a usage error before anything is read or written; a value of the file names the
    file; an empty folder is refused: :func:`written_folder`). A list of names (groups, classes) given on the command
    line is read by :func:`name_list` (``a,b`` or ``@FILE``); one that names none is a usage error: it would choose
    as if it were not given, and replace the file's choice."""
    from coseg.data import printable
    from coseg.engine import load_config
    from coseg.engine.config import expand_paths

    given = expand_paths(cls, overrides(params, cls))  # a quoted ~/run: the run's config.yaml is looked for there
    ctx = click.get_current_context()
    options = {p.name: p for p in ctx.command.params}
    if "output" in given:  # before --resume looks for the run's config.yaml there
        written_folder(given["output"], options["output"], ctx)
    hints = typing.get_type_hints(cls)
    for name, value in given.items():
        if hints[name] == list[str]:  # the groups or classes to use
            given[name] = name_list(ctx, options[name], value)
    if resume and config_file is None:
        output = Path(given.get("output", next(f.default for f in dataclasses.fields(cls) if f.name == "output")))
        if (output / "config.yaml").is_file():
            config_file = output / "config.yaml"
        elif "data" not in given:  # not "--data is required": the run's own config was to give it
            raise ValueError(f"{printable(output)}: nothing to resume (no config.yaml of a run there); give the run's "
                             "own --output, or train without --resume")
    if config_file is not None:
        other_trainers_file(cls, config_file)
    cfg = load_config(cls, config_file, given)
    if not cfg.data:
        raise click.UsageError("--data is required (in the config file or on the command line)")
    for name, check in (("data", UserPath(exists=True, file_okay=False).convert),
                        ("masks", UserPath(exists=True, file_okay=False).convert),
                        ("output", written_folder), ("cache_dir", written_folder),
                        ("device", lambda value, param, context: checked_device(context, param, value))):
        if getattr(cfg, name, None) is None:  # an optional folder not given, or not an option of ``cls``
            continue
        try:
            check(getattr(cfg, name), options[name], ctx)
        except click.BadParameter as e:
            if config_file is not None and name not in given:  # the file's value: say so (a path: relative to what)
                relative = ("" if name == "device"
                            else f"; a relative path there is read from the current folder, {Path.cwd()}")
                e.message += f" ({name}: {getattr(cfg, name) or repr('')} in {config_file}{relative})"
            raise
    return cfg


def name_list(ctx: Optional[click.Context], param: Optional[click.Parameter], value: Optional[str]
              ) -> Optional[list[str]]:
    """Option callback: the names of a comma-separated list (``a, b,``: a and b) or, for ``@FILE``, the lines of FILE
    (UTF-8; blank lines left out), which may hold commas; spaces around a name are dropped. None when the option is
    not given. One naming none (an unset shell variable, an empty file) is a usage error: leaving the option out is
    how to choose by default; so is a FILE that cannot be read, named."""
    if value is None:
        return None
    if value.startswith("@"):
        return _names_file(value[1:], ctx, param)
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("names none (an unset shell variable?): give the names, or leave the option out",
                                 ctx, param)
    return names


def _names_file(path: str, ctx: Optional[click.Context], param: Optional[click.Parameter]) -> list[str]:
    """The names of :func:`name_list`'s ``@FILE``; a usage error naming the file when it cannot be read or names
    none."""
    from coseg.data.io import printable

    path = os.path.expanduser(path)
    file = f"the names file '{printable(path)}'"
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark some editors write is no name
            names = [line.strip() for line in f.read().split("\n") if line.strip()]
    except OSError as e:
        raise click.BadParameter(f"cannot read {file} ({e.strerror or e})", ctx, param) from None
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{file} is not UTF-8 text (byte {e.object[e.start]:#x} at position {e.start}): "
                                 "save it as UTF-8", ctx, param) from None
    if not names:
        raise click.BadParameter(f"{file} names none: write one name a line", ctx, param)
    return names


def written_folder(value: str, param: click.Parameter, ctx: click.Context) -> str:
    """``value`` checked as a folder a run writes into (``--output``, ``--cache-dir``): not a file, and not empty
    (:class:`OutputFolder`)."""
    return OutputFolder().convert(value, param, ctx)


def other_trainers_file(cls: type, config_file: Path) -> None:
    """Raise ``ConfigError`` (a usage error) naming the command to give ``config_file`` to when its keys are not all
    options of ``cls`` but all those of another trainer's config (:data:`TRAINERS`), e.g. a retrieval run's
    ``config.yaml`` given to ``coseg train``: otherwise told as dozens of unknown keys."""
    from coseg.engine import ConfigError
    from coseg.engine.config import read_config_file

    keys = set(map(str, read_config_file(cls, config_file)))
    unknown = sorted(keys - {f.name for f in dataclasses.fields(cls)})
    if not unknown:
        return
    for other, command in trainer_commands().items():
        if other is not cls and keys <= {f.name for f in dataclasses.fields(other)}:
            raise ConfigError(f"{config_file}: a config file of `coseg {command}`, not of this command (its "
                              f"keys {', '.join(unknown[:3])}{', ...' if unknown[3:] else ''} are that command's "
                              f"options): give it to `coseg {command} --config`")


def trainer_commands() -> dict[type, str]:
    """Each trainer's config class (:data:`TRAINERS`) → the words naming its command below the root of the current
    command line (e.g. ``retrieval train``). Walking the commands imports those of a lazy group
    (``apps.cli.LazyGroup``), whose trainers register as they are imported."""

    def walk(group: click.Group, words: str) -> Iterator[tuple[str, click.Command]]:
        for name, command in group.commands.items():
            yield words + name, command
            if isinstance(command, click.Group):
                yield from walk(command, f"{words}{name} ")

    root = click.get_current_context().find_root().command
    named = {command.callback: words for words, command in (walk(root, "") if isinstance(root, click.Group) else ())}
    return {cls: named.get(fn, fn.__name__) for cls, fn in TRAINERS.items()}


def checked_device(ctx: Optional[click.Context], param: Optional[click.Parameter], value: str) -> str:
    """Option callback: ``value`` if this machine has that device (auto, cpu, cuda or cuda:N), else a usage error."""
    from coseg.engine import resolve_device

    try:
        resolve_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None
    return value


def known_layout(registry: str) -> Callable[[click.Context, click.Parameter, str], str]:
    """Option callback for ``--layout``: the value if it is ``auto`` or a name in ``registry`` (``module:NAME``, read
    when the option is, so layouts registered by then count), else a usage error listing the valid ones."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        module, name = registry.split(":")
        names = ["auto", *getattr(importlib.import_module(module), name).names()]
        if value not in names:
            raise click.BadParameter(f"{value!r} is not a layout; valid: {', '.join(names)}", ctx, param)
        return value

    return check


# The options that mean the same in every command that takes them.
masks_option = click.option("--masks", type=UserPath(exists=True, file_okay=False, path_type=Path), help=MASKS_HELP)
device_option = click.option("--device", default="auto", show_default=True, callback=checked_device,
                             help="auto, cpu, cuda or cuda:N.")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
image_size_option = click.option("--image-size", type=click.IntRange(1, None),
                                 help="Inference size in pixels (default: the size the checkpoint was trained at; a "
                                      "co-segmentation model needs a multiple of its output stride, 32 by default).")


def not_training_state(ctx: click.Context, param: click.Parameter, value: Union[Path, tuple[Path, ...]]
                       ) -> Union[Path, tuple[Path, ...]]:
    """Option or argument callback: a usage error for a run's ``last.pt``, the training state ``--resume`` reads,
    given where a model file (or files: ``value`` a tuple) is needed (else refused as a file that is not safetensors,
    which does not say what to give)."""
    from coseg.models.checkpoint import TRAINING_STATE, training_state_given

    for path in value if isinstance(value, tuple) else (value,):
        if path.name == TRAINING_STATE:
            raise click.BadParameter(training_state_given(path), ctx, param)
    return value


checkpoint_option = click.option("--checkpoint", required=True, type=ModelFile(), callback=not_training_state,
                                 help="Model file (best.safetensors or last.safetensors of a run).")
workers_option = click.option("--workers", default=0, show_default=True, type=click.IntRange(0, None),
                              help="DataLoader worker processes reading the images (0: the main process reads them).")


def batch_size_option(default: int) -> Callable:
    """``--batch-size``: images per forward pass, at least 1."""
    return click.option("--batch-size", default=default, show_default=True, type=click.IntRange(1, None),
                        help="Images per forward pass.")


def report_options(what: str) -> Callable:
    """``--report`` (write OUTPUT/report.html about ``what``) and the report's size options."""

    def decorate(fn: Callable) -> Callable:
        fn = click.option("--thumbnail", type=click.IntRange(min=1), default=160, show_default=True,
                          help="Report thumbnails: longer side in pixels.")(fn)
        return click.option("--report", is_flag=True,
                            help=f"Also write OUTPUT/report.html (static, opens offline; PNGs in "
                                 f"OUTPUT/report_files/): {what}. `coseg report OUTPUT` rebuilds it.")(fn)

    return decorate


def check_report_only(report: bool, *names: str) -> None:
    """Without ``--report``, refuse (usage error) the report's options ``names`` given on the command line, which
    nothing would read."""
    if report:
        return
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [name for name in names if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags}: an option of the report, which only --report writes: add --report, or leave "
                               f"{'it' if len(given) == 1 else 'them'} out")


def echo(text: str) -> None:
    """Print a line of a command's output; undecodable bytes of file names in it appear as ``\\xNN`` (printing them
    raw fails on a UTF-8 stream)."""
    from coseg.data.io import printable

    click.echo(printable(text))


def echo_report(result: Any) -> None:
    """Print where a ``coseg.report.build.ReportResult`` went and the sections that could not be reported."""
    echo(f"report: {result.path} ({len(result.sections)} section(s); images in {result.files}/)")
    for heading, reason in result.problems:
        echo(f"  not reported: {heading}: {reason}")
    for folder in result.left_out:
        echo(f"  left out: {folder} (it cannot be listed or entered)")
    if result.unshown:
        echo(f"  not shown: {len(result.unshown)} picture(s), each caption says why (the first: {result.unshown[0]})")
