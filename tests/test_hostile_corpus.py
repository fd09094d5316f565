"""The hostile-input corpus (issue 17): >= 150 malformed or hostile files and settings fed
to every entry point; each must give a clear AtomLens error (exit 2 in the CLI) or a
correct result: no traceback, no hang, bounded memory, nothing half-written, no code run
from a pickle.

The corpus is built by :func:`build_corpus` in a temporary folder and driven by
:func:`drive` in a child process (so the memory of the header bombs is measured alone:
its peak RSS must stay under 1.5 GB), each call time-boxed with ``SIGALRM``. Run it alone
with ``python -m pytest tests/test_hostile_corpus.py -q -s`` to print the counts by group.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # ~40 s of CPU, about 2 minutes on a busy machine

REPO = Path(__file__).resolve().parents[1]
FORMATS = REPO.parent / "shared" / "data" / "formats"
MEMORY_CAP_MB = 1536
TIMEOUT_S = 20
OK_TIMEOUT_S = 120
UNSAFE = ("allow_pickle", "weights_only", "Traceback (most recent call last)")


@dataclass
class Case:
    """One hostile input: a file/folder (or a setting) and what the entry points must do."""

    group: str
    name: str
    kind: str  # stack | config | project | atoms | detector | latent | output | setting
    path: str = ""
    expect: str = "error"  # "error" or "ok"
    args: list[str] = field(default_factory=list)  # extra CLI arguments (settings cases)
    check: str = ""  # for "ok" cases: the name of the result check


# --------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space, MB.

    ``ru_maxrss`` is kept across ``execve`` on Linux, so a child started by a large
    pytest process (``subprocess`` uses vfork) inherits the parent's peak; ``VmHWM``
    belongs to the address space made at exec and measures only the corpus runs.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header_only(path: Path, shape: tuple, descr: str = "<f4", extra: bytes = b"") -> None:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        fh.write(extra)


def _lattice(n_frames: int = 2, size: int = 96) -> np.ndarray:
    """Simulated graphene frames at 0.1 Å/px (the detector's held-out renderer)."""
    from atomlens.atoms.evaluate import synth_validation_set

    frames, _ = synth_validation_set(n_frames=n_frames, size=size, seed=17_017)
    return frames.astype(np.float32)


def _truncate(src: Path, dst: Path, frac: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])


def _mrc(path: Path, shape: tuple[int, int, int], mode: int = 2, body: bytes = b"") -> None:
    """A minimal MRC2014 file: 1024-byte header (nx, ny, nz, mode) + ``body``."""
    hdr = np.zeros(256, np.int32)
    nz, ny, nx = shape
    hdr[:4] = (nx, ny, nz, mode)
    hdr[7:10] = (nx, ny, nz)
    f = hdr.view(np.float32)
    f[10:13] = (nx, ny, nz)
    f[13:16] = 90.0
    hdr[16:19] = (1, 2, 3)
    b = bytearray(hdr.tobytes())
    b[208:212] = b"MAP "
    b[212:216] = bytes([0x44, 0x44, 0, 0])
    path.write_bytes(bytes(b) + body)


