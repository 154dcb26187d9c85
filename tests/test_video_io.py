"""Video and image files in and out, tensors to and from uint8 frames."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evals.checkers.pixels import classify
from evals.tasks.palette import PALETTE_RGB
from evals.video_io import (
    MediaReadError,
    downscale,
    fit_to_size,
    is_chroma_subsampled,
    make_grid,
    read_image,
    read_video,
    to_tensor,
    to_uint8,
    upscale,
    write_image,
    write_video,
)


def palette_video(frames: int = 9, size: int = 32, seed: int = 0) -> np.ndarray:
    """Flat 4 px blocks of palette colours, like a mini-world video."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(PALETTE_RGB), (frames, size // 4, size // 4))
    return upscale(PALETTE_RGB[blocks], 4)


def test_mp4_round_trip_keeps_small_flat_colours(tmp_path: Path) -> None:
    video = palette_video()
    back = read_video(write_video(tmp_path / "v.mp4", video, fps=16))
    assert back.shape == video.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - video).max() <= 1


def test_mp4_round_trip_of_noise_stays_close(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (5, 24, 40, 3), dtype=np.uint8)
    back = read_video(write_video(tmp_path / "n.mp4", noise))
    assert back.shape == noise.shape
    assert np.abs(back.astype(int) - noise).max() <= 3


def test_playable_mp4_needs_even_sides(tmp_path: Path) -> None:
    video = palette_video()
    back = read_video(write_video(tmp_path / "p.mp4", upscale(video, 4), lossless=False))
    # Lossy, but every pixel keeps its nearest palette colour.
    assert (classify(downscale(back, 4)) == classify(video)).all()
    with pytest.raises(ValueError, match="even sides"):
        write_video(tmp_path / "odd.mp4", np.zeros((3, 15, 15, 3), np.uint8), lossless=False)


def test_gif_round_trip_is_exact_even_with_repeated_frames(tmp_path: Path) -> None:
    video = palette_video(frames=6)
    video = np.concatenate([video[:2], np.repeat(video[2:3], 5, axis=0), video[3:]])
    back = read_video(write_video(tmp_path / "v.gif", video, fps=16))
    assert back.shape == video.shape
    assert (back == video).all()


def test_png_round_trip_is_exact_and_alpha_is_dropped(tmp_path: Path) -> None:
    frame = palette_video(frames=1)[0]
    assert (read_image(write_image(tmp_path / "f.png", frame)) == frame).all()
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert (read_image(tmp_path / "a.png") == frame).all()


def test_unreadable_files_raise_one_clear_error(tmp_path: Path) -> None:
    for name in ("v.mp4", "v.gif"):
        (tmp_path / name).write_bytes(b"not a video")
        with pytest.raises(MediaReadError, match=name):
            read_video(tmp_path / name)
    (tmp_path / "f.png").write_bytes(b"not an image")
    with pytest.raises(MediaReadError, match="not a readable image"):
        read_image(tmp_path / "f.png")
    with pytest.raises(MediaReadError, match="no such video file"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "v.avi").write_bytes(b"")
    with pytest.raises(MediaReadError, match="unsupported"):
        read_video(tmp_path / "v.avi")


def test_frame_arrays_read_back_exactly_and_only_as_uint8_frames(tmp_path: Path) -> None:
    video = palette_video()
    np.save(tmp_path / "v.npy", video)
    assert np.array_equal(read_video(tmp_path / "v.npy"), video)
    np.save(tmp_path / "float.npy", video.astype(np.float32))
    with pytest.raises(MediaReadError, match=r"float\.npy: not a uint8 \(F, H, W, 3\) frame array"):
        read_video(tmp_path / "float.npy")
    # A pickled object array is data that would run code when loaded: refused.
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MediaReadError, match=r"objects\.npy"):
        read_video(tmp_path / "objects.npy")


def test_chroma_subsampling_is_told_apart(tmp_path: Path) -> None:
    video = palette_video()
    playable = write_video(tmp_path / "play.mp4", video, lossless=False)
    exact = write_video(tmp_path / "exact.mp4", video)
    assert is_chroma_subsampled(playable)
    assert not is_chroma_subsampled(exact)
    assert not is_chroma_subsampled(write_video(tmp_path / "v.gif", video))
    assert not is_chroma_subsampled(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert not is_chroma_subsampled(tmp_path / "junk.mp4")


def test_bad_frames_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "v.mp4", np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        write_video(tmp_path / "v.mp4", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="unsupported"):
        write_video(tmp_path / "v.webm", palette_video())
    assert not list(tmp_path.iterdir())


def test_tensor_conversions_round_trip() -> None:
    video = palette_video()
    video.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a read-only array must not trigger torch's warning
        tensor = to_tensor(video)
    assert tensor.shape == (9, 3, 32, 32) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    assert torch.equal(tensor[0, :, 0, 0] * 255, torch.tensor(video[0, 0, 0], dtype=torch.float32))
    assert (to_uint8(tensor) == video).all()
    assert to_tensor(video[0]).shape == (3, 32, 32)
    out_of_range = torch.full((1, 3, 2, 2), 1.7, requires_grad=True)
    assert (to_uint8(out_of_range) == 255).all()
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(video.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(F, 3, H, W\)"):
        to_uint8(torch.zeros(2, 4, 4, 3))


def test_whole_factor_resizing() -> None:
    video = palette_video()
    assert (downscale(upscale(video, 3), 3) == video).all()
    assert (fit_to_size(upscale(video, 4), 32) == video).all()
    assert fit_to_size(video[:, :24, :24], 32).shape == (9, 24, 24, 3)  # not a multiple: as is
    with pytest.raises(ValueError, match="divide"):
        downscale(video, 5)


def test_grid_tiles_images_side_by_side() -> None:
    frames = list(palette_video(frames=5))
    sheet = make_grid(frames, cols=3, scale=2, pad=1)
    assert sheet.shape == (2 * (64 + 1) + 1, 3 * (64 + 1) + 1, 3)
    assert (sheet[1:65, 1:65] == upscale(frames[0], 2)).all()
    assert (sheet[66:130, 66:130] == upscale(frames[4], 2)).all()


def test_the_mini_trainers_import_without_ffmpeg(tmp_path: Path) -> None:
    """They use this module's array helpers only, so an offline GPU node without an
    ffmpeg build can train; ffmpeg is imported when a video file is read or written."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "import evals.mini.measure_vgm, evals.mini.train_scorer, evals.mini.train_vgm\n"
        "from evals.video_io import write_video\n"
        "assert 'imageio_ffmpeg' not in sys.modules, 'imported at module level'\n"
        "write_video(sys.argv[1], np.zeros((2, 8, 8, 3), np.uint8))\n"
        "assert 'imageio_ffmpeg' in sys.modules\n"
    )
    video = tmp_path / "x.mp4"
    done = subprocess.run(
        [sys.executable, "-c", code, str(video)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert read_video(video).shape == (2, 8, 8, 3)
