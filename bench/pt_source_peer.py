"""The source's own single-atom detector on the Pt images it was trained on.

``pt_single_atoms`` is the training split of HPAI-BSC/AtomDetection_ACSTEM (JACS 2022,
MIT), whose repository also holds the published SAC-CNN checkpoint
(``models/model_existing.ckpt``: a small CNN that classifies 21x21 crops, trained on these
11 images). This script runs that checkpoint on the 11 images in ``../shared/data``
exactly as the source does (its preprocessing: a 40-px median background removed,
clipped at 0, scaled to 0-1; the 21x21 window at every pixel; a threshold on the atom
probability, connected components, each component's box centre), scores it with the
source's criterion (21-px boxes, one-to-one Hungarian matching on IoU, IoU > 0.5) and
with ours (one-to-one within 6 px), and scores AtomLens' general model (no fine-tuning,
no Pt label ever seen) on the same images in the same run. The source's figures here are
in-sample (it was trained on these labels): an upper reference for what the labels
allow, not a held-out score. Only the training split is used; the source's test split
is not in ``../shared/data`` and nothing here reads it.

    .venv/bin/python bench/pt_source_peer.py --source PATH [--json out.json]

``PATH``: a checkout of HPAI-BSC/AtomDetection_ACSTEM (nothing is downloaded here; the
source's model class and checkpoint are read from it). The window is evaluated fully
convolutionally (the CNN's convolutions once over the padded image, its 3x3 adaptive
pooling of the 15x15 feature window as a 5x5 mean read at 5-px dilation, its dense
layers as dilated and 1x1 convolutions): the same numbers as the source's stride-1
sliding window (checked on the first image, max difference printed), ~17 s per 512²
image on one thread. Skips (exit 0) without ``--source`` or without the data.

Measured 2026-12-05 (one thread, this script): the source's checkpoint at its published
threshold 0.891 scores F1 0.587 (P 0.549, R 0.632; 6 px: 0.587) on the 11 images it was
trained on; the best threshold on them (0.891 of 0.5/0.7/0.8/0.891/0.95) is that one.
AtomLens' general model, never fine-tuned on Pt: 0.601 (6 px) on the same images (ratio
1.024). On the 8 images ``bench/finetune_pt.py`` holds out in blocks split 0 / 1 / 2 the
source's in-sample F1 is 0.595 / 0.559 / 0.603; AtomLens fine-tuned on the other 3
images only scores 0.624 / 0.624 / 0.654 there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (0.5, 0.7, 0.8, 0.891, 0.95)  # 0.891: the source's published threshold
BOX = 21  # px, the source's box side for its IoU criterion


def iou_matches(true_yx: np.ndarray, pred_yx: np.ndarray, box: int = BOX) -> int:
    """Matches under the source's criterion: ``box``-px squares around each position,
    one-to-one Hungarian assignment maximising IoU, pairs with IoU > 0.5."""
    from scipy.optimize import linear_sum_assignment

    if len(true_yx) == 0 or len(pred_yx) == 0:
        return 0
    d = np.abs(true_yx[:, None, :] - pred_yx[None, :, :])
    inter = np.clip(box - d[..., 0], 0, None) * np.clip(box - d[..., 1], 0, None)
    iou = inter / (2 * box * box - inter)
    r, c = linear_sum_assignment(1 - iou)
    return int((iou[r, c] > 0.5).sum())


def _load_sac_cnn(source: Path):
    import torch

    sys.path.insert(0, str(source))
    from atoms_detection.model import BasicCNN  # the source's own class

    ck = torch.load(
        source / "models" / "model_existing.ckpt", map_location="cpu", weights_only=False
    )
    net = BasicCNN(num_classes=2)
    net.load_state_dict(ck["state_dict"])
    return net.eval()


def _padded_input(img: np.ndarray) -> np.ndarray:
    """The source's preprocessing, zero-padded by 10 px."""
    from scipy import ndimage as ndi

    clean = img - ndi.median_filter(img, size=(40, 40))
    clean[clean < 0] = 0
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    p = np.zeros((img.shape[0] + 20, img.shape[1] + 20), np.float32)
    p[10:-10, 10:-10] = clean
    return p


