"""The student's weights as plain arrays: the ``.npz`` format every backend is derived from.

The network (DeepSets / PointNet style: a per-channel MLP whose weights are shared by all
channels, a masked mean/max pool over channels that forms the mix context, fed back to
every channel before the heads)::

    z    = clip(x * in_scale + in_shift, -1, 1)          standardised features  (C, F)
    h1   = relu(z  @ enc1_w + enc1_b)                    per-channel encoder     (C, H1)
    h2   = relu(h1 @ enc2_w + enc2_b)                                            (C, H2)
    w    = mask / max(sum(mask), 1)                      masked-mean weights     (C,)
    pool = [w @ h2, max_c(h2 * mask)]                    mix context input      (2*H2,)
    ctx  = relu(pool @ ctx_w + ctx_b)                                            (K,)
    g    = relu(h2 @ mix_w + ctx @ mix_ctx_w + mix_b)    channel-in-the-mix      (C, D)
    u           = g @ param_w + param_b                  the network's part, ~0..1 (C, P)
    params01    = clip(x @ skip_w + skip_b + out_span * u, 0, 1)                 (C, P)
    role_logits = g @ role_w + role_b                                            (C, R)

The input is clipped to -1..1 (``Z_LIMIT``): ``in_scale``/``in_shift`` map each feature's
useful range onto it (the training set's range, narrowed where a feature stops carrying
information, ``export/model.py:INPUT_LIMITS``), so every backend, float or int8, sees a
value beyond that range as its edge.

The skip carries the loudness-matching answer straight from the input to the output: the
trim column gets ``(TRIM_TARGET_LUFS - loudness_active_lufs)`` in normalised units, so the
network learns only the correction (a residual, He et al. 2016).  ``skip_b`` and
``out_span`` place each output's head on the range the teacher uses (fitted on the
training labels, ``export/model.py``), so the int8 model spends its 256 steps of ``u``
there.  The head is linear inside the span (no sigmoid): an int8 sigmoid's input step,
through its slope, costs about three times its output step; the clamp keeps 0..1.

The masked max over ``h2 * mask`` equals the max over present channels because ``h2``
is a ReLU output (>= 0); with no channel present the pool is all zeros.  Weight matrices
are stored ``(in, out)`` so a row of activations times the matrix is the layer.
"""
from __future__ import annotations

import zipfile

import numpy as np

from edgemix.infer.base import ModelLoadError, model_io

#: Format version written into every weights file; bump when the network changes.
FORMAT_VERSION = 3
#: The standardised input ``z`` is clipped to -Z_LIMIT..Z_LIMIT (the layout above).
Z_LIMIT = 1.0

#: Array name -> shape in terms of the sizes F, H1, H2, K, D, P, R.
LAYOUT: dict[str, tuple[str, ...]] = {
    "in_scale": ("F",), "in_shift": ("F",),
    "enc1_w": ("F", "H1"), "enc1_b": ("H1",),
    "enc2_w": ("H1", "H2"), "enc2_b": ("H2",),
    "ctx_w": ("2H2", "K"), "ctx_b": ("K",),
    "mix_w": ("H2", "D"), "mix_ctx_w": ("K", "D"), "mix_b": ("D",),
    "param_w": ("D", "P"), "param_b": ("P",),
    "role_w": ("D", "R"), "role_b": ("R",),
    "skip_w": ("F", "P"), "skip_b": ("P",), "out_span": ("P",),
}
WEIGHT_NAMES = tuple(LAYOUT)
#: Constants fitted on the training data rather than trained: the input standardisation and
#: the output skip and span (see the layout above).
FITTED_NAMES = ("in_scale", "in_shift", "skip_w", "skip_b", "out_span")
#: String arrays stored beside the weights: the I/O order the model was trained for.
NAME_ARRAYS = ("feature_names", "output_names", "role_names")


def sizes_of(weights: dict) -> dict[str, int]:
    """The layer sizes implied by a weight dict."""
    s = {"F": weights["enc1_w"].shape[0], "H1": weights["enc1_w"].shape[1],
         "H2": weights["enc2_w"].shape[1], "K": weights["ctx_w"].shape[1],
         "D": weights["mix_w"].shape[1], "P": weights["param_w"].shape[1],
         "R": weights["role_w"].shape[1]}
    s["2H2"] = 2 * s["H2"]
    return s


