#!/usr/bin/env python3
"""`medvlp loss-check` against PyTorch: the clip loss and its gradients on identical inputs.

Usage: loss_check_clip.py MEDVLP_BINARY WORK_DIR. Without torch: skipped, or failed under CI=true.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import torch
except ImportError:
    unavailable("python3 has no torch (Debian: python3-torch)")

from st_io import load, save  # noqa: E402


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(12, 16, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(12, 16, dtype=torch.float64), dim=1)
    inputs, outputs = os.path.join(work, "in.safetensors"), os.path.join(work, "out.safetensors")
    save(inputs, {"image_embed": image, "text_embed": text})
    # On a CUDA build with a GPU the loss runs there (--device), compared with the same CPU reference.
    version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout
    device = "cuda" if "CUDA: yes" in version else "cpu"
    subprocess.run([binary, "--log-level", "warn", "loss-check", "--loss", "clip", "--options",
                    '{"temperature": 0.1}', "--inputs", inputs, "-o", outputs, "--device", device], check=True)
    print(f"medvlp loss-check on {device}")
    got = load(outputs)

    # The reference: CLIP's symmetric cross-entropy with a learnable log-scale, as open_clip computes it.
    img = image.clone().requires_grad_(True)
    txt = text.clone().requires_grad_(True)
    log_scale = torch.tensor(torch.log(torch.tensor(1 / 0.1)).item(), dtype=torch.float32).double().requires_grad_(True)
    logits = log_scale.exp().clamp(max=100) * img @ txt.t()
    labels = torch.arange(12)
    loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels)) / 2
    loss.backward()

    checks = [("loss", got["loss"], loss.detach()), ("grad/image_embed", got["grad/image_embed"], img.grad),
              ("grad/text_embed", got["grad/text_embed"], txt.grad), ("param/log_scale", got["param/log_scale"], log_scale.grad)]
    bad = False
    for name, a, b in checks:
        err = (a.double() - b.double()).abs().max().item()
        print(f"{name}: max |medvlp - torch| = {err:.3e}")
        bad |= not err <= 1e-10
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
