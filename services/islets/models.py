"""Segmentation models: the interface, the registry that finds them by name, and the backends
(built-in classical, ONNX via onnxruntime, TorchScript via torch when it is installed).

A model turns RGB images into class maps (0 background, 1 exocrine, 2 islet) of the same size.
Models are loaded once per process and kept warm (the first job pays the load, later ones not).
Network backends share one convention: input N×3×H×W float32 in [0, 1], output N×3×H×W logits,
class = argmax. Images are cut into overlapping tiles (or resized, when the network has a fixed
input size), so any image size works and memory stays bounded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from services.islets.classical import ClassicalModel, tile_windows
from services.islets.errors import ModelError, UnknownModelError

log = logging.getLogger("services.islets")

MODELS_DIR_ENV = "ISLETNET_MODELS_DIR"
# Threads one model may use on the CPU (onnxruntime intra-op, torch); unset: the library decides.
# A host running one worker process per core sets 1, so the workers do not oversubscribe it.
MODEL_THREADS_ENV = "ISLETNET_MODEL_THREADS"
DEFAULT_MODEL = "classical"
TORCH_PREFIX = "torch:"
NUM_CLASSES = 3


@runtime_checkable
class SegmentationModel(Protocol):
    """What the shepherd needs from a model."""

    name: str
    device: str  # "cpu" or "cuda:0"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 images (H×W×3) -> class maps (H×W uint8), one per image, same sizes."""
        ...


def models_dir() -> Path | None:
    """The folder holding model files ($ISLETNET_MODELS_DIR), or None when unset."""
    value = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(value) if value else None


def model_threads() -> int | None:
    """$ISLETNET_MODEL_THREADS as a positive int, or None (unset, blank or not a positive number)."""
    value = os.environ.get(MODEL_THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _model_files(pattern: str) -> dict[str, Path]:
    folder = models_dir()
    if folder is None or not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob(pattern)) if path.is_file() and path.stem != DEFAULT_MODEL}


def available_models() -> list[str]:
    """Model names a job may ask for: "classical" first, then the ONNX files in the models
    folder (name = file stem), then "torch:<stem>" for TorchScript files when torch is installed."""
    names = [DEFAULT_MODEL, *_model_files("*.onnx")]
    if torch_available():
        names += [TORCH_PREFIX + stem for stem in _model_files("*.pt")]
    return names


class _TiledNetwork:
    """Shared tiling/batching around a network that maps N×3×h×w float32 to N×3×h×w logits."""

    name: str
    device: str

    def __init__(self, fixed_size: tuple[int, int] | None, tile_px: int, margin_px: int, max_batch: int) -> None:
        self.fixed_size = fixed_size
        self.tile_px = tile_px
        self.margin_px = margin_px
        self.max_batch = max_batch

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - implemented by backends
        raise NotImplementedError

    def _classes(self, tiles: list[np.ndarray]) -> list[np.ndarray]:
        """Class maps of same-shaped tiles, run in chunks of max_batch."""
        out: list[np.ndarray] = []
        for start in range(0, len(tiles), self.max_batch):
            chunk = np.stack(tiles[start : start + self.max_batch]).astype(np.float32)
            chunk = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2) / np.float32(255.0))
            try:
                logits = np.asarray(self._run(chunk))
            except ModelError:
                raise
            except Exception as error:
                raise ModelError(f"The model '{self.name}' failed while predicting: {_first_line(error)}.") from error
            if logits.ndim != 4 or logits.shape[0] != chunk.shape[0] or logits.shape[1] != NUM_CLASSES:
                raise ModelError(
                    f"The model '{self.name}' returned shape {tuple(logits.shape)}; "
                    f"N×{NUM_CLASSES}×H×W logits were expected."
                )
            for maps in logits.argmax(axis=1).astype(np.uint8):
                if maps.shape != chunk.shape[2:]:
                    maps = _resize_classes(maps, chunk.shape[2:])
                out.append(maps)
        return out

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        # Every image becomes pieces (tiles, or one resized copy); pieces of equal shape from all
        # images of the batch run together, then each image's map is put back together.
        pieces: list[tuple[int, tuple, np.ndarray]] = []
        for index, image in enumerate(batch):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ModelError(
                    f"The model '{self.name}' failed while predicting: it expects H×W×3 uint8 RGB images, "
                    f"got {image.dtype} of shape {image.shape}."
                )
            if self.fixed_size is not None:
                height, width = self.fixed_size
                resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
                pieces.append((index, ("resized",), resized))
                continue
            for core_rows, core_cols, rows, cols in tile_windows(
                image.shape[0], image.shape[1], self.tile_px, self.margin_px
            ):
                pieces.append((index, ("tile", core_rows, core_cols, rows, cols), image[rows, cols]))
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, (_index, _where, array) in enumerate(pieces):
            by_shape.setdefault(array.shape, []).append(position)
        classes: list[np.ndarray | None] = [None] * len(pieces)
        for positions in by_shape.values():
            for position, maps in zip(positions, self._classes([pieces[p][2] for p in positions]), strict=True):
                classes[position] = maps
        results = [np.zeros(np.asarray(image).shape[:2], dtype=np.uint8) for image in batch]
        for (index, where, _array), maps in zip(pieces, classes, strict=True):
            if where[0] == "resized":
                results[index] = _resize_classes(maps, results[index].shape)
            else:
                _, core_rows, core_cols, rows, cols = where
                inner = (
                    slice(core_rows.start - rows.start, core_rows.stop - rows.start),
                    slice(core_cols.start - cols.start, core_cols.stop - cols.start),
                )
                results[index][core_rows, core_cols] = maps[inner]
        return results


