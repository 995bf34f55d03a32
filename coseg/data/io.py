"""Reading images and binary masks robustly, and writing PNGs atomically.

Images are decoded with OpenCV from the file's bytes (``cv2.imdecode``), so any file name the OS accepts works,
including non-ASCII and non-UTF-8 ones. ``cv2.IMREAD_COLOR`` already gives 3-channel 8-bit BGR for grayscale,
RGBA (alpha dropped), 16-bit and CMYK JPEGs, and rotates by the EXIF orientation tag (for every format; OpenCV's
TIFF decoder rotates even when told not to). 16-bit values are scaled from their full range (65535 → 255, about
a 256th), as OpenCV, scikit-image and torchvision do and as the PNG standard has writers of fewer significant bits
store them: 12-bit data stored unscaled in 16 bits (at most 4095) reads nearly black (at most 16), so scale it to
the full range first. A float TIFF, which OpenCV does not decode, is read unchanged and scaled to 8-bit (a 32-bit
integer one is refused, saying so); an 8-bit gray + alpha TIFF, which it refuses or garbles when tiled, is decoded
by Pillow; a float gray + alpha TIFF, which neither decodes, is refused, saying so. The image as stored is that
rotated image turned back by the orientation tag as Pillow reads it, for every format alike. Masks are decoded with
Pillow, which keeps palette indices and 1-bit data as stored, and are never EXIF-rotated: a mask is taken pixel for
pixel as stored (a 16-bit or float gray + alpha TIFF mask, which Pillow does not decode, is refused, saying so).
``read_pair`` reconciles the two: when the EXIF-rotated image does not fit the mask but the stored one does, the
image is used as stored; ``fit_to_mask`` turns a prediction made on the rotated image back by the same rule, and
resizes it to a mask of the image's aspect ratio saved at another resolution (evaluation scores at the mask's size;
training, through ``read_pair(resize_image=True)``, takes the image at the mask's size).

Every failure is a ``DataFileError`` naming the file, so a caller can skip one bad file and go on; the lines OpenCV
logs about it (its BMP, GIF, TIFF and JPEG 2000 decoders'), which name no file, are kept off the terminal (libpng and
libjpeg print their own, about damaged PNG and JPEG data, past OpenCV's log).
"""
from __future__ import annotations

import io
import os
import re
import struct
import threading
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin

from coseg.atomic import PathLike, write_bytes_atomic

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                            ".jp2"})
MASK_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff", ".gif"})
# image formats users have that are not read (HEIC from phones, camera raw, ...): reported by the layouts, not
# silently passed over
UNSUPPORTED_SUFFIXES = frozenset({".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".dng", ".cr2", ".nef", ".arw",
                                  ".raw"})

_JPEG_START = b"\xff\xd8"
_TIFF_STARTS = (b"II*\x00", b"MM\x00*")
_BITS_PER_SAMPLE, _SAMPLES_PER_PIXEL, _SAMPLE_FORMAT = 258, 277, 339  # TIFF tags
_FLOAT_SAMPLES = 3  # SampleFormat of IEEE floating-point samples
_JPEG_MARKER = re.compile(rb"\xff([^\x00\xff\xd0-\xd7])")  # not a stuffed 0xFF byte, a fill byte or a restart
_JPEG_SCAN, _JPEG_END = 0xDA, 0xD9
_JPEG_NO_LENGTH = frozenset({0x01, 0xD8})  # markers without a length field (restarts are skipped by the pattern)
_SHOWN_VALUES = 8
_WHITE, _BLACK = (255, 255, 255), (0, 0, 0)
_EXIF_ORIENTATION = 0x0112
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# what Pillow raises for a damaged file (OverflowError: e.g. a TIFF whose tile width makes a row's stride too large)
_PILLOW_FAILURES = (OSError, SyntaxError, ValueError, OverflowError, Image.DecompressionBombError)


_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def natural_key(name: str) -> tuple[list, str]:
    """Sort key ordering names with numbers by their value (``member2`` before ``member10``), ties by the name."""
    return [int(part) if n % 2 else part for n, part in enumerate(re.split(r"(\d+)", name))], name  # odd: digits