def n_parameters(weights: dict) -> int:
    """Trainable parameters (the fitted constants, FITTED_NAMES, are not trained)."""
    return int(sum(weights[k].size for k in WEIGHT_NAMES if k not in FITTED_NAMES))


def validate(weights: dict, where: str = "weights") -> None:
    """ModelLoadError unless every array is present, finite and consistently shaped."""
    missing = [k for k in WEIGHT_NAMES + NAME_ARRAYS if k not in weights]
    if missing:
        raise ModelLoadError(f"{where}: missing arrays {', '.join(missing)}: not an edgemix "
                             "student model (rebuild with `python -m export.build_models`)")
    try:
        s = sizes_of(weights)
    except (IndexError, AttributeError):
        raise ModelLoadError(f"{where}: weight arrays have the wrong rank") from None
    for k, dims in LAYOUT.items():
        want = tuple(s[d] for d in dims)
        if weights[k].shape != want:
            raise ModelLoadError(f"{where}: {k} has shape {weights[k].shape}, expected {want}")
        if not np.all(np.isfinite(weights[k])):
            raise ModelLoadError(f"{where}: {k} contains NaN or Inf")
    features, outputs, roles = model_io()
    for key, want in zip(NAME_ARRAYS, (features, outputs, roles)):
        got = tuple(str(n) for n in weights[key])
        if got != want:
            raise ModelLoadError(
                f"{where}: trained for {key} {list(got)[:4]}... ({len(got)}), this edgemix "
                f"uses {list(want)[:4]}... ({len(want)}): rebuild the model with "
                "`python -m export.build_models`")


def load_weights(path) -> dict[str, np.ndarray]:
    """Read and validate a weights ``.npz``; float32 C-contiguous arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such model file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ModelLoadError(f"{path}: not a readable weights .npz ({e})") from None
    version = int(raw.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: weights format {version}, this edgemix reads "
                             f"{FORMAT_VERSION}: rebuild with `python -m export.build_models`")
    validate(raw, str(path))
    out = {k: np.ascontiguousarray(raw[k], dtype=np.float32) for k in WEIGHT_NAMES}
    for k in NAME_ARRAYS:
        out[k] = raw[k]
    return out


def save_weights(path, weights: dict) -> None:
    """Write a weights ``.npz`` (float32 arrays, the I/O names, the format version)."""
    validate(weights, str(path))
    arrays = {k: np.asarray(weights[k], dtype=np.float32) for k in WEIGHT_NAMES}
    for k in NAME_ARRAYS:
        arrays[k] = np.asarray([str(n) for n in weights[k]])
    arrays["format_version"] = np.asarray(FORMAT_VERSION, dtype=np.int64)
    write_npz(path, arrays)


def write_npz(path, arrays: dict) -> None:
    """An ``.npz`` readable by ``np.load`` whose bytes depend only on the arrays.

    ``np.savez`` stamps every member with the current time; a fixed date keeps rebuilt
    models byte-identical (their checksums are published in ``models/SHA256SUMS``).
    """
    import io
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def forward_reference(weights: dict, features: np.ndarray, mask: np.ndarray):
    """The network above in float64 numpy, one decision: ``(params01, role_logits)``."""
    w = {k: np.asarray(weights[k], dtype=np.float64) for k in WEIGHT_NAMES}
    x = np.asarray(features, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    z = np.clip(x * w["in_scale"] + w["in_shift"], -Z_LIMIT, Z_LIMIT)
    h1 = relu(z @ w["enc1_w"] + w["enc1_b"])
    h2 = relu(h1 @ w["enc2_w"] + w["enc2_b"])
    mean_w = m / max(m.sum(), 1.0)
    pool = np.concatenate([mean_w @ h2, (h2 * m[:, None]).max(axis=0)])
    ctx = relu(pool @ w["ctx_w"] + w["ctx_b"])
    g = relu(h2 @ w["mix_w"] + ctx @ w["mix_ctx_w"] + w["mix_b"])
    u = g @ w["param_w"] + w["param_b"]
    params01 = np.clip(x @ w["skip_w"] + w["skip_b"] + w["out_span"] * u, 0.0, 1.0)
    role_logits = g @ w["role_w"] + w["role_b"]
    return params01, role_logits
