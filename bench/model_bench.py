#!/usr/bin/env python3
"""The PyTorch side of bench/model-bench: the same networks as bench/model_bench.cpp.

ViT-B/16 is torchvision's vit_b_16 (classifier removed). BERT-base is Hugging Face's BertModel
where transformers is installed; elsewhere nn.TransformerEncoder in BERT-base's shape (post-norm,
GELU, 768 wide, 12 layers, 12 heads, 3072 MLP, dropout 0.1) under the same embeddings and pooler.
Prints one JSON line per model with the median forward+backward time.
"""
import argparse
import json
import time

import torch


def bert_base():
    try:
        import transformers
        return transformers.BertModel(transformers.BertConfig()), "transformers"
    except ImportError:
        pass

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.word = torch.nn.Embedding(30522, 768)
            self.position = torch.nn.Embedding(512, 768)
            self.token_type = torch.nn.Embedding(2, 768)
            self.norm = torch.nn.LayerNorm(768, eps=1e-12)
            self.drop = torch.nn.Dropout(0.1)
            layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, 0.1, activation="gelu", layer_norm_eps=1e-12,
                                                     batch_first=True, norm_first=False)
            self.encoder = torch.nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            self.pooler = torch.nn.Linear(768, 768)

        def forward(self, input_ids, attention_mask):
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.word(input_ids) + self.position(pos)[None] + self.token_type(torch.zeros_like(input_ids))
            x = self.encoder(self.drop(self.norm(x)), src_key_padding_mask=attention_mask == 0)
            return x

    return Bert(), "torch.nn.TransformerEncoder"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--models", default="vit_b16,bert_base")
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    for name in a.models.split(","):
        if name == "vit_b16":
            import torchvision
            model = torchvision.models.vit_b_16()
            model.heads = torch.nn.Identity()
            x = torch.randn(a.batch, 3, 224, 224, device=dev)
            impl = "torchvision " + torchvision.__version__
            step = lambda: model(x).float().pow(2).mean()  # noqa: E731
        elif name == "bert_base":
            model, impl = bert_base()
            ids = torch.randint(0, 30522, (a.batch, a.seq), device=dev)
            mask = torch.ones_like(ids)

            def step():
                out = model(input_ids=ids, attention_mask=mask)
                hidden = out if torch.is_tensor(out) else out.last_hidden_state
                return hidden[:, 0].float().pow(2).mean()
        else:
            raise SystemExit(f"unknown model {name}")
        model.to(dev).train()
        times = []
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            if a.dtype == "bf16":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = step()
            else:
                loss = step()
            loss.backward()
            model.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(json.dumps({"model": name, "batch": a.batch, "median_ms": times[len(times) // 2], "impl": impl,
                          "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