def printable(name: Union[str, os.PathLike]) -> str:
    """``name`` as text safe to print or log: undecodable bytes of a file name and control characters (a line break
    in a name would start a line of its own in a log) appear as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace").translate(_CONTROL_ESCAPES)


SHOWN_NAMES = 10
"""How many names :func:`shown_names` lists; the others are counted."""


def shown_names(names: Sequence[Union[str, os.PathLike]], quote: bool = False) -> str:
    """The first :data:`SHOWN_NAMES` of ``names``, :func:`printable` (in single quotes with ``quote``), comma-separated;
    the others counted (``…, … (N more)``), so a message naming them stays readable whatever their number."""
    shown = [f"'{printable(name)}'" if quote else printable(name) for name in names[:SHOWN_NAMES]]
    more = len(names) - SHOWN_NAMES
    return ", ".join(shown) + (f", … ({more} more)" if more > 0 else "")


class DataFileError(Exception):
    """A data file that cannot be used; ``path`` is the file, ``problem`` says why."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{printable(self.path)}: {problem}")


class ImageReadError(DataFileError):
    """The file is missing, empty, truncated or not an image."""


class MaskError(DataFileError):
    """The file is an image but not a binary mask we can interpret (or does not fit its image)."""


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(path, f"cannot read file ({e.strerror or e})") from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    return data


def _truncated_jpeg(data: bytes) -> bool:
    """True for a JPEG whose data ends after the start of a scan and before its end-of-image marker.

    Segments are skipped by their length, so an EXIF thumbnail's markers do not count, and the image ends at its
    first end-of-image marker: data appended after it (the video of a phone's motion photo, a maker's trailer) is
    not part of it. Needed because OpenCV returns a grey-filled partial image for a cut-off JPEG."""
    if not data.startswith(_JPEG_START):
        return False
    position, scanned = len(_JPEG_START), False
    while (marker := _JPEG_MARKER.search(data, position)) is not None:
        code = marker.group(1)[0]
        if code == _JPEG_END:
            return False
        scanned |= code == _JPEG_SCAN
        position = marker.end()
        if code not in _JPEG_NO_LENGTH:
            position += int.from_bytes(data[position:position + 2], "big")
    return scanned


def _float_image(data: bytes, path: Path) -> Optional[np.ndarray]:
    """A floating-point image (a 32/64-bit float TIFF, which ``cv2.IMREAD_COLOR`` does not decode) as ``(H, W, 3)``
    uint8 BGR, alpha dropped: colour values all within [0, 1] are scaled by 255, others clipped to [0, 255]. None
    for other files; ``ImageReadError`` for NaN or infinite values, which no scaling makes a colour, and for a 32-bit
    integer image (TIFF), which it does not decode either and whose range no file tells."""
    array = _unchanged(data)  # EXIF-turned, as IMREAD_COLOR
    if array is not None and array.dtype in (np.int32, np.uint32):
        raise ImageReadError(path, f"32-bit integer image ({array.dtype}) is not supported: save it as 8- or 16-bit")
    if array is None or not np.issubdtype(array.dtype, np.floating) or array.shape[2:] not in ((), (3,), (4,)):
        return None
    if array.ndim == 3:
        array = array[..., :3]  # alpha dropped
    finite = np.isfinite(array)
    if not finite.all():
        raise ImageReadError(path, f"floating-point image holds {finite.size - np.count_nonzero(finite)} NaN or "
                                   "infinite value(s)")
    if array.min() >= 0 and array.max() <= 1:
        array *= 255
    np.rint(np.clip(array, 0, 255, out=array), out=array)
    bgr = array.astype(np.uint8)
    return cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR) if bgr.ndim == 2 else bgr


class _QuietOpenCV:
    """While any thread is inside, OpenCV's log is silent: a damaged file's decoder logs lines naming no file
    (twice, one per decode tried), where the ``DataFileError`` raised instead names it. The log level is the
    process's, so threads decoding at once share one quiet spell and the level is put back when the last leaves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._level = 0
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child no thread is inside: a lock held by a parent's thread would never be released there."""
        self._lock = threading.Lock()
        if self._inside:
            self._inside = 0
            cv2.utils.logging.setLogLevel(self._level)

    def __enter__(self) -> None:
        with self._lock:
            if not self._inside:
                self._level = cv2.utils.logging.getLogLevel()
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside:
                cv2.utils.logging.setLogLevel(self._level)


