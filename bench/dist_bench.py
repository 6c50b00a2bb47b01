#!/usr/bin/env python3
"""The PyTorch side of bench/dist-bench: bench/dist_bench.cpp's networks and step under
torch.nn.parallel.DistributedDataParallel (Gloo, 25 MB buckets), one process per rank started
by scripts/launch (torchrun's environment) or alone (no DDP). Rank 0 prints one JSON line."""
import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
import torchvision


class Bert(torch.nn.Module):
    """BERT's layout (post-norm, GELU) at the given width; the [CLS] state is the output."""

    def __init__(self, dim, layers, seq):
        super().__init__()
        self.word = torch.nn.Embedding(1000, dim)
        self.position = torch.nn.Embedding(seq, dim)
        self.token_type = torch.nn.Embedding(2, dim)
        self.norm = torch.nn.LayerNorm(dim, eps=1e-12)
        layer = torch.nn.TransformerEncoderLayer(dim, dim // 64, 4 * dim, 0.0, activation="gelu", layer_norm_eps=1e-12,
                                                 batch_first=True, norm_first=False)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids, mask):
        pos = torch.arange(ids.shape[1])
        x = self.norm(self.word(ids) + self.position(pos)[None] + self.token_type(torch.zeros_like(ids)))
        return self.encoder(x, src_key_padding_mask=mask == 0)[:, 0]


class Clip(torch.nn.Module):
    def __init__(self, dim, image, depth, seq):
        super().__init__()
        self.vit = torchvision.models.VisionTransformer(image_size=image, patch_size=8, num_layers=depth,
                                                       num_heads=dim // 64, hidden_dim=dim, mlp_dim=4 * dim)
        self.vit.conv_proj = torch.nn.Conv2d(1, dim, 8, 8)
        self.vit.heads = torch.nn.Identity()
        self.bert = Bert(dim, max(1, depth // 2), seq)
        self.image_proj = torch.nn.Linear(dim, 128)
        self.text_proj = torch.nn.Linear(dim, 128)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images, ids, mask):
        return (F.normalize(self.image_proj(self.vit(images)), dim=-1),
                F.normalize(self.text_proj(self.bert(ids, mask)), dim=-1), self.log_scale.exp().clamp(max=100))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--bucket-mb", type=float, default=25)
    a = ap.parse_args()
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = Clip(a.dim, a.image, a.depth, a.seq)
    count = sum(p.numel() for p in model.parameters())
    net = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=a.bucket_mb) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    torch.manual_seed(1 + rank)
    images = torch.randn(a.batch, 1, a.image, a.image)
    ids = torch.randint(0, 1000, (a.batch, a.seq))
    mask = torch.ones(a.batch, a.seq, dtype=torch.long)
    times = []
    for s in range(a.steps + 3):
        t0 = time.perf_counter()
        img, txt, scale = net(images, ids, mask)
        if world > 1:  # every rank's embeddings as negatives, with gradient (as medvlp's clip loss)
            img_all = torch.cat(dist_fn.all_gather(img))
            txt_all = torch.cat(dist_fn.all_gather(txt))
        else:
            img_all, txt_all = img, txt
        labels = torch.arange(a.batch) + rank * a.batch
        loss = (F.cross_entropy(scale * img @ txt_all.t(), labels) + F.cross_entropy(scale * txt @ img_all.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= 3:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    if rank == 0:
        print(json.dumps({"framework": "pytorch-ddp" if world > 1 else "pytorch", "world": world, "batch_per_rank": a.batch,
                          "parameters": count, "median_step_ms": times[len(times) // 2], "threads": torch.get_num_threads(),
                          "torch": torch.__version__}))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
