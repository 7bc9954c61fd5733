"""The whole contract between the plugin (or the command line) and the engine.

A `ColorizeRequest` carries canvas-sized RGBA arrays and the user's choices;
a `ColorizeResult` carries the canvas-sized RGBA result and what really ran.
The worker process turns its wire messages into these, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENGINE_AUTO = "auto"     # the default neural model if one is installed, else flats
ENGINE_FLATS = "flats"
DEFAULT_SIZE = 512       # working size for a model whose model.json does not name one


@dataclass
class ColorizeRequest:
    lines: np.ndarray                  # H x W x 4 uint8 RGBA line art
    hints: object = None               # H x W x 4 uint8 RGBA hint strokes (or a crop: hints_origin), the
                                       # hint pixels already found (imaging.HintPixels), or None
    engine: str = ENGINE_AUTO          # "auto", "flats", an installed model id, or a model file
    size: int | None = None            # working size of the long side for neural engines; None: the model's
                                       # own (model.json "size"), else DEFAULT_SIZE
    raw: bool = False                  # no resizing at all (neural engines)
    backend: str = "auto"              # "auto", "onnx" or "torch"
    device: str = "auto"               # "auto", "cpu", "cuda", ...
    i2v: str | None = None             # Illustration2Vec weights for a checkpoint model
    snap: bool | None = None           # snap neural colors to flat regions; None: as the model's card says
    fill: str = "nearest"              # flats: "nearest", "none" (or "model", internal)
    gap: float | None = None           # flats: gap to close in pixels; None = from line width
    want_labels: bool = False          # also return the flats region map
    compose: str | None = None         # neural: "shade", "snap", "raw"; None: from snap, else the model's default
    layers: bool = False               # also return the result as "Flats" + "Shading" (Grain Merge) layers
    hints_origin: tuple | None = None  # (x, y): `hints` is only the crop of the hint layer lying there
    lines_key: str | None = None       # names this line art's content (the worker's wire digest): the
                                       # engines' caches use it instead of hashing the pixels
    channel_order: str = "RGBA"        # "BGRA": the caller would rather have B, G, R, A (the worker, for
                                       # Krita); an engine may honour it (ColorizeResult.channel_order)

    @property
    def size_hw(self):
        return self.lines.shape[:2]

    def hint_pixels(self):
        """The hint pixels that count (imaging.HintPixels), found once per request; None without hints."""
        if self.hints is None or not isinstance(self.hints, np.ndarray):
            return self.hints
        hp = self.__dict__.get("_hint_pixels")
        if hp is None:
            from .imaging import HintPixels
            hp = self.__dict__["_hint_pixels"] = HintPixels.find(self.hints, self.size_hw,
                                                                 self.hints_origin or (0, 0))
        return hp


@dataclass
class ColorizeResult:
    rgba: np.ndarray                   # H x W x 4 uint8, same size as the request's line art
    engine: str                        # what ran, for people: "Flats", "AlacGAN (alac-open)", ...
    device: str                        # "CPU", "onnxruntime · CUDA", ...
    seconds: float = 0.0
    cached: bool = False               # sketch features were reused
    labels: np.ndarray | None = None
    warnings: list = field(default_factory=list)
    # layers=True: [(name, H x W x 4 uint8, Krita blending mode id)], bottom first; stacking them
    # (Flats normal, Shading "grain_merge") gives `rgba` within one level.
    layers: list | None = None
    compose: str = ""                  # the composition that ran ("shade", "snap", "raw", "flats")
    size: int | None = None            # the working size the network ran at
    channel_order: str = "RGBA"        # byte order of rgba and layers: "RGBA", or "BGRA" when the request
                                       # asked for it and the engine made it so
