#!/usr/bin/env python3
"""`medvlp convert` output loads into the Python originals: a ResNet-18 + BERT model is trained
for two steps, its encoders are exported, and torchvision's resnet18 (and Hugging Face's
BertModel where transformers is installed) load them with strict=True and hold the same values.

Usage: convert_check.py MEDVLP_BINARY SOURCE_DIR WORK_DIR. Without torchvision: skipped, or failed under CI=true.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import torch
    import torchvision
except ImportError:
    unavailable("python3 has no torch/torchvision (Debian: python3-torch python3-torchvision)")

from st_io import load  # noqa: E402


def main():
    binary, source, work = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    config = os.path.join(source, "configs", "cxr_resnet_bert.yaml")
    run = os.path.join(work, "run")
    sets = ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=2", "train.log_every=1",
            "data.train_size=64", "data.val_size=16", "data.test_size=16", "text.train_reports=300",
            "text.vocab_size=120"]
    subprocess.run([binary, "--log-level", "warn", "train", "-c", config, "-o", run] +
                   [a for s in sets for a in ("--set", s)], check=True)
    ckpt = os.path.join(run, "checkpoints", "step_2")
    state = load(os.path.join(ckpt, "model.safetensors"))
    resolved = os.path.join(run, "config.yaml")
    for part in ("image", "text"):
        subprocess.run([binary, "--log-level", "warn", "convert", "-c", resolved, "--checkpoint", ckpt, "--part", part,
                        "-o", os.path.join(work, part + ".safetensors")], check=True)

    image = load(os.path.join(work, "image.safetensors"))
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # the config's gray input
    net.fc = torch.nn.Identity()                              # no classifier in an encoder
    net.load_state_dict(image, strict=True)
    for name, value in net.state_dict().items():
        assert torch.equal(value, state["image." + name]), name
    print(f"torchvision resnet18 loaded {len(image)} tensors strictly")

    text = load(os.path.join(work, "text.safetensors"))
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.3.attention.self.query.weight",
                 "encoder.layer.0.output.LayerNorm.bias", "pooler.dense.weight"):
        assert name in text, name
    for name, value in text.items():
        assert torch.equal(value, state["text." + name]), name
    try:
        import transformers
    except ImportError:
        print("transformers is not installed: BERT names checked, BertModel load skipped")
        return
    cfg = transformers.BertConfig(vocab_size=text["embeddings.word_embeddings.weight"].shape[0], hidden_size=128,
                                  num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
                                  max_position_embeddings=64)
    bert = transformers.BertModel(cfg)
    missing, unexpected = bert.load_state_dict(text, strict=False)
    assert not unexpected and all(m.endswith("position_ids") for m in missing), (missing, unexpected)
    print(f"transformers BertModel loaded {len(text)} tensors")


if __name__ == "__main__":
    main()
