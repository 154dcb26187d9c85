"""Reading and writing videos (mp4, gif) and images (png) as uint8 arrays.

On disk and in the checkers a video is a uint8 numpy array (F, H, W, 3); in the
differentiable path it is a float tensor (F, 3, H, W) in [0, 1] (`to_tensor`,
`to_uint8`). Every read failure raises `MediaReadError` naming the file.

mp4 is written with H.264 in 4:4:4 chroma at constant quality 0 by default: a
32 px frame with 4 px objects loses its colours under the usual 4:2:0 chroma
subsampling, while 4:4:4 at quality 0 reads back within ±1 per channel. Pass
`lossless=False` for 4:2:0 at CRF 18, which every player accepts (agent runs
write their `video.mp4` so, for people to watch). `read_video` also reads a
`.npy` array, the exact frames a run keeps beside its playable files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

if TYPE_CHECKING:
    from types import ModuleType

    import torch


def _ffmpeg() -> ModuleType:
    # Imported on first use: the mini trainers import this module for its array helpers
    # only, and may run where no ffmpeg build is installed (an offline GPU node).
    import imageio_ffmpeg

    return imageio_ffmpeg


VIDEO_SUFFIXES = (".mp4", ".gif")
READABLE_SUFFIXES = (*VIDEO_SUFFIXES, ".npy")
"""What `read_video` reads: the video formats and exact uint8 frame arrays."""
GIF_TAG = "vlm-teacher frame_cs="


class MediaReadError(OSError):
    """A video or image file that cannot be read; the message names the file and why."""


def _brief(err: BaseException) -> str:
    """The last line of an error (ffmpeg's own errors carry its whole banner)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(err).__name__


def check_frames(frames: object) -> np.ndarray:
    """Return `frames` if it is a uint8 (F, H, W, 3) array with F >= 1, else raise ValueError."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"frames must be a numpy array, got {type(frames).__name__} "
            "(convert a tensor with evals.video_io.to_uint8)"
        )
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 in [0, 255], got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must have shape (F, H, W, 3) with F >= 1, got {frames.shape}")
    return frames


# -- videos ---------------------------------------------------------------------------


def write_video(
    path: str | Path, frames: np.ndarray, fps: float = 16, *, lossless: bool = True
) -> Path:
    """Write a video; the suffix picks the format (.mp4 or .gif)."""
    path = Path(path)
    frames = check_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        _write_mp4(path, frames, fps, lossless)
    elif suffix == ".gif":
        _write_gif(path, frames, fps)
    else:
        raise ValueError(f"{path.name}: unsupported video suffix; use one of {VIDEO_SUFFIXES}")
    return path


def _write_mp4(path: Path, frames: np.ndarray, fps: float, lossless: bool) -> None:
    height, width = frames.shape[1:3]
    if lossless:
        pix_fmt, params = "yuv444p", ["-crf", "0"]
    else:
        if height % 2 or width % 2:
            raise ValueError(f"{path.name}: 4:2:0 mp4 needs even sides, got {width}x{height}")
        pix_fmt, params = "yuv420p", ["-crf", "18"]
    writer = _ffmpeg().write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out=pix_fmt,
        quality=None,
        macro_block_size=1,
        output_params=params,
        ffmpeg_log_level="error",
    )
    writer.send(None)  # start ffmpeg
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # GIF stores delays in centiseconds, and Pillow merges identical consecutive
    # frames into one longer frame; the comment records the per-frame delay so
    # `read_video` can expand merged frames back to the original count.
    delay_cs = max(1, round(100 / fps))
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=delay_cs * 10,
        loop=0,
        comment=f"{GIF_TAG}{delay_cs}",
    )


def read_video(path: str | Path) -> np.ndarray:
    """Read an mp4, a gif or a saved uint8 array (.npy) into a uint8 array (F, H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such video file")
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return _read_mp4(path)
    if suffix == ".gif":
        return _read_gif(path)
    if suffix == ".npy":
        return _read_npy(path)
    raise MediaReadError(f"{path}: unsupported video suffix; use one of {READABLE_SUFFIXES}")


def _read_npy(path: Path) -> np.ndarray:
    try:
        return check_frames(np.load(path, allow_pickle=False))  # data only, never objects
    except (OSError, ValueError) as err:
        raise MediaReadError(
            f"{path}: not a uint8 (F, H, W, 3) frame array ({_brief(err)})"
        ) from err


def is_chroma_subsampled(path: str | Path) -> bool:
    """True for an mp4 whose colour planes are stored at reduced resolution (4:2:0, ...).

    Such a file smears the colours of objects a few pixels wide, so a checker may
    fail what the exact frames pass. False for anything else, unreadable files included.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4" or not path.is_file():
        return False
    try:
        reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        pix_fmt = str(next(reader).get("pix_fmt", ""))
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError):
        return False
    return re.match(r"yuvj?4(20|22|11|10)", pix_fmt) is not None


def _read_mp4(path: Path) -> np.ndarray:
    try:
        reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        raise MediaReadError(f"{path}: not a readable mp4 video ({_brief(err)})") from err
    if not frames:
        raise MediaReadError(f"{path}: the video has no frames")
    return np.stack(frames)


def _read_gif(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")
            if isinstance(comment, bytes):
                comment = comment.decode(errors="ignore")
            match = re.search(rf"{GIF_TAG}(\d+)", comment)
            base_ms = int(match.group(1)) * 10 if match else None
            frames: list[np.ndarray] = []
            for frame in ImageSequence.Iterator(image):
                rgb = np.asarray(frame.convert("RGB"))
                repeats = 1
                if base_ms:  # undo Pillow's merging of identical frames (see _write_gif)
                    repeats = max(1, round(frame.info.get("duration", base_ms) / base_ms))
                frames.extend([rgb] * repeats)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise MediaReadError(f"{path}: not a readable gif ({_brief(err)})") from err
    if not frames:
        raise MediaReadError(f"{path}: the gif has no frames")
    return np.stack(frames)


# -- images ---------------------------------------------------------------------------


def write_image(path: str | Path, frame: np.ndarray) -> Path:
    """Write one (H, W, 3) uint8 frame as an image (png recommended: it is lossless)."""
    path = Path(path)
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ValueError(
            f"an image must be a uint8 array (H, W, 3), got {getattr(frame, 'shape', frame)}"
        )
    check_frames(frame[None])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Read an image into a uint8 (H, W, 3) array (alpha and palettes are flattened to RGB)."""
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise MediaReadError(f"{path}: not a readable image ({_brief(err)})") from err


def make_grid(
    images: Sequence[np.ndarray], cols: int = 4, scale: int = 4, pad: int = 2
) -> np.ndarray:
    """Tile (H, W, 3) uint8 images into one contact sheet, each enlarged `scale`× (nearest)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    height = max(im.shape[0] for im in images) * scale
    width = max(im.shape[1] for im in images) * scale
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    sheet = np.full(
        (rows * (height + pad) + pad, cols * (width + pad) + pad, 3), 128, dtype=np.uint8
    )
    for i, im in enumerate(images):
        big = im.repeat(scale, axis=0).repeat(scale, axis=1)
        y = pad + (i // cols) * (height + pad)
        x = pad + (i % cols) * (width + pad)
        sheet[y : y + big.shape[0], x : x + big.shape[1]] = big
    return sheet


# -- resizing by whole factors --------------------------------------------------------


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge (..., H, W, 3) by an integer factor, repeating pixels (no blending)."""
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def downscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Shrink (..., H, W, 3) by an integer factor, averaging each factor × factor block."""
    if factor == 1:
        return frames
    *lead, height, width, _ = frames.shape
    if height % factor or width % factor:
        raise ValueError(f"cannot shrink {height}x{width} by {factor}: sides must divide evenly")
    blocks = frames.reshape(*lead, height // factor, factor, width // factor, factor, 3)
    return np.rint(blocks.mean(axis=(-4, -2))).astype(np.uint8)


def fit_to_size(video: np.ndarray, size: int) -> np.ndarray:
    """Shrink a square video written k× larger than `size` back to it; others pass unchanged.

    Outputs may be enlarged for benchmarks that want big frames; the checkers
    score them at the task's own size.
    """
    side = video.shape[-2]
    if video.shape[-3] == side and side != size and side % size == 0:
        return downscale(video, side // size)
    return video


# -- tensors --------------------------------------------------------------------------


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) → float32 (F, 3, H, W) in [0, 1] (a (H, W, 3) frame → (3, H, W))."""
    import torch

    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 (F, H, W, 3) or (H, W, 3), got {array.dtype} {array.shape}"
        )
    tensor = torch.tensor(array, dtype=torch.float32) / 255.0  # copies: safe for read-only arrays
    return tensor.movedim(-1, -3).contiguous()


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (F, 3, H, W) (or (3, H, W)) in [0, 1] → uint8 (F, H, W, 3), rounded and clipped."""
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"expected a tensor (F, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    array = tensor.detach().float().cpu().clamp(0, 1).movedim(-3, -1).numpy()
    return np.rint(array * 255).astype(np.uint8)