def _resize_classes(classes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of a class map (classes must not blend)."""
    return np.asarray(Image.fromarray(classes).resize((int(shape[1]), int(shape[0])), Image.NEAREST))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).rstrip(".")[:300]


class OnnxModel(_TiledNetwork):
    """An ONNX network run by onnxruntime, on the GPU (CUDA provider) when there is one."""

    def __init__(self, name: str, path: Path, tile_px: int = 1024, margin_px: int = 32, max_batch: int = 8) -> None:
        import onnxruntime

        self.name = name
        self.path = path
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = onnxruntime.SessionOptions()
        threads = model_threads()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:
            raise ModelError(f"The model file {path.name} could not be loaded: {_first_line(error)}.") from error
        used = self.session.get_providers()
        self.device = "cuda:0" if used and used[0] == "CUDAExecutionProvider" else "cpu"
        model_input = self.session.get_inputs()[0]
        shape = list(model_input.shape)
        if len(shape) != 4 or shape[1] not in (3, None) and not isinstance(shape[1], str):
            raise ModelError(f"The model file {path.name} takes input shape {shape}; N×3×H×W was expected.")
        self.input_name = model_input.name
        fixed = (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        super().__init__(fixed, tile_px, margin_px, max_batch)
        log.info("model %s loaded from %s on %s (onnxruntime providers %s)", name, path, self.device, used)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class TorchModel(_TiledNetwork):
    """A TorchScript network (``torch.jit.save``), on CUDA when torch sees a GPU."""

    def __init__(self, name: str, path: Path, tile_px: int = 1024, margin_px: int = 32, max_batch: int = 8) -> None:
        import torch  # only here: torch is optional and heavy

        self._torch = torch
        self.name = name
        self.path = path
        self.device = "cuda:0" if torch.cuda.is_available() else "cpu"
        threads = model_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as error:
            raise ModelError(f"The model file {path.name} could not be loaded: {_first_line(error)}.") from error
        super().__init__(None, tile_px, margin_px, max_batch)
        log.info("model %s loaded from %s on %s (torch %s)", name, path, self.device, torch.__version__)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(batch).to(self.device))
        return logits.float().cpu().numpy()


_cache: dict[tuple[str, str], SegmentationModel] = {}
_cache_lock = threading.Lock()


def _loader(name: str) -> tuple[str, Callable[[], SegmentationModel]]:
    """Cache key and constructor for a model name; UnknownModelError when there is none."""
    if name == DEFAULT_MODEL:
        return "", ClassicalModel
    if name.startswith(TORCH_PREFIX):
        stem = name[len(TORCH_PREFIX) :]
        path = _model_files("*.pt").get(stem)
        if path is not None and torch_available():
            return str(path), lambda: TorchModel(name, path)
    else:
        path = _model_files("*.onnx").get(name)
        if path is not None:
            return str(path), lambda: OnnxModel(name, path)
    raise UnknownModelError(name, available_models())


def get_model(name: str = DEFAULT_MODEL) -> SegmentationModel:
    """The model called `name`, loaded on first use and then kept (thread-safe)."""
    location, construct = _loader(name)
    key = (name, location)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = construct()
            _cache[key] = model
            log.info("model %s ready on %s", name, model.device)
        return model


def clear_model_cache() -> None:
    """Forget loaded models (tests; or to pick up a replaced model file)."""
    with _cache_lock:
        _cache.clear()
