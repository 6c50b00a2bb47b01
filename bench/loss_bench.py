#!/usr/bin/env python3
"""PyTorch versions of the losses a user would otherwise write from the methods' public code
(open_clip's CLIP loss, MedCLIP's soft loss, fVLM's calibrated targets, AFLoc's local loss), timed
like bench/loss_bench.cpp: forward + backward, median of --reps after one warm-up. One JSON line each.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def clip(inp, scale):
    logits = scale * inp["image_embed"] @ inp["text_embed"].t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def soft_target(inp, scale):
    pos = (inp["labels"] > 0).float()
    pos = torch.cat([pos, (pos.sum(1, keepdim=True) == 0).float()], 1)
    targets = F.softmax(pos @ pos.t(), 1)
    logits = scale * inp["image_embed"] @ inp["text_embed"].t()
    soft = lambda x, t: -(t * F.log_softmax(x, 1)).sum(1).mean()
    return (soft(logits, targets) + soft(logits.t(), F.softmax(pos @ pos.t(), 0).t())) / 2


def false_negative(inp, scale):
    h, n = inp["report_hash"], inp["report_normal"] > 0
    same = (h[:, None] == h[None, :]) | (n[:, None] & n[None, :])
    targets = torch.eye(len(h), device=h.device) + same.float().fill_diagonal_(0)
    targets = targets / targets.sum(1, keepdim=True)
    logits = scale * inp["image_embed"] @ inp["text_embed"].t()
    soft = lambda x: -(targets * F.log_softmax(x, 1)).sum(1).mean()
    return (soft(logits) + soft(logits.t())) / 2


def local(inp, scale, t1=4.0, t2=5.0, t3=10.0):
    # AFLoc's loop: one report against every image at a time.
    words, patches = inp["text_tokens"], inp["image_tokens"]  # [B,L,D], [B,N,D]
    lengths = inp["word_mask"].sum(1).long().tolist()
    B = words.shape[0]
    rows = []
    for i in range(B):
        w = words[i, :lengths[i]].unsqueeze(0).expand(B, -1, -1)             # [B,n,D]
        attn = torch.softmax(patches @ w.transpose(1, 2), dim=-1) * t1       # [B,N,n]
        attn = torch.softmax(attn, dim=1)
        ctx = attn.transpose(1, 2) @ patches                                 # [B,n,D]
        cos = (w * ctx).sum(-1) / (w.norm(dim=-1) * ctx.norm(dim=-1)).clamp(min=1e-8)
        rows.append(torch.log((cos * t2).exp().sum(1, keepdim=True)))
    sims = torch.cat(rows, 1) * t3                                           # [images, reports]
    labels = torch.arange(B, device=sims.device)
    return F.cross_entropy(sims, labels) + F.cross_entropy(sims.t(), labels)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--reps", type=int, default=0,
                   help="timed runs; 0: at least 5, more until 2 s of them (at most 200), as the C++ side")
    p.add_argument("--losses", default="clip,soft_target,false_negative,local")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    B, D = a.batch, a.dim
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)
    base = {
        "image_embed": unit(torch.randn(B, D, device=dev)),
        "text_embed": unit(torch.randn(B, D, device=dev)),
        "labels": torch.randint(-1, 2, (B, 14), device=dev).float(),
        "report_hash": torch.randint(0, B // 2, (B,), device=dev),
        "report_normal": (torch.rand(B, device=dev) < 0.3).float(),
        "image_tokens": torch.randn(B, 196, D, device=dev),
        "text_tokens": torch.randn(B, 64, D, device=dev),
        "word_mask": (torch.arange(64, device=dev)[None] < torch.randint(8, 65, (B, 1), device=dev)).float(),
    }
    fns = {"clip": clip, "soft_target": soft_target, "false_negative": false_negative, "local": local}
    for name in a.losses.split(","):
        if name not in fns:
            continue  # medvlp-only losses have no PyTorch counterpart here
        log_scale = torch.tensor(float(torch.log(torch.tensor(1 / 0.07))), device=dev, requires_grad=True)
        times, value = [], None
        spent, r = 0.0, 0
        while (r < a.reps + 1) if a.reps > 0 else (r < 6 or (spent < 2.0 and r < 201)):
            inp = {k: (v.clone().requires_grad_(True) if v.is_floating_point() and k.endswith(("embed", "tokens")) else v)
                   for k, v in base.items()}
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            total = fns[name](inp, log_scale.exp().clamp(max=100))
            total.backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:
                times.append(time.perf_counter() - t0)
                spent += times[-1]
            else:
                value = float(total)  # bench/loss-bench compares it with medvlp's
            r += 1
        times.sort()
        print(json.dumps({"loss": name, "batch": B, "dim": D, "device": a.device,
                          "median_ms": 1000 * times[len(times) // 2], "value": value}), flush=True)


if __name__ == "__main__":
    main()