_QUIET_OPENCV = _QuietOpenCV()


def _imdecode(data: bytes, flags: int) -> Optional[np.ndarray]:
    """``cv2.imdecode`` of the file's data with OpenCV's log silent (:class:`_QuietOpenCV`); None if it cannot."""
    with _QUIET_OPENCV:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _unchanged(data: bytes) -> Optional[np.ndarray]:
    """The file's data as OpenCV decodes it unchanged (any depth and channels); None if it cannot."""
    return _imdecode(data, cv2.IMREAD_UNCHANGED)


def _float_array(data: bytes) -> Optional[np.ndarray]:
    """The file's data as OpenCV decodes it unchanged, when that is floating-point (a float TIFF); else None."""
    array = _unchanged(data)
    return array if array is not None and np.issubdtype(array.dtype, np.floating) else None


def _gray_alpha_tiff(data: bytes) -> Optional[np.ndarray]:
    """An 8-bit gray + alpha TIFF (Pillow's mode "LA"; "La": associated alpha; "L" of two samples: an unspecified
    extra one) as ``(H, W, 3)`` uint8 gray, alpha dropped, EXIF-turned as ``cv2.IMREAD_COLOR`` turns images; None
    for other data or what Pillow cannot decode. OpenCV refuses such a TIFF when tiled, and garbles the edge tiles
    of a compressed one."""
    if not data.startswith(_TIFF_STARTS):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # OpenCV decodes such images too
            with Image.open(io.BytesIO(data)) as im:
                if im.mode not in ("LA", "La") and not (im.mode == "L" and im.tag_v2.get(_SAMPLES_PER_PIXEL) == 2):
                    return None
                im.load()  # Pillow 13 turns a TIFF by its orientation tag here and drops the tag; older ones do not
                array = np.asarray(ImageOps.exif_transpose(im))
    except _PILLOW_FAILURES:
        return None
    return cv2.cvtColor(np.ascontiguousarray(array[..., 0]) if array.ndim == 3 else array, cv2.COLOR_GRAY2BGR)


def _first_value(value: object) -> Optional[int]:
    """A TIFF tag's first value (Pillow gives a tuple or a single value), None when it holds no integer."""
    value = value[0] if isinstance(value, tuple) and value else value
    return value if isinstance(value, int) else None


def _deep_gray_alpha(data: bytes) -> Optional[str]:
    """The samples of a gray + alpha TIFF (two samples per pixel) deeper than 8 bits, e.g. "16-bit" or "32-bit
    float", read from its first directory's tags; None for other data. Pillow decodes no such TIFF, and OpenCV only
    the integer ones, as images."""
    if not data.startswith(_TIFF_STARTS):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of damaged tags, which the decoders report
            tags = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
            stream = io.BytesIO(data)
            stream.seek(tags.next)
            tags.load(stream)
            samples, bits, kind = (_first_value(tags.get(tag))  # decoded here, as they are read
                                   for tag in (_SAMPLES_PER_PIXEL, _BITS_PER_SAMPLE, _SAMPLE_FORMAT))
    except (*_PILLOW_FAILURES, struct.error):
        return None
    if samples != 2 or bits is None or bits <= 8:
        return None
    return f"{bits}-bit{' float' if kind == _FLOAT_SAMPLES else ''}"


