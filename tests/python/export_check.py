#!/usr/bin/env python3
"""`medvlp export` + python/medvlp_model.py reproduce medvlp's zero-shot scores in plain PyTorch.

Three tiny runs are trained and exported: medvlp's small CNN and small transformer with a
SentencePiece tokenizer and linear heads; torchvision's ResNet-18 and a BERT (mean pooling over the
sum of the last two layers) with a WordPiece vocabulary and MLP heads; a ViT (patch-mean pooling)
and a BERT with attention pooling. For PNG files (at the model's
size and, to exercise resizing, larger), `medvlp zero-shot` writes its scores; medvlp_model.py
loads the export (torch, torchvision, sentencepiece; no medvlp code), reads the same PNG files,
and must give the same scores to 1e-4 and the same image and text embeddings (`medvlp embed`) to
1e-5. A folder of other files is refused as an export target.

Usage: export_check.py MEDVLP_BINARY SOURCE_DIR WORK_DIR. Without torch, torchvision, sentencepiece
or OpenCV: skipped, or failed under CI=true.
"""
import csv
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import cv2
    import numpy as np
    import sentencepiece  # noqa: F401
    import torch
    import torchvision  # noqa: F401
except ImportError as err:
    unavailable(f"python3 lacks {err.name} (Debian: python3-torch, python3-torchvision, python3-sentencepiece, "
                "python3-opencv)")

RUNS = {
    "small": [],
    "resnet_bert": ["model.image={name: resnet18}",
                    "model.text={name: bert, hidden: 32, layers: 2, heads: 2, intermediate: 64, max_position: 64, "
                    "pooling: mean, sum_last_layers: 2}",
                    "model.projection=mlp", "text.tokenizer=wordpiece", "text.vocab_size=300"],
    "vit_bert": ["model.image={name: vit_s16, image_size: [32, 32], patch_size: [8, 8], dim: 32, depth: 2, heads: 4, "
                 "pooling: avg}",
                 "model.text={name: bert, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_position: 64, "
                 "pooling: attention, with_pooler: false}",
                 "text.tokenizer=wordpiece", "text.vocab_size=300"],
}


def scores_csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {r["id"]: {k[len("score:"):]: float(v) for k, v in r.items() if k.startswith("score:")} for r in rows}


def main():
    medvlp, source, work = sys.argv[1:4]
    sys.path.insert(0, os.path.join(source, "python"))
    import medvlp_model

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(7)
    images = []
    for i, size in enumerate([32, 32, 32, 48]):
        # Smooth blobs on noise, 8-bit grey; the last one larger than the model's input.
        yy, xx = np.mgrid[0:size, 0:size] / size
        blob = np.exp(-((xx - rng.random()) ** 2 + (yy - rng.random()) ** 2) / 0.05)
        pixels = np.clip(255 * (0.6 * blob + 0.3 * rng.random((size, size))), 0, 255).astype(np.uint8)
        path = os.path.join(work, f"case{i}.png")
        cv2.imwrite(path, pixels)
        images.append(path)

    config = os.path.join(source, "tests/cli/tiny_train.yaml")
    worst_all = 0.0
    for name, sets in RUNS.items():
        run = os.path.join(work, name)
        cmd = [medvlp, "--log-level", "warn", "train", "-c", config, "-o", run, "--set",
               "eval.prompts={pleural effusion: {positive: [pleural effusion., effusion in the right lung.], "
               "negative: [no pleural effusion.]}, cardiomegaly: {positive: [the heart is enlarged.]}}"]
        for s in sets:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(work, name + "_export")
        subprocess.run([medvlp, "--log-level", "warn", "export", "--checkpoint", run, "-o", out], check=True,
                       stdout=subprocess.DEVNULL)
        csv_path = os.path.join(work, name + "_scores.csv")
        subprocess.run([medvlp, "--log-level", "warn", "zero-shot", "--checkpoint", run, *images, "-o", csv_path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        expected = scores_csv(csv_path)

        model = medvlp_model.load(out)
        if name == "resnet_bert":
            assert isinstance(model.image_encoder.net, torchvision.models.ResNet), type(model.image_encoder)
        pixels = [medvlp_model.read_png(p) for p in images]
        got = model.zero_shot(model.preprocess(pixels))
        worst = 0.0
        for i, path in enumerate(images):
            row = expected[path]
            assert sorted(got) == sorted(row), f"{name}: findings {sorted(got)} vs medvlp's {sorted(row)}"
            for finding, score in got.items():
                worst = max(worst, abs(float(score[i]) - row[finding]))
        assert worst <= 1e-4, f"{name}: medvlp_model.py's zero-shot scores differ from medvlp's by {worst}"
        # The embeddings themselves (scores of a barely trained model can all be near 0).
        texts = os.path.join(work, "texts.txt")
        prompts = ["pleural effusion.", "no pleural effusion.", "The heart is enlarged; small left effusion!"]
        open(texts, "w").write("\n".join(prompts) + "\n")
        embed = os.path.join(work, name + "_embed.safetensors")
        subprocess.run([medvlp, "--log-level", "warn", "embed", "--checkpoint", run, "--images", *images, "--texts", texts,
                        "-o", embed], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ref = medvlp_model.load_safetensors(embed)
        ours_images = model.encode_images(model.preprocess(pixels))
        ours_texts = model.encode_texts(prompts)
        for what, a, b in (("image", ours_images, ref["image_embed"]), ("text", ours_texts, ref["text_embed"])):
            d = float((a - b.to(a.dtype)).abs().max())
            assert d <= 1e-5, f"{name}: {what} embeddings differ from medvlp embed's by {d}"
            spread = float(b.std(0).max())
            assert spread > 1e-4, f"{name}: medvlp's {what} embeddings are all alike ({spread}); nothing compared"
            worst = max(worst, d)
        worst_all = max(worst_all, worst)

    # A folder of other files is not an export target.
    other = os.path.join(work, "small")
    r = subprocess.run([medvlp, "--log-level", "warn", "export", "--checkpoint", other, "-o", other],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "holds other files and no export.json" in r.stderr, r.stderr
    print(f"OK: {len(RUNS)} exports, {len(images)} images, zero-shot scores and embeddings within {worst_all:.2e} of medvlp's")


if __name__ == "__main__":
    main()