def build_corpus(root: Path) -> list[Case]:
    """Write every hostile input under ``root``; returns the cases."""
    import tifffile
    import torch
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    S = root / "stacks"
    S.mkdir()
    good = _lattice()
    np.save(root / "good.npy", good)
    good_npy = root / "good.npy"

    def stack(group: str, name: str, expect: str = "error", check: str = "") -> Path:
        cases.append(Case(group, name, "stack", str(S / name), expect, check=check))
        return S / name

    # --- truncated and zero-length files, every format ---------------------------------
    tif_src = root / "src.tif"
    tifffile.imwrite(tif_src, good, imagej=True, metadata={"axes": "TYX"})
    npz_src = root / "src.npz"
    np.savez(npz_src, frames=good)
    mrc_src = root / "src.mrc"
    _mrc(mrc_src, good.shape, 2, good.astype("<f4").tobytes())
    for src, ext in ((good_npy, "npy"), (npz_src, "npz"), (tif_src, "tif"), (mrc_src, "mrc")):
        for frac in (0.0, 0.1, 0.5, 0.9):
            _truncate(src, stack("truncated", f"cut{int(frac * 100)}.{ext}"), frac)
    real = {
        "dm3": "mos2_se_implanted.dm3",
        "ser": "16_STOimage_1.ser",
        "emd": "Acquisition_18.emd",
        "hspy": "srtio3_abf_movie.hspy",
    }
    for ext, fname in real.items():
        if not (FORMATS / fname).exists():
            continue  # the real files live beside the repository; optional here
        for frac in (0.0, 0.3, 0.95):
            dst = stack("truncated", f"real{int(frac * 100)}_{fname}")
            _truncate(FORMATS / fname, dst, frac)
            if ext == "ser":
                shutil.copy(
                    FORMATS / "16_STOimage.emi", dst.with_name(dst.name.replace("_1.ser", ".emi"))
                )
    z = zarr.open_array(
        str(stack("truncated", "missing_chunk.zarr")),
        mode="w",
        shape=(4, 64, 64),
        chunks=(1, 64, 64),
        dtype="f4",
    )
    z[:3] = 1.0
    (stack("truncated", "empty_dir.zarr")).mkdir()
    z2 = stack("truncated", "no_meta.zarr")
    zarr.open_array(str(z2), mode="w", shape=(2, 64, 64), chunks=(1, 64, 64), dtype="f4")[:] = 1
    for meta in list(z2.glob("zarr.json")) + list(z2.glob(".zarray")):
        meta.unlink()

    # --- garbage: random bytes, wrong formats under a suffix ------------------------------
    rng = np.random.default_rng(17)
    for ext in ("npy", "npz", "tif", "tiff", "dm3", "dm4", "emd", "ser", "hspy", "mrc"):
        stack("garbage", f"random.{ext}").write_bytes(rng.bytes(3000))
    stack("garbage", "tiff_as.npy").write_bytes(tif_src.read_bytes())
    stack("garbage", "npy_as.tif").write_bytes(good_npy.read_bytes())
    stack("garbage", "text_as.npz").write_text("frames = 1, 2, 3\n" * 50)
    stack("garbage", "html_as.tiff").write_text("<html><body>404 not found</body></html>")
    with zipfile.ZipFile(stack("garbage", "zip_of_junk.npz"), "w") as zf:
        zf.writestr("frames.npy", rng.bytes(500))

    # --- header bombs: tiny files declaring huge arrays --------------------------------------
    _npy_header_only(stack("header_bomb", "billion_frames.npy"), (10**9, 64, 64))
    _npy_header_only(stack("header_bomb", "wide.npy"), (2, 1 << 20, 1 << 20))
    _npy_header_only(stack("header_bomb", "float64_bomb.npy"), (10**7, 512, 512), "<f8")
    buf = io.BytesIO()
    _npy_header_only(root / "hdr.npy", (10**6, 256, 256))
    with zipfile.ZipFile(stack("header_bomb", "member_bomb.npz"), "w") as zf:
        zf.writestr("frames.npy", (root / "hdr.npy").read_bytes() + b"\0" * 64)
    del buf
    with zipfile.ZipFile(
        stack("header_bomb", "zip_bomb.npz"), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
    ) as zf:
        # 671 MB of zeros in ~3 MB: over the child's 512 MB budget, and npz cannot stream
        with zf.open("frames.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (2560, 256, 256)}
            )
            block = b"\0" * (1 << 24)
            for _ in range(40):
                fh.write(block)
    import h5py

    with h5py.File(stack("header_bomb", "chunk_bomb.hspy"), "w") as f:
        f.create_dataset(
            "Experiments/x/data", shape=(40000, 256, 256), chunks=(1, 256, 256), dtype="f4"
        )
    with h5py.File(stack("header_bomb", "chunk_bomb.emd"), "w") as f:
        f.create_dataset("data/x/data", shape=(40000, 256, 256), chunks=(1, 256, 256), dtype="f4")
    p = stack("header_bomb", "contiguous_bomb.hspy")
    with h5py.File(p, "w") as f:
        f.create_dataset("Experiments/x/data", shape=(4000, 512, 512), dtype="f4")
    # (h5py allocates contiguous storage late: the file holds only the header)
    zarr.open_array(
        str(stack("header_bomb", "declared_huge.zarr")),
        mode="w",
        shape=(100000, 4096, 4096),
        chunks=(1, 4096, 4096),
        dtype="f4",
    )
    _mrc(stack("header_bomb", "nz_bomb.mrc"), (1_000_000, 1024, 1024), 2, b"\0" * 4096)
    t = root / "tag.tif"
    tifffile.imwrite(t, good[0])
    b = bytearray(t.read_bytes())
    # ImageWidth/ImageLength (tags 256/257) patched to 60000 x 60000
    for tag in (256, 257):
        i = b.find(tag.to_bytes(2, "little") + (3).to_bytes(2, "little"))
        if i < 0:
            i = b.find(tag.to_bytes(2, "little") + (4).to_bytes(2, "little"))
        if i >= 0:
            b[i + 8 : i + 12] = (60000).to_bytes(2, "little") + b"\0\0"
    stack("header_bomb", "tag_bomb.tif").write_bytes(bytes(b))

    # --- special files ------------------------------------------------------------------
    os.mkfifo(stack("special", "fifo.npy"))
    os.mkfifo(stack("special", "fifo.tif"))
    os.mkfifo(stack("special", "fifo.hspy"))
    os.symlink("/dev/zero", stack("special", "dev_zero.npy"))
    os.symlink("/dev/urandom", stack("special", "dev_urandom.tif"))
    os.symlink("/dev/null", stack("special", "dev_null.dm4"))
    stack("special", "folder.npy").mkdir()
    stack("special", "folder.tif").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(stack("special", "socket.npy")))
    sock.close()
    os.symlink("loop_b.npy", stack("special", "loop_a.npy"))
    os.symlink("loop_a.npy", S / "loop_b.npy")
    os.symlink(str(root / "nowhere.npy"), stack("special", "dangling.npy"))
    stack("special", "no_suffix").write_bytes(good_npy.read_bytes())

    # --- dtypes --------------------------------------------------------------------------
    g = good[:, :64, :64]
    bad_dtypes = {
        "complex64": g.astype(np.complex64),
        "complex128": g.astype(np.complex128) * 1j,
        "bool": g > 0.5,
        "datetime": np.zeros(g.shape, "datetime64[s]"),
        "timedelta": np.zeros(g.shape, "timedelta64[ms]"),
        "structured": np.zeros(g.shape, [("a", "f4"), ("b", "i4")]),
        "unicode": np.full(g.shape, "x"),
        "bytes": np.full(g.shape, b"x"),
        "void": np.zeros(g.shape, "V4"),
        "uint64_offset": (g * 1000).astype(np.uint64) + np.uint64(2**63),
        "int64_offset": (g * 1000).astype(np.int64) + np.int64(2**62),
        "float64_offset": g.astype(np.float64) + 1e12,
        "float64_overflow": g.astype(np.float64) * 1e300,
    }
    for name, arr in bad_dtypes.items():
        stack("dtype", f"{name}.npy").write_bytes(_npy_bytes(arr))
    stack("dtype", "object_pickle.npy").write_bytes(
        _npy_bytes(np.array([_Exploit(str(root / "PWNED"))] * 4, dtype=object))
    )
    np.savez(stack("dtype", "complex.npz"), frames=g.astype(np.complex64))
    np.savez(
        stack("dtype", "object.npz"), frames=np.array([_Exploit(str(root / "PWNED"))], dtype=object)
    )
    tifffile.imwrite(stack("dtype", "complex.tif"), g.astype(np.complex64))
    tifffile.imwrite(stack("dtype", "bool.tif"), g > 0.5)
    for name, arr in {
        "uint16": (g * 1000).astype(np.uint16),
        "bigendian": g.astype(">f4"),
        "float16": g.astype(np.float16),
        "int8": (g * 50).astype(np.int8),
    }.items():
        stack("dtype", f"ok_{name}.npy", "ok", "same_as_good").write_bytes(_npy_bytes(arr))

    # --- shapes --------------------------------------------------------------------------
    for name, arr in {
        "1d": np.zeros(4096, np.float32),
        "4d": np.zeros((2, 2, 32, 32), "f4"),
        "rgb": np.zeros((2, 64, 64, 3), "f4"),
        "empty": np.zeros((0, 64, 64), "f4"),
        "tiny": np.zeros((2, 8, 8), "f4"),
        "scalar": np.float32(1.0),
        "sliver": np.zeros((1, 1, 5000), "f4"),
    }.items():
        stack("shape", f"{name}.npy").write_bytes(_npy_bytes(np.asarray(arr)))

    # --- non-finite pixels: masked (no atoms there), the rest analysed -----------------------
    stripe = good.copy()
    stripe[:, 30:50, :] = np.nan
    np.save(stack("nonfinite", "nan_stripe.npy", "ok", "no_atoms_in_stripe"), stripe)
    border = good.copy()
    border[:, :, :8] = np.inf
    np.save(stack("nonfinite", "inf_border.npy", "ok", "no_atoms_in_border"), border)
    frame = good.copy()
    frame[1] = np.nan
    np.save(stack("nonfinite", "nan_frame.npy", "ok", "no_atoms_in_frame1"), frame)
    np.save(stack("nonfinite", "all_nan.npy"), np.full_like(good, np.nan))

    # --- settings (CLI) -------------------------------------------------------------------
    for name, args in {
        "pixel0": ["--pixel-size", "0"],
        "pixel_neg": ["--pixel-size", "-0.1"],
        "pixel_nan": ["--pixel-size", "nan"],
        "pixel_inf": ["--pixel-size", "inf"],
        "pixel_1e-6": ["--pixel-size", "1e-6"],
        "pixel_1e9": ["--pixel-size", "1e9"],
        "frames_out": ["--frames", "7"],
        "frames_text": ["--frames", "x"],
        "frames_neg": ["--frames", "-1"],
        "frames_empty": ["--frames", "1:0"],
        "frames_comma": ["--frames", "0,,1"],
    }.items():
        cases.append(Case("settings", name, "setting", str(good_npy), args=args))
    for name, args in {"epochs0": ["--epochs", "0"], "epochs_neg": ["--epochs", "-3"]}.items():
        cases.append(Case("settings", name, "setting_run", str(good_npy), args=args))
    for name, args in {
        "threshold2": ["--threshold", "2"],
        "threshold_nan": ["--threshold", "nan"],
        "batch0": ["--batch-size", "0"],
    }.items():
        cases.append(Case("settings", name, "setting", str(good_npy), args=args))

    # --- configs ---------------------------------------------------------------------------
    C = root / "configs"
    C.mkdir()

    def config(name: str, text: str | bytes) -> None:
        p = C / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        cases.append(Case("config", name, "config", str(p)))

    config("syntax.toml", "[latent\nepochs = 3\n")
    config("syntax.yaml", "latent: [epochs: 3\n")
    config("syntax.json", "{latent: 3")
    config("list.json", "[1, 2, 3]")
    config("scalar.yaml", "42\n")
    config("epochs_text.toml", '[latent]\nepochs = "ten"\n')
    config("frames_float.toml", "[input]\nframes = 2.5\n")
    config("unknown_section.toml", "[detectr]\nthreshold = 0.5\n")
    config("unknown_key.toml", "[detect]\nthreshhold = 0.5\n")
    config("pixel_negative.toml", "[input]\npixel_size = -1.0\n")
    config("pixel_text.json", '{"input": {"pixel_size": "abc"}}')
    config("section_scalar.toml", "detect = 3\n")
    config("epochs_zero.yaml", "latent:\n  epochs: 0\n")
    config("threshold_big.toml", "[detect]\nthreshold = 5.0\n")
    config("python_tag.yaml", "latent: !!python/object/apply:os.system ['touch PWNED']\n")
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 9):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]")
    config("alias_bomb.yaml", "\n".join(lines) + "\n")
    config("deep.json", "[" * 100000 + "]" * 100000)
    config("huge.toml", "# " + "x" * (5 << 20) + "\n")
    config("binary.toml", rng.bytes(2000))
    config("settings.ini", "[detect]\nthreshold=0.5\n")
    os.mkfifo(C / "fifo.toml")
    cases.append(Case("config", "fifo.toml", "config", str(C / "fifo.toml")))

    # --- projects ----------------------------------------------------------------------------
    from atomlens.io.project import Project, save_project

    P = root / "projects"
    atoms = _good_atoms()
    base = save_project(P / "base", Project(stack_path=str(good_npy), pixel_size=0.1, atoms=atoms))
    base_meta = json.loads((base / "project.json").read_text())

    def project(name: str, edit: Any = None, text: str | None = None, after: Any = None) -> None:
        folder = P / f"{name}.atomlens"
        shutil.copytree(base, folder)
        if text is not None:
            (folder / "project.json").write_text(text)
        elif edit is not None:
            meta = json.loads(json.dumps(base_meta))
            edit(meta)
            (folder / "project.json").write_text(json.dumps(meta))
        if after is not None:
            after(folder)
        cases.append(Case("project", name, "project", str(folder)))

    project("json_list", text="[1, 2]")
    project("json_broken", text='{"format": "atomlens-project", ')
    project("json_empty", text="")
    project("json_binary", after=lambda f: (f / "project.json").write_bytes(rng.bytes(999)))
    project("wrong_format", lambda m: m.update(format="something-else"))
    project("version_text", lambda m: m.update(format_version="x"))
    project("version_newer", lambda m: m.update(format_version=99))
    project(
        "stack_passwd",
        lambda m: m.update(stack={"path": "../../etc/passwd", "relative_path": "../../etc/passwd"}),
    )
    project(
        "stack_dev_zero", lambda m: m.update(stack={"path": "/dev/zero", "relative_path": None})
    )
    project(
        "stack_fifo", lambda m: m.update(stack={"path": str(S / "fifo.npy"), "relative_path": None})
    )
    project("stack_list", lambda m: m.update(stack=[1, 2]))
    project("stack_path_int", lambda m: m.update(stack={"path": 5}))
    project("atoms_escape", lambda m: m.update(atoms_file="../../x.csv"))
    project("atoms_absolute", lambda m: m.update(atoms_file="/etc/passwd"))
    project("atoms_missing", after=lambda f: (f / "atoms.csv").unlink())
    project("atoms_garbage", after=lambda f: (f / "atoms.csv").write_bytes(rng.bytes(500)))
    project(
        "atoms_changed",
        after=lambda f: (f / "atoms.csv").write_text(
            (f / "atoms.csv").read_text() + "1,5.0,5.0,C,0.5,False,detector\n"
        ),
    )
    project("frames_int", lambda m: m.update(corrected_frames=5))
    project("frames_text", lambda m: m.update(corrected_frames=["a"]))
    project("frames_negative", lambda m: m.update(corrected_frames=[-3]))
    project("pixel_text", lambda m: m.update(pixel_size={"value_A": "ten"}))
    project("pixel_negative", lambda m: m.update(pixel_size={"value_A": -1}))
    project("pixel_list", lambda m: m.update(pixel_size=[0.1]))
    project("models_list", lambda m: m.update(models=[1]))
    project("models_int", lambda m: m.update(models={"detector": 3}))
    project("settings_list", lambda m: m.update(settings=[1]))

    def fifo_meta(f: Path) -> None:
        (f / "project.json").unlink()
        os.mkfifo(f / "project.json")

    project("json_fifo", after=fifo_meta)
    project(
        "json_huge",
        after=lambda f: (f / "project.json").write_text(
            json.dumps({**base_meta, "pad": "x" * (5 << 20)})
        ),
    )

    # --- atom tables (CSV) -------------------------------------------------------------------
    A = root / "atoms"
    A.mkdir()
    good_csv = A / "good_atoms.csv"
    atoms.to_csv(good_csv, index=False)

    def table(name: str, text: str | bytes) -> None:
        p = A / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        cases.append(Case("atoms_csv", name, "atoms", str(p)))

    table("empty.csv", "")
    table("binary.csv", rng.bytes(800))
    table("y_text.csv", "frame,y,x,cls,prob\n0,abc,3,C,0.9\n")
    table("x_inf.csv", "frame,y,x,cls,prob\n0,3,inf,C,0.9\n")
    table("frame_negative.csv", "frame,y,x,cls,prob\n-1,3,4,C,0.9\n")
    table("frame_fraction.csv", "frame,y,x,cls,prob\n1.5,3,4,C,0.9\n")
    table("no_y.csv", "frame,x,cls,prob\n0,3,C,0.9\n")
    table("prob_text.csv", "frame,y,x,cls,prob\n0,3,4,C,high\n")
    table("ragged.csv", "frame,y,x\n0,1,2,3,4,5\n1\n")
    table("nul_bytes.csv", b"frame,y,x\n0,1\x00,2\n")
    os.mkfifo(A / "fifo.csv")
    cases.append(Case("atoms_csv", "fifo.csv", "atoms", str(A / "fifo.csv")))
    (A / "folder.csv").mkdir()
    cases.append(Case("atoms_csv", "folder.csv", "atoms", str(A / "folder.csv")))

    # --- model files ---------------------------------------------------------------------------
    M = root / "models"
    M.mkdir()
    from atomlens.segment.model_file import FORMAT, SHIPPED

    shipped = torch.load(SHIPPED, map_location="cpu", weights_only=True)

    def detector(name: str, blob: Any = None, raw: bytes | None = None) -> None:
        p = M / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            torch.save(blob, p)
        cases.append(Case("model", name, "detector", str(p)))

    def edited(**net: Any) -> dict:
        b = {**shipped, "config": {**shipped["config"], "net": {**shipped["config"]["net"]}}}
        b["config"]["net"].update(net)
        return b

    detector("garbage.pt", raw=rng.bytes(2000))
    detector("zero.pt", raw=b"")
    detector("truncated.pt", raw=SHIPPED.read_bytes()[: SHIPPED.stat().st_size // 2])
    detector("pickle_exec.pt", {"format": FORMAT, "x": _Exploit(str(root / "PWNED"))})
    detector("not_dict.pt", [1, 2, 3])
    detector("wrong_format.pt", {**shipped, "format": "other/9"})
    detector("huge_filters.pt", edited(base_filters=100000))
    detector("many_levels.pt", edited(levels=12))
    detector("one_class.pt", edited(classes=["background"]))
    detector("huge_dilations.pt", edited(dilations=[100000] * 40))
    detector("filters_text.pt", edited(base_filters="many"))
    detector("net_list.pt", {**shipped, "config": {**shipped["config"], "net": [1]}})
    detector("tile_text.pt", {**shipped, "config": {**shipped["config"], "tile": "x"}})
    detector("weights_mismatch.pt", edited(base_filters=8))
    detector("no_weights.pt", {k: v for k, v in shipped.items() if k != "state_dict"})
    detector("npy_as.pt", raw=good_npy.read_bytes())
    os.mkfifo(M / "fifo.pt")
    cases.append(Case("model", "fifo.pt", "detector", str(M / "fifo.pt")))

    from atomlens.models.base import FORMAT as LATENT

    def latent(name: str, blob: Any = None, raw: bytes | None = None) -> None:
        p = M / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            torch.save(blob, p)
        cases.append(Case("model", name, "latent", str(p)))

    ok_cfg = {"window": [16, 16], "latent_dim": 2, "hidden": [32, 32]}
    latent("latent_garbage.pt", raw=rng.bytes(999))
    latent(
        "latent_pickle.pt", {"format": LATENT, "kind": "rvae", "x": _Exploit(str(root / "PWNED"))}
    )
    latent(
        "latent_unknown_kind.pt",
        {"format": LATENT, "kind": "gpt", "config": ok_cfg, "state_dict": {}, "card": {}},
    )
    latent(
        "latent_huge_hidden.pt",
        {
            "format": LATENT,
            "kind": "rvae",
            "config": {**ok_cfg, "hidden": [10**6, 10**6]},
            "state_dict": {},
            "card": {},
        },
    )
    latent(
        "latent_huge_window.pt",
        {
            "format": LATENT,
            "kind": "rvae",
            "config": {**ok_cfg, "window": [100000, 100000]},
            "state_dict": {},
            "card": {},
        },
    )
    latent(
        "latent_config_list.pt",
        {"format": LATENT, "kind": "rvae", "config": [1], "state_dict": {}, "card": {}},
    )
    latent(
        "latent_bad_key.pt",
        {
            "format": LATENT,
            "kind": "rvae",
            "config": {**ok_cfg, "sneaky": 1},
            "state_dict": {},
            "card": {},
        },
    )
    latent(
        "latent_state_mismatch.pt",
        {
            "format": LATENT,
            "kind": "rvae",
            "config": ok_cfg,
            "state_dict": {"w": torch.zeros(3)},
            "card": {},
        },
    )

    # --- outputs that cannot be written (a path under a regular FILE: refused even for root)
    OUT = root / "outputs"
    OUT.mkdir()
    (OUT / "a_file").write_text("not a folder")
    for name, args in {
        "detect_out_under_file": [
            "detect",
            str(good_npy),
            "--pixel-size",
            "0.1",
            "--out",
            str(OUT / "a_file" / "atoms.csv"),
        ],
        "detect_maps_under_file": [
            "detect",
            str(good_npy),
            "--pixel-size",
            "0.1",
            "--out",
            str(OUT / "d" / "atoms.csv"),
            "--maps",
            str(OUT / "a_file" / "maps.npy"),
        ],
        "detect_out_is_folder": ["detect", str(good_npy), "--pixel-size", "0.1", "--out", str(OUT)],
        "run_out_is_file": [
            "run",
            str(good_npy),
            "--pixel-size",
            "0.1",
            "--scheduler",
            "none",
            "--quiet",
            "--out",
            str(OUT / "a_file"),
        ],
        "run_out_under_file": [
            "run",
            str(good_npy),
            "--pixel-size",
            "0.1",
            "--scheduler",
            "none",
            "--quiet",
            "--out",
            str(OUT / "a_file" / "run"),
        ],
        "batch_out_under_file": [
            "batch",
            str(good_npy),
            "--pixel-size",
            "0.1",
            "--scheduler",
            "none",
            "--quiet",
            "--out",
            str(OUT / "a_file" / "b"),
        ],
        "chem_out_under_file": [
            "chem",
            str(good_csv),
            "--pixel-size",
            "0.1",
            "--out",
            str(OUT / "a_file" / "chem.csv"),
        ],
    }.items():
        cases.append(Case("output", name, "output", "", args=args))
    cases.append(Case("output", "project_under_file", "output_api", str(OUT / "a_file" / "p")))
    cases.append(Case("output", "run_locked_out", "output_lock", str(OUT / "locked")))
    return cases


class _Exploit:
    """A pickle payload that would create a marker file if ever unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _good_atoms() -> Any:
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 30
    return pd.DataFrame(
        {
            "frame": np.repeat([0, 1], n // 2),
            "y": rng.uniform(5, 59, n),
            "x": rng.uniform(5, 59, n),
            "cls": ["C"] * (n - 1) + ["Si"],
            "prob": rng.uniform(0.5, 1, n),
        }
    )


# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


@contextlib.contextmanager
def _time_box(seconds: int) -> Any:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _api(fn: Any, timeout: int = TIMEOUT_S) -> tuple[str, str, Any]:
    """Call ``fn``: ("ok", "", result) | ("error", message, None) | ("bad", why, None)."""
    from atomlens.errors import AtomLensError

    try:
        with _time_box(timeout):
            return "ok", "", fn()
    except Hang:
        return "bad", "hang", None
    except AtomLensError as exc:
        text = str(exc)
        if "\n" in text.strip() or any(u in text for u in UNSAFE) or not text:
            return "bad", f"unclear message: {text[:200]!r}", None
        return "error", text, None
    except MemoryError:
        return "bad", "MemoryError", None
    except Exception as exc:  # noqa: BLE001 - an undocumented exception type is a failure
        return "bad", f"undocumented {type(exc).__name__}: {str(exc)[:200]}", None


def _cli(argv: list[str], timeout: int = TIMEOUT_S) -> tuple[str, str, int]:
    """Run ``atomlens ARGV`` in this process: ("ok"|"error"|"bad", text, rc)."""
    from atomlens.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with _time_box(timeout), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except Hang:
        return "bad", "hang", -1
    except SystemExit as exc:  # argparse refusing an option: exit 2 with its usage line
        rc = int(exc.code or 0)
    except BaseException as exc:  # noqa: BLE001
        return "bad", f"escaped {type(exc).__name__}: {str(exc)[:200]}", -1
    text = err.getvalue() + out.getvalue()
    if any(u in text for u in UNSAFE):
        return "bad", f"traceback or unsafe advice in output: {text[-300:]!r}", rc
    errors = [ln for ln in text.splitlines() if ": error: " in ln]
    if rc == 0:
        return "ok", text, rc
    if rc == 2 and argv[0] == "batch":
        return "error", text, rc
    if rc == 2 and len(errors) == 1:
        return "error", errors[0] if errors else text.strip().splitlines()[-1], rc
    return "bad", f"exit {rc}: {text[-300:]!r}", rc


def _no_leftovers(folder: Path, forbidden: list[str]) -> str:
    """Why ``folder`` holds half-written output (temporaries or ``forbidden`` names), or ''."""
    if not folder.exists():
        return ""
    tmp = [p.name for p in folder.rglob("*.atomlens-tmp")]
    if tmp:
        return f"temporaries left: {tmp[:3]}"
    left = [n for n in forbidden if (folder / n).exists()]
    return f"half-written outputs left: {left}" if left else ""


def _check_ok(check: str, atoms: Any, truth_free: Any = None) -> str:
    """'' when an "ok" case's atom table is right, else why not."""
    if check == "same_as_good":
        return "" if len(atoms) >= 20 else f"only {len(atoms)} atoms on a good lattice"
    if check == "no_atoms_in_stripe":
        inside = atoms[(atoms["y"] > 29.5) & (atoms["y"] < 49.5)]
        outside = atoms[(atoms["y"] < 26) | (atoms["y"] > 54)]
        if len(inside):
            return f"{len(inside)} atoms inside the NaN stripe"
        return "" if len(outside) >= 10 else f"only {len(outside)} atoms outside the stripe"
    if check == "no_atoms_in_border":
        if (atoms["x"] < 7.5).any():
            return "atoms inside the inf border"
        return "" if len(atoms) >= 20 else f"only {len(atoms)} atoms beside the border"
    if check == "no_atoms_in_frame1":
        f = atoms["frame"].to_numpy()
        if (f == 1).any():
            return "atoms found on an all-NaN frame"
        return "" if (f == 0).sum() >= 10 else "too few atoms on the good frame"
    return f"unknown check {check}"


def drive(root: Path) -> dict:
    """Build the corpus under ``root`` and run every entry point on it."""
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from atomlens._napari._reader import get_reader
    from atomlens.io import read_stack
    from atomlens.io.atoms_table import read_atoms_csv
    from atomlens.io.project import Project, load_project, napari_get_reader, save_project
    from atomlens.models.registry import load_model
    from atomlens.pipeline.config import PipelineConfig
    from atomlens.segment.model_file import load_detector

    t0 = time.perf_counter()
    cases = build_corpus(root)
    quick = root / "quick.toml"
    quick.write_text(
        "[latent]\nenabled = false\n[report]\nenabled = false\n[detect]\nsave_maps = false\n"
    )
    good_npy = root / "good.npy"
    good_csv = root / "atoms" / "good_atoms.csv"
    runs: list[dict] = []
    work = root / "work"
    work.mkdir()

    def record(
        case: Case, entry: str, outcome: tuple, leftovers: str = "", check: str = ""
    ) -> None:
        status, text = outcome[0], outcome[1]
        fail = ""
        if status == "bad":
            fail = text
        elif leftovers:
            fail = leftovers
        elif status == "ok" and case.expect == "error":
            fail = "silent result for hostile input"
        elif status == "error" and case.expect == "ok":
            fail = f"refused a usable input: {text[:200]}"
        elif check:
            fail = check
        runs.append(
            {
                "group": case.group,
                "case": case.name,
                "entry": entry,
                "status": status,
                "fail": fail,
                "message": str(text)[:240],
                # peak RSS of this process so far: the first run that lifts it past the
                # cap is the one to look at
                "maxrss_mb": _peak_rss_mb(),
            }
        )

    for k, case in enumerate(cases):
        out = work / f"{k:03d}"
        to = OK_TIMEOUT_S if case.expect == "ok" else TIMEOUT_S
        if case.kind == "stack":
            res = _api(lambda c=case: read_stack(c.path, pixel_size=0.1))
            record(case, "read_stack", res)
            res = _api(lambda c=case: read_stack(c.path, pixel_size=0.1, lazy=True).frame(0))
            record(case, "read_stack(lazy)", res)

            def napari_read(c: Case = case) -> Any:
                reader = get_reader(c.path)
                if reader is None:
                    from atomlens.errors import InputFileError

                    raise InputFileError("not offered to AtomLens")  # napari tries others
                return reader(c.path)

            record(case, "napari reader", _api(napari_read))
            res = _cli(
                [
                    "detect",
                    case.path,
                    "--pixel-size",
                    "0.1",
                    "--out",
                    str(out / "d" / "atoms.csv"),
                    "--maps",
                    str(out / "d" / "maps.npy"),
                ],
                to,
            )
            check = ""
            if res[0] == "ok" and case.expect == "ok":
                check = _check_ok(case.check, pd.read_csv(out / "d" / "atoms.csv"))
            record(
                case,
                "cli detect",
                res,
                "" if res[0] == "ok" else _no_leftovers(out / "d", ["atoms.csv", "maps.npy"]),
                check,
            )
            res = _cli(
                [
                    "run",
                    case.path,
                    "--out",
                    str(out / "r"),
                    "--pixel-size",
                    "0.1",
                    "--scheduler",
                    "none",
                    "--quiet",
                    "--config",
                    str(quick),
                ],
                to,
            )
            check = ""
            if res[0] == "ok" and case.expect == "ok":
                check = _check_ok(case.check, pd.read_csv(out / "r" / "atoms.csv"))
            record(
                case,
                "cli run",
                res,
                "" if res[0] == "ok" else _no_leftovers(out / "r", ["run.json", "atoms.csv"]),
                check,
            )
            res = _cli(
                [
                    "chem",
                    str(good_csv),
                    "--stack",
                    case.path,
                    "--pixel-size",
                    "0.1",
                    "--out",
                    str(out / "c.csv"),
                ],
                to,
            )
            record(
                case,
                "cli chem --stack",
                res,
                "" if res[0] == "ok" else _no_leftovers(out, ["c.csv"]),
            )
        elif case.kind in ("setting", "setting_run"):
            if case.kind == "setting":
                res = _cli(["detect", case.path, "--out", str(out / "a.csv"), *case.args])
                record(case, "cli detect", res, _no_leftovers(out, ["a.csv"]))
            res = _cli(
                [
                    "run",
                    case.path,
                    "--out",
                    str(out / "r"),
                    "--scheduler",
                    "none",
                    "--quiet",
                    "--config",
                    str(quick),
                    *(
                        case.args
                        if "--pixel-size" in case.args
                        else ["--pixel-size", "0.1", *case.args]
                    ),
                ]
            )
            record(case, "cli run", res, _no_leftovers(out / "r", ["run.json", "atoms.csv"]))
        elif case.kind == "config":
            record(
                case,
                "PipelineConfig.from_file",
                _api(lambda c=case: PipelineConfig.from_file(c.path).validate()),
            )
            res = _cli(
                [
                    "run",
                    str(good_npy),
                    "--out",
                    str(out / "r"),
                    "--pixel-size",
                    "0.1",
                    "--scheduler",
                    "none",
                    "--quiet",
                    "--config",
                    case.path,
                ]
            )
            record(case, "cli run", res, _no_leftovers(out / "r", ["run.json", "atoms.csv"]))
        elif case.kind == "project":
            record(case, "load_project", _api(lambda c=case: load_project(c.path)))

            def napari_project(c: Case = case) -> Any:
                reader = napari_get_reader(c.path)
                if reader is None:
                    from atomlens.errors import InputFileError

                    raise InputFileError("not offered to AtomLens")
                return reader(c.path)

            record(case, "napari project reader", _api(napari_project))
            res = _cli(
                [
                    "run",
                    case.path,
                    "--out",
                    str(out / "r"),
                    "--pixel-size",
                    "0.1",
                    "--scheduler",
                    "none",
                    "--quiet",
                    "--config",
                    str(quick),
                ]
            )
            record(case, "cli run", res, _no_leftovers(out / "r", ["run.json", "atoms.csv"]))
        elif case.kind == "atoms":
            record(case, "read_atoms_csv", _api(lambda c=case: read_atoms_csv(c.path)))
            res = _cli(["chem", case.path, "--pixel-size", "0.1", "--out", str(out / "c.csv")])
            record(case, "cli chem", res, _no_leftovers(out, ["c.csv"]))
        elif case.kind == "detector":
            record(case, "load_detector", _api(lambda c=case: load_detector(c.path)))
            res = _cli(
                [
                    "detect",
                    str(good_npy),
                    "--pixel-size",
                    "0.1",
                    "--model",
                    case.path,
                    "--out",
                    str(out / "a.csv"),
                ]
            )
            record(case, "cli detect --model", res, _no_leftovers(out, ["a.csv"]))
        elif case.kind == "latent":
            record(case, "load_model", _api(lambda c=case: load_model(c.path)))
        elif case.kind == "output":
            res = _cli(case.args)
            record(case, f"cli {case.args[0]}", res)
        elif case.kind == "output_api":
            record(
                case,
                "save_project",
                _api(lambda c=case: save_project(c.path, Project(atoms=_good_atoms()))),
            )
        elif case.kind == "output_lock":
            from atomlens.io.atomic import output_lock

            with output_lock(case.path):
                res = _cli(
                    [
                        "run",
                        str(good_npy),
                        "--out",
                        case.path,
                        "--pixel-size",
                        "0.1",
                        "--scheduler",
                        "none",
                        "--quiet",
                        "--config",
                        str(quick),
                    ]
                )
            record(
                case,
                "cli run (second run on one --out)",
                res,
                _no_leftovers(Path(case.path), ["run.json", "atoms.csv"]),
            )

    # batch: every hostile stack in one call reports each and goes on to the good movie
    bad_stacks = [c.path for c in cases if c.kind == "stack" and c.expect == "error"]
    batch_case = Case("batch", "all_hostile_stacks_then_good", "batch")
    res = _cli(
        [
            "batch",
            *bad_stacks,
            str(good_npy),
            "--out",
            str(work / "batch"),
            "--pixel-size",
            "0.1",
            "--scheduler",
            "none",
            "--quiet",
            "--config",
            str(quick),
        ],
        OK_TIMEOUT_S,
    )
    text = res[1]
    n_failed = text.count(": FAILED: ")
    why = ""
    if f"batch: 1 done, {len(bad_stacks)} failed" not in text or n_failed != len(bad_stacks):
        why = f"batch did not report every bad movie and go on: {text[-400:]!r}"
    runs.append(
        {
            "group": "batch",
            "case": batch_case.name,
            "entry": "cli batch",
            "status": "error" if res[2] == 2 else res[0],
            "fail": why,
            "message": f"{n_failed} failed",
        }
    )

    pwned = (root / "PWNED").exists() or Path("PWNED").exists()
    return {
        "cases": [c.__dict__ for c in cases],
        "runs": runs,
        "pwned": pwned,
        "maxrss_mb": _peak_rss_mb(),
        "seconds": time.perf_counter() - t0,
    }


def summarise(report: dict) -> str:
    """Counts by group (inputs, runs, clear errors, correct results, failures)."""
    from collections import Counter

    inputs = Counter(c["group"] for c in report["cases"])
    runs = Counter(r["group"] for r in report["runs"])
    errs = Counter(r["group"] for r in report["runs"] if r["status"] == "error" and not r["fail"])
    oks = Counter(r["group"] for r in report["runs"] if r["status"] == "ok" and not r["fail"])
    fails = Counter(r["group"] for r in report["runs"] if r["fail"])
    lines = [f"{'group':<14}{'inputs':>7}{'runs':>6}{'errors':>8}{'correct':>9}{'failed':>8}"]
    for g in sorted(set(inputs) | set(runs)):
        lines.append(f"{g:<14}{inputs[g]:>7}{runs[g]:>6}{errs[g]:>8}{oks[g]:>9}{fails[g]:>8}")
    lines.append(
        f"{'total':<14}{sum(inputs.values()):>7}{sum(runs.values()):>6}"
        f"{sum(errs.values()):>8}{sum(oks.values()):>9}{sum(fails.values()):>8}"
    )
    lines.append(
        f"peak RSS {report['maxrss_mb']:.0f} MB, {report['seconds']:.0f} s, "
        f"pickle code run: {report['pwned']}"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------


def test_hostile_corpus(tmp_path):
    """Done-when: 0 tracebacks, 0 hangs, 0 runs above 1.5 GB, 0 silent wrong results."""
    report_file = tmp_path / "report.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ATOMLENS_MEMORY_BUDGET": "512M",
    }
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "corpus"), str(report_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print("\n" + summarise(report))
    failures = [r for r in report["runs"] if r["fail"]]
    assert not failures, "\n".join(
        f"{r['group']}/{r['case']} via {r['entry']}: {r['fail']}" for r in failures[:40]
    )
    assert not report["pwned"], "a pickle payload ran"
    over = next((r for r in report["runs"] if r.get("maxrss_mb", 0) >= MEMORY_CAP_MB), None)
    where = (
        f" (first past the cap: {over['group']}/{over['case']} via {over['entry']})" if over else ""
    )
    assert report["maxrss_mb"] < MEMORY_CAP_MB, f"peak RSS {report['maxrss_mb']:.0f} MB{where}"
    assert len(report["cases"]) >= 150
    groups = {c["group"] for c in report["cases"]}
    assert {
        "truncated",
        "garbage",
        "header_bomb",
        "special",
        "dtype",
        "config",
        "project",
        "atoms_csv",
        "model",
        "output",
        "nonfinite",
        "settings",
    } <= groups


if __name__ == "__main__":  # the child process of test_hostile_corpus
    rep = drive(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(rep, indent=1, default=str))
    print(summarise(rep))