def _decode_image(data: bytes, path: Path, apply_exif: bool) -> np.ndarray:
    if _truncated_jpeg(data):
        raise ImageReadError(path, "truncated JPEG (its data ends before the end-of-image marker)")
    deep = _deep_gray_alpha(data)
    if deep is not None and deep.endswith("float"):  # OpenCV refuses it too, printing its TIFF decoder's complaint
        raise ImageReadError(path, f"{deep} gray + alpha TIFF is not read: save it without alpha, or as 8- or 16-bit")
    try:
        bgr = _gray_alpha_tiff(data)
        if bgr is None:
            bgr = _imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            bgr = _float_image(data, path)
    except cv2.error as e:
        raise ImageReadError(path, f"OpenCV cannot decode it ({e.err})") from None  # one line, without its source path
    if bgr is None or bgr.size == 0:
        raise ImageReadError(path, "not a decodable image (unknown format, corrupt or truncated)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second full-size copy
    return rgb if apply_exif else _as_stored(rgb, _exif_orientation(data))


def read_image(path: PathLike, apply_exif: bool = True) -> np.ndarray:
    """Image at ``path`` as ``(H, W, 3)`` uint8 RGB, EXIF-rotated unless ``apply_exif=False``.

    Grayscale becomes 3 equal channels, alpha is dropped, 16-bit is scaled to 8-bit from its full range (65535 →
    255), CMYK JPEG becomes RGB, float (TIFF) is scaled by 255 when within [0, 1] and clipped to [0, 255] otherwise.
    Raises ``ImageReadError`` naming the file."""
    path = Path(path)
    return _decode_image(_read_bytes(path), path, apply_exif)


def _jpeg_full_size(data: bytes) -> Optional[tuple[int, int]]:
    """(H, W) of a JPEG as viewed (after its EXIF rotation), read from its header; None for other files."""
    if not data.startswith(_JPEG_START):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read here
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                turned = im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
    except _PILLOW_FAILURES:
        return None  # the full decode reports the problem
    return (width, height) if turned else (height, width)


def read_image_for_size(path: PathLike, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at ``path`` for resizing to ``size``×``size``: ``(H', W', 3)`` uint8 RGB, EXIF-rotated, and the
    image's full (H, W) after rotation.

    A JPEG whose shorter side is at least twice ``size`` is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling), keeping the shorter side at least ``size``: a 10,000 × 10,000 JPEG then takes ~20 MB and a fraction
    of the time, where a full decode takes ~600 MB. Other images are decoded in full. Raises ``ImageReadError``."""
    path = Path(path)
    data = _read_bytes(path)
    full = None if _truncated_jpeg(data) else _jpeg_full_size(data)
    factor = next((f for f in (8, 4, 2) if full is not None and min(full) >= f * size), 1)
    if factor > 1:
        bgr = _imdecode(data, _REDUCED[factor])
        if bgr is not None and bgr.shape[:2] == tuple(-(-side // factor) for side in full):  # type: ignore[union-attr]
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr), full  # type: ignore[return-value]
    image = _decode_image(data, path, apply_exif=True)
    return image, (image.shape[0], image.shape[1])


def _describe(values: np.ndarray) -> str:
    """Distinct values (rows for colours) as text, at most a few of them."""
    shown = [tuple(v.tolist()) if v.ndim else v.item() for v in values[:_SHOWN_VALUES]]
    text = ", ".join(str(v) for v in shown)
    return f"{text}, ... ({len(values)} distinct)" if len(values) > _SHOWN_VALUES else text


def _binary_levels(values: np.ndarray, path: Path) -> np.ndarray:
    """Foreground of a grayscale mask: values must be 0 and one of 1 / 255 / 65535 (or only one of those)."""
    levels = np.unique(values)
    nonzero = levels[levels != 0]
    if len(nonzero) > 1 or (len(nonzero) == 1 and nonzero[0] not in (1, 255, 65535)):
        raise MaskError(path, f"grayscale mask must hold two levels, 0 and 1/255, found values {_describe(levels)}")
    return values != 0


def _palette_indices(indices: np.ndarray, palette: Optional[list[int]], path: Path,
                     any_nonzero: bool = False) -> np.ndarray:
    """Foreground of a palette mask: index 0 = background and, unless ``any_nonzero``, at most one other index used;
    but white where index 0 is white and the other indices used are black, as some GIF and PNG writers order a
    black-and-white palette."""
    used = np.unique(indices)
    if not any_nonzero and (len(used) > 2 or (len(used) == 2 and used[0] != 0)):
        raise MaskError(path, f"palette mask must use index 0 (background) and one other index, found indices "
                              f"{_describe(used)}")
    colours = [tuple((palette or [])[3 * i:3 * i + 3]) for i in (0, *used[used != 0])]
    if colours[0] == _WHITE and all(colour == _BLACK for colour in colours[1:]):
        return indices == 0
    return indices != 0


def _opaque(array: np.ndarray, path: Path) -> np.ndarray:
    """Drop a constant alpha channel; a mask with transparency is ambiguous."""
    alpha = array[..., -1]
    if alpha.min() != alpha.max():
        raise MaskError(path, f"mask has transparency (alpha values {_describe(np.unique(alpha))}); "
                              "save it without alpha")
    return array[..., :-1]


def _stored_16_bit(im: Image.Image) -> bool:
    """Whether the not yet loaded ``im`` stores 16 bits per channel (its decoder's raw mode, e.g. "RGB;16B")."""
    args = im.tile[0][3] if im.tile else ""
    raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
    return isinstance(raw, str) and ";16" in raw


def _deep_colours(data: bytes, path: Path) -> Optional[np.ndarray]:
    """The channels of a 16-bit colour mask, ``(H, W, 3 or 4)`` uint16 RGB(A) as stored, which Pillow would cut to
    their high byte (0/255 would read as all black); None if OpenCV does not decode it so."""
    array = _unchanged(data)  # no EXIF turn, except in TIFF
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        return None
    if _exif_orientation(data) not in (None, 1):
        raise MaskError(path, "16-bit colour mask with an EXIF orientation tag: save it as 8-bit or grayscale")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)


def _float_mask(data: bytes) -> Optional[str]:
    """The kind of a floating-point image Pillow does not decode (64-bit or colour float TIFF), e.g. "float32 colour",
    as OpenCV decodes it; None for other data."""
    try:
        array = _float_array(data)
    except cv2.error:
        return None
    return None if array is None else f"{array.dtype} {'colour' if array.ndim == 3 else 'grayscale'}"


def read_mask(path: PathLike, any_nonzero: bool = False) -> np.ndarray:
    """Binary mask at ``path`` as ``(H, W)`` bool (True = foreground), pixel for pixel as stored.

    Accepted: 1-bit; 8/16-bit and 32-bit float grayscale with values 0 and 1, 255 or 65535; palette images using at
    most two indices, index 0 = background (white where index 0 is white and the other black); RGB(A) holding only
    black and white (16-bit: black and grey 1, 255 or 65535). With ``any_nonzero`` (Internet data set) any non-zero
    value, index or colour is foreground (a palette whose index 0 is white and whose other indices used are black is
    read as without it: white is foreground). Raises ``MaskError`` naming the file and the values found, or
    ``ImageReadError`` when the file cannot be decoded."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as im:
            deep_colours = im.mode in ("RGB", "RGBA") and _stored_16_bit(im)  # before getexif: a PNG's loads
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            im.load()
            turned = orientation is not None and im.getexif().get(_EXIF_ORIENTATION) is None  # Pillow 13: TIFF
            mode = im.mode
            array = _as_stored(np.asarray(im), orientation) if turned else np.asarray(im)
            palette = im.getpalette() if mode in ("P", "PA") else None
    except Image.UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        deep = _deep_gray_alpha(data)
        if deep is not None:
            raise MaskError(path, f"{deep} gray + alpha TIFF mask is not read: save it as 1-bit or 8-bit grayscale "
                                  "without alpha") from None
        float_mask = _float_mask(data)
        if float_mask is not None:
            raise MaskError(path, f"{float_mask} mask is not read (only 32-bit float grayscale is): save it as 1-bit "
                                  "or 8-bit grayscale") from None
        raise ImageReadError(path, "not a decodable image (unknown format, corrupt or truncated)") from None
    except _PILLOW_FAILURES as e:
        raise ImageReadError(path, f"not a decodable image ({e})") from None
    if deep_colours:
        deep = _deep_colours(data, path)
        array = array if deep is None else deep
    if mode in ("LA", "La", "PA", "RGBA"):  # La: gray and premultiplied alpha (a TIFF's associated alpha)
        array = _opaque(array, path)
        mode = mode[:-1]
        if array.shape[-1] == 1:
            array = array[..., 0]
    if array.ndim == 2:
        if mode == "P":
            return _palette_indices(array, palette, path, any_nonzero)
        return array != 0 if mode == "1" or any_nonzero else _binary_levels(array, path)
    if mode == "RGB":
        if any_nonzero:
            return array.any(axis=-1)
        colours = np.unique(array.reshape(-1, 3), axis=0)
        whites = colours[colours[:, 0] != 0]
        white_levels = (1, 255, 65535) if array.dtype == np.uint16 else (255,)
        if (colours.min(axis=1) != colours.max(axis=1)).any() or len(whites) > 1 or (
                len(whites) == 1 and whites[0, 0] not in white_levels):
            raise MaskError(path, f"RGB mask must hold only black and white, found colours {_describe(colours)}")
        return array[..., 0] != 0
    raise MaskError(path, f"unsupported mask image mode '{mode}' (use 1-bit, grayscale, palette or RGB)")


def read_pair(image_path: PathLike, mask_path: PathLike, any_nonzero: bool = False,
              resize_image: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An image ``(H, W, 3)`` uint8 RGB and its mask ``(H, W)`` bool, checked to be the same size.

    The image is EXIF-rotated unless only the stored (unrotated) image fits the mask. A mask of another size
    raises ``MaskError`` naming both files: it is not resized, since a size mismatch usually means a wrong
    pairing; with ``resize_image``, a mask of the image's aspect ratio (:func:`same_aspect`) has the image resized
    to it instead, as ``fit_to_mask`` fits a prediction (to show an image with such a mask)."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    mask = read_mask(mask_path, any_nonzero=any_nonzero)
    data = _read_bytes(image_path)
    image = _decode_image(data, image_path, apply_exif=True)
    image = _fitted(image, mask.shape, lambda: _exif_orientation(data), resize_to if resize_image else None)
    if image.shape[:2] != mask.shape:
        raise _mismatch(mask_path, mask.shape, image_path, image.shape[:2])
    return image, mask


def _mismatch(mask_path: Path, mask_shape: tuple[int, ...], image_path: Path,
              image_shape: tuple[int, ...]) -> MaskError:
    return MaskError(mask_path, f"mask is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image "
                                f"{printable(image_path)} is {image_shape[0]}x{image_shape[1]}")


def _exif_orientation(image: Union[Path, bytes]) -> Optional[int]:
    """The EXIF orientation tag of the image file at ``image`` (a path or its bytes; read from its header), None
    without one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read here
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
                return im.getexif().get(_EXIF_ORIENTATION)
    except _PILLOW_FAILURES:
        return None


def _swap_rows_and_columns(array: np.ndarray) -> np.ndarray:
    return np.swapaxes(array, 0, 1)


# array over an image as viewed -> over the image as stored, for each EXIF orientation (first two axes: H, W)
_UNDO_ORIENTATION = {
    2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud, 5: _swap_rows_and_columns, 6: np.rot90,
    7: lambda a: np.rot90(_swap_rows_and_columns(a), 2), 8: lambda a: np.rot90(a, -1),
}


def _as_stored(array: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """``array`` (H, W[, C]) over an image as viewed (EXIF-rotated by ``orientation``) laid over the image as
    stored instead: (W, H[, C]) for the orientations 5-8 that swap the sides. Unchanged without an orientation."""
    undo = _UNDO_ORIENTATION.get(orientation)  # type: ignore[arg-type]
    return array if undo is None else np.ascontiguousarray(undo(array))


ASPECT_TOLERANCE = 0.01  # relative difference of two aspect ratios still taken for one image at two resolutions


def same_aspect(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether the (H, W) sizes ``a`` and ``b`` are of one image at two resolutions: their aspect ratios differ by at
    most ``ASPECT_TOLERANCE`` (relative), or by the rounding of a side to whole pixels at the smaller size."""
    (ha, wa), (hb, wb) = a, b
    cross = abs(ha * wb - wa * hb)  # |ha/wa - hb/wb| * wa * wb
    return cross <= max(ASPECT_TOLERANCE * max(ha * wb, wa * hb), ha, wa, hb, wb)


def _fitted(array: np.ndarray, mask_shape: tuple[int, ...], orientation: Callable[[], Optional[int]],
            resize: Optional[Callable[[np.ndarray, tuple[int, ...]], np.ndarray]]) -> np.ndarray:
    """``array`` (H, W, ...) of an image as viewed (EXIF-rotated) laid over its mask of ``mask_shape`` where it fits:
    turned back to the image's stored orientation (``orientation()``: its EXIF tag) when only that fits, then, with
    ``resize``, resized to a mask of its aspect ratio at another resolution (:func:`same_aspect`; without ``resize``
    only the same size fits). Returned as it is when nothing fits: the caller names the mismatch."""
    def fits(shape: tuple[int, ...]) -> bool:
        return shape == mask_shape or (resize is not None and same_aspect(shape, mask_shape))

    shape = array.shape[:2]
    if shape != mask_shape and (shape[::-1] == mask_shape or (fits(shape[::-1]) and not fits(shape))):
        stored = _as_stored(array, orientation())
        array = stored if fits(stored.shape[:2]) else array
    if array.shape[:2] != mask_shape and fits(array.shape[:2]):
        array = resize(array, mask_shape)
    return array


def resize_to(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` (h, w) or (h, w, 3) uint8 resized to ``shape`` (H, W): a side shrunk with area interpolation, one
    enlarged bilinearly. A side that shrinks while the other grows is shrunk first, on its own: bilinear sampling
    would take 2 of the many pixels each output pixel covers (a 200x3000 panorama's stripes kept at full contrast)."""
    height, width = shape[0], shape[1]
    if height <= image.shape[0] and width <= image.shape[1]:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if height < image.shape[0] or width < image.shape[1]:
        image = cv2.resize(image, (min(width, image.shape[1]), min(height, image.shape[0])),
                           interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _resize_foreground(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` (h, w) bool resized to ``shape`` (H, W): each pixel foreground where at least half of what it covers
    is (area interpolation on a side that shrinks, bilinear on one that grows, as :func:`resize_to`)."""
    levels = np.where(mask, np.uint8(255), np.uint8(0))  # bytes: a float copy of a large mask takes 4 times more
    return resize_to(levels, shape) >= 128  # 255 / 2, rounded


def fit_to_mask(prediction: np.ndarray, image_path: PathLike, mask_path: PathLike,
                mask_shape: tuple[int, ...]) -> np.ndarray:
    """``prediction`` (H, W) bool of the image at ``image_path`` as viewed (EXIF-rotated, as ``read_image`` gives it),
    laid over its mask of ``mask_shape``: as it is when it fits, else turned back to the image's stored orientation
    when only that fits, as ``read_pair`` pairs them; a mask of the image's aspect ratio at another resolution
    (:func:`same_aspect`) is fitted likewise, the prediction then resized to it (:func:`_resize_foreground`). Raises
    ``MaskError`` naming both files when neither fits."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    prediction = _fitted(prediction, mask_shape, lambda: _exif_orientation(image_path), _resize_foreground)
    if prediction.shape != mask_shape:
        raise _mismatch(mask_path, mask_shape, image_path, prediction.shape)
    return prediction


def write_png_atomic(path: PathLike, array: np.ndarray) -> None:
    """Write ``(H, W)`` bool/uint8 or ``(H, W, 3)`` uint8 RGB as PNG atomically (bool masks become 0/255)."""
    write_bytes_atomic(path, encode_png(array, path))


def encode_png(array: np.ndarray, path: PathLike = "<memory>") -> bytes:
    """The PNG file of ``(H, W)`` bool/uint8 or ``(H, W, 3)`` uint8 RGB (bool masks become 0/255); ``path`` names
    the file it is for in errors."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.view(np.uint8) * np.uint8(255)  # one uint8 copy, not two
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected (H, W) bool/uint8 or (H, W, 3) uint8, got {array.dtype} {array.shape}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"OpenCV could not encode a PNG for {printable(path)}")
    return encoded.tobytes()
