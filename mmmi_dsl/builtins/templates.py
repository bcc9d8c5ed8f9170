"""Template constructors: how a scalar cause is spread over the entries of a latent.

Each is declared once (name, typed arguments, bounds) with the numpy function that realises
it as a float64 vector of the template's size: ``realise(t, vector_of)``, where
``vector_of(name)`` gives another template's vector (for ``normalize``). Random ones use numpy's PCG64 seeded by the
spec, the same on every machine; files are read without pickle.
"""

from __future__ import annotations

import numpy as np

from mmmi_dsl.builtins.signature import MAX_SEED, Arg, Builtin
from mmmi_dsl.errors import Diagnostic, SpecError


def data_error(node, message: str, hint: str = "") -> SpecError:
    """E0208 at ``node``'s span: a data file (template, matrix) that cannot be used."""
    return SpecError([Diagnostic("E0208", message, node.span, "", hint)])


class DataFileError(ValueError):
    """A template or matrix file that cannot be used; the message completes "`file` ..."."""


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def read_image(path, mode: str) -> np.ndarray:
    """A PNG or JPEG file's pixels as float64 (C, H, W) in [0, 1] (``mode`` "RGB" or "L").

    The format is decided by the file's magic bytes and only Pillow's PNG and JPEG decoders are
    allowed: other formats are refused (some, like EPS, are opened through external programs).
    The whole image is decoded, so a truncated file is refused here.
    """
    from PIL import Image

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise DataFileError(f"cannot be read: {err.strerror or err}") from None
    fmt = "PNG" if head.startswith(PNG_MAGIC) else "JPEG" if head.startswith(JPEG_MAGIC) else None
    if fmt is None:
        raise DataFileError("is not a PNG or JPEG file (by its first bytes); other image formats are refused")
    try:
        with Image.open(path, formats=[fmt]) as img:
            img.load()
            arr = np.asarray(img.convert(mode), dtype=np.float64) / 255.0
    except Exception as err:  # noqa: BLE001 - any decoder failure is a data error
        raise DataFileError(f"cannot be decoded as {fmt}: {err}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_npy(path) -> np.ndarray:
    """A ``.npy`` file of real numbers (bool, integer or float dtype) as a finite float64 array.

    Read with ``allow_pickle=False``; strings, complex numbers, dates and objects are refused, and
    so are NaN and inf entries and truncated files.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - unreadable, truncated or pickled data is a data error
        raise DataFileError(f"cannot be read: {err}; save with numpy.save (pickled objects are refused)") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = getattr(arr, "dtype", type(arr))
        raise DataFileError(f"holds {kind} values; templates and matrices take real numbers (bool, int, float)")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataFileError("has non-finite entries (NaN or inf)")
    return arr


def load_npy(node) -> np.ndarray:
    """The real float64 array of a node's ``.npy`` file (:func:`read_npy`), as a data error (E0208)."""
    try:
        return read_npy(node.path)
    except DataFileError as err:
        raise data_error(node, f"`{node.args.get('file')}` {err}",
                         "save with numpy.save; pickled objects are refused") from None


def _ones(t, vector_of) -> np.ndarray:
    return np.ones(t.size)


def _onehot(t, vector_of) -> np.ndarray:
    v = np.zeros(t.size)
    v[int(t.args["index"]) - 1] = 1.0
    return v


def _random(t, vector_of) -> np.ndarray:
    return np.random.default_rng(int(t.args["seed"])).standard_normal(t.size)


def _blob(t, vector_of) -> np.ndarray:
    """``exp(-((r-row)^2 + (c-col)^2) / (2 sigma^2))`` over 1-based pixels (r, c), the same in every
    channel, flattened channel-first."""
    a = t.args
    shape = tuple(a["shape"])
    c, h, w = shape if len(shape) == 3 else (1, *shape)
    r = np.arange(1, h + 1)[:, None]
    q = np.arange(1, w + 1)[None, :]
    plane = np.exp(-((r - float(a["row"])) ** 2 + (q - float(a["col"])) ** 2) / (2 * float(a["sigma"]) ** 2))
    return np.broadcast_to(plane, (c, h, w)).reshape(-1).copy()


def _image(t, vector_of) -> np.ndarray:
    """8-bit values scaled to [0, 1], flattened C x H x W."""
    try:
        return read_image(t.path, str(t.args.get("mode", "RGB"))).reshape(-1)
    except DataFileError as err:
        raise data_error(t, f"cannot read image `{t.args.get('file')}`: it {err}") from None


def _npy(t, vector_of) -> np.ndarray:
    return load_npy(t).reshape(-1)


def _normalize(t, vector_of) -> np.ndarray:
    inner = vector_of(str(t.args["of"]))
    norm = float(np.linalg.norm(inner))
    if norm == 0 or not np.isfinite(norm):
        raise SpecError([Diagnostic("E0212", f"cannot normalize template `{t.args['of']}`: its norm is {norm}",
                                    t.span, "", "a template to normalize must be finite and nonzero")])
    return inner / norm


SIZE = Arg("size", "size", help="the number of entries, e.g. a dim d")
SEED = Arg("seed", "int", low=0, high=MAX_SEED, help="a non-negative integer seed")
FILE = Arg("file", "file", help="a path relative to the spec's directory")

TEMPLATES: dict[str, Builtin] = {b.name: b for b in (
    Builtin("ones", "template", "all entries 1 (a homogeneous cause)", (SIZE,), realise=_ones),
    Builtin("onehot", "template", "1 at entry `index` (1-based), else 0", (SIZE, Arg("index", "int", help="1..size")),
            realise=_onehot),
    Builtin("blob", "template", "a Gaussian blob at pixel (row, col) of an image shape",
            (Arg("shape", "shape"), Arg("row", "float", help="1-based pixel row"),
             Arg("col", "float", help="1-based pixel column"),
             Arg("sigma", "float", low=1e-100, high=1e100, help="the blob's width in pixels, e.g. 3")),
            realise=_blob),
    Builtin("image", "template", "a PNG or JPEG image's pixels in [0, 1]", (FILE,),
            (Arg("mode", "str", "RGB", choices=("RGB", "L"), help="RGB (3 channels) or L (grey)"),),
            realise=_image),
    Builtin("npy", "template", "a .npy array, flattened", (FILE,), realise=_npy),
    Builtin("random", "template", "standard normal entries from a seed", (SIZE, SEED), realise=_random),
    Builtin("normalize", "template", "another template scaled to unit norm", (Arg("template", "template"),),
            realise=_normalize),
)}