def probability_map(net, img: np.ndarray) -> np.ndarray:
    """Atom probability (Y, X) of the 21x21 window centred at every pixel."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        f = net.features(torch.from_numpy(_padded_input(img))[None, None])
        pooled = F.avg_pool2d(f, 5, stride=1)
        fc1, fc2 = net.fc_layers[0], net.fc_layers[2]
        h = F.relu(
            F.conv2d(pooled, fc1.weight.reshape(fc1.out_features, -1, 3, 3), fc1.bias, dilation=5)
        )
        h = F.relu(F.conv2d(h, fc2.weight[:, :, None, None], fc2.bias))
        o = F.conv2d(h, net.fc3.weight[:, :, None, None], net.fc3.bias)
        return torch.softmax(o, 1)[0, 1].numpy()


def sliding_window_check(net, img: np.ndarray) -> float:
    """Max |fully convolutional - per-crop| probability on 16 windows of an 80² corner."""
    import torch

    small = img[:80, :80]
    m, p = probability_map(net, small), _padded_input(small)
    ys = xs = (0, 21, 40, 59)
    crops = np.stack([p[y : y + 21, x : x + 21] for y in ys for x in xs])[:, None]
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(crops)), 1)[:, 1].numpy()
    return float(np.abs(ref - np.array([m[y, x] for y in ys for x in xs])).max())


def detections(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The source's detection: components of ``prob > threshold``, each its box centre
    (integer px, ``(n, 2)`` y, x)."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(prob > threshold)
    cen = [
        ((s[0].start + s[0].stop - 1) // 2, (s[1].start + s[1].stop - 1) // 2)
        for s in ndi.find_objects(lab)
    ]
    return np.array(cen, float).reshape(-1, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=None, help="checkout of HPAI-BSC/AtomDetection_ACSTEM")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not args.source or not (Path(args.source) / "models" / "model_existing.ckpt").exists():
        print("skip: give --source, a checkout of HPAI-BSC/AtomDetection_ACSTEM with its model")
        return 0
    from finetune_pt import DATA, load_pt, score  # bench/finetune_pt.py

    if not DATA.exists():
        print(f"skip: {DATA} not found (../shared/data absent)")
        return 0
    import torch

    from atomlens.atoms.match import match_atoms
    from atomlens.segment.registry import load_model

    torch.set_num_threads(1)
    net = _load_sac_cnn(Path(args.source))
    names, images, labels = load_pt()
    truth = [lab[["y", "x"]].to_numpy(float) for lab in labels]
    out: dict = {"source": str(args.source), "images": names, "source_model": {}}
    out["window_check"] = sliding_window_check(net, images[0])
    print(f"max |fully convolutional - sliding window| = {out['window_check']:.1e}")
    t0 = time.perf_counter()
    probs = [probability_map(net, img) for img in images]
    out["source_s_per_image"] = round((time.perf_counter() - t0) / len(images), 1)
    for thr in THRESHOLDS:
        per = []  # (iou matches, 6-px matches, labels, detections) per image
        for lab, prob in zip(truth, probs):
            det = detections(prob, thr)
            per.append(
                (iou_matches(lab, det), len(match_atoms(det, lab, 6.0)[0]), len(lab), len(det))
            )
        tp_iou, tp_6, n_t, n_f = np.sum(per, axis=0).tolist()
        row = {
            "f1_iou": round(2 * tp_iou / (n_t + n_f), 3),
            "precision": round(tp_iou / max(n_f, 1), 3),
            "recall": round(tp_iou / n_t, 3),
            "f1_6px": round(2 * tp_6 / (n_t + n_f), 3),
            "n_true": n_t,
            "n_found": n_f,
            # the 8 images bench/finetune_pt.py scores for blocks split k (3k..3k+2 trained)
            "f1_6px_blocks_held_out_8": [
                round(
                    2
                    * sum(p[1] for i, p in enumerate(per) if i // 3 != k)
                    / sum(p[2] + p[3] for i, p in enumerate(per) if i // 3 != k),
                    3,
                )
                for k in range(3)
            ],
        }
        out["source_model"][str(thr)] = row
        print(f"source model (in-sample), threshold {thr:<5}: {row}", flush=True)
    t0 = time.perf_counter()
    out["atomlens_general"] = score(load_model("general"), images, labels, list(range(len(names))))
    out["atomlens_s_per_image"] = round((time.perf_counter() - t0) / len(images), 1)
    ref = out["source_model"]["0.891"]["f1_6px"]
    out["f1_ratio_atomlens_general_vs_source"] = round(out["atomlens_general"]["f1"] / ref, 3)
    print(
        f"AtomLens general, no fine-tuning: F1 {out['atomlens_general']['f1']:.3f} (6 px) "
        f"vs the source's in-sample {ref:.3f} at its threshold 0.891"
    )
    print(json.dumps({k: v for k, v in out.items() if k != "atomlens_general"}))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
