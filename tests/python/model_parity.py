#!/usr/bin/env python3
"""Fixtures for medvlp's parity tests: a Python model with seeded random weights, its weights
under the original library's names, inputs, and the outputs Python computes.

Usage: model_parity.py MODEL OUT_DIR, MODEL one of resnet50, vit_b16, bert, clip_text.
Writes OUT_DIR/weights.safetensors and OUT_DIR/io.safetensors (inputs and expected outputs).
resnet50 / vit_b16 come from torchvision. bert / clip_text come from Hugging Face transformers
(BertModel, CLIPTextModel) where it is installed; elsewhere from the functional reference below,
written from the equations of the original papers and HF's modeling code, with HF's names.
Without a needed package: skipped, or failed under CI=true.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import unavailable  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    unavailable("python3 has no torch (Debian: python3-torch)")

from st_io import save  # noqa: E402

BERT = dict(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
            max_position_embeddings=128, type_vocab_size=2, layer_norm_eps=1e-12)
CLIP = dict(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
            max_position_embeddings=77, layer_norm_eps=1e-5, eos_token_id=999, bos_token_id=998, pad_token_id=0)


def perturb(model):
    """Moves every parameter and BatchNorm statistic off its initial value (identity LayerNorms,
    zero biases and unit variances would hide naming and ordering mistakes)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    return model.eval()


def torchvision_model(name):
    try:
        import torchvision
    except ImportError:
        unavailable("python3 has no torchvision (Debian: python3-torchvision)")
    model = perturb(getattr(torchvision.models, name)())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    print(f"reference: torchvision {torchvision.__version__} {name}")
    return model.state_dict(), {"input": x, "logits": logits}


def token_batch(vocab, length, eos=None, bos=None):
    ids = torch.randint(1, vocab - 2, (3, length))
    mask = torch.ones(3, length, dtype=torch.int64)
    ends = [length, length - 5, 7]  # a full row and two padded ones
    for row, end in enumerate(ends):
        if bos is not None:
            ids[row, 0] = bos
        if eos is not None:
            ids[row, end - 1] = eos
        ids[row, end:] = 0
        mask[row, end:] = 0
    return ids, mask


def ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def lin(x, sd, prefix):
    return F.linear(x, sd[prefix + ".weight"], sd[prefix + ".bias"])


def attend(q, k, v, heads, allowed):
    B, L, C = q.shape
    split = lambda t: t.view(B, L, heads, C // heads).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(C // heads)
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(B, L, C)


def bert_reference(sd, ids, mask):
    c, L = BERT, ids.shape[1]
    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.position_embeddings.weight"][:L] + \
        sd["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, sd, "embeddings.LayerNorm", c["layer_norm_eps"])
    allowed = mask.bool()[:, None, None, :]
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        a = attend(lin(x, sd, p + "attention.self.query"), lin(x, sd, p + "attention.self.key"),
                   lin(x, sd, p + "attention.self.value"), c["num_attention_heads"], allowed)
        h = ln(x + lin(a, sd, p + "attention.output.dense"), sd, p + "attention.output.LayerNorm", c["layer_norm_eps"])
        f = lin(F.gelu(lin(h, sd, p + "intermediate.dense")), sd, p + "output.dense")
        x = ln(h + f, sd, p + "output.LayerNorm", c["layer_norm_eps"])
    return x, torch.tanh(lin(x[:, 0], sd, "pooler.dense"))


def clip_reference(sd, ids, mask):
    c, L = CLIP, ids.shape[1]
    x = sd["text_model.embeddings.token_embedding.weight"][ids] + \
        sd["text_model.embeddings.position_embedding.weight"][:L]
    allowed = torch.ones(L, L, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        h = ln(x, sd, p + "layer_norm1", c["layer_norm_eps"])
        x = x + lin(attend(lin(h, sd, p + "self_attn.q_proj"), lin(h, sd, p + "self_attn.k_proj"),
                           lin(h, sd, p + "self_attn.v_proj"), c["num_attention_heads"], allowed),
                    sd, p + "self_attn.out_proj")
        h = lin(ln(x, sd, p + "layer_norm2", c["layer_norm_eps"]), sd, p + "mlp.fc1")
        x = x + lin(h * torch.sigmoid(1.702 * h), sd, p + "mlp.fc2")
    x = ln(x, sd, "text_model.final_layer_norm", c["layer_norm_eps"])
    first_eos = (ids == c["eos_token_id"]).int().argmax(-1)
    return x, x[torch.arange(ids.shape[0]), first_eos]


def random_state(shapes):
    return {name: torch.randn(shape) * 0.05 + (1.0 if name.endswith("LayerNorm.weight") or
                                                name.endswith("norm1.weight") or name.endswith("norm2.weight") or
                                                name.endswith("layer_norm.weight") else 0.0)
            for name, shape in shapes.items()}


def bert_shapes():
    c, H, I = BERT, BERT["hidden_size"], BERT["intermediate_size"]
    s = {"embeddings.word_embeddings.weight": (c["vocab_size"], H),
         "embeddings.position_embeddings.weight": (c["max_position_embeddings"], H),
         "embeddings.token_type_embeddings.weight": (c["type_vocab_size"], H),
         "embeddings.LayerNorm.weight": (H,), "embeddings.LayerNorm.bias": (H,),
         "pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            s[p + n + ".weight"], s[p + n + ".bias"] = (H, H), (H,)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[p + n + ".weight"], s[p + n + ".bias"] = (H,), (H,)
        s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = (I, H), (I,)
        s[p + "output.dense.weight"], s[p + "output.dense.bias"] = (H, I), (H,)
    return s


def clip_shapes():
    c, H, I = CLIP, CLIP["hidden_size"], CLIP["intermediate_size"]
    s = {"text_model.embeddings.token_embedding.weight": (c["vocab_size"], H),
         "text_model.embeddings.position_embedding.weight": (c["max_position_embeddings"], H),
         "text_model.final_layer_norm.weight": (H,), "text_model.final_layer_norm.bias": (H,)}
    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}."
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
            s[p + n + ".weight"], s[p + n + ".bias"] = (H, H), (H,)
        for n in ("layer_norm1", "layer_norm2"):
            s[p + n + ".weight"], s[p + n + ".bias"] = (H,), (H,)
        s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"] = (I, H), (I,)
        s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"] = (H, I), (H,)
    return s


def text_model(kind):
    ids, mask = token_batch(1000, 24) if kind == "bert" else token_batch(1000, 20, eos=999, bos=998)
    try:
        import transformers
        if kind == "bert":
            model = perturb(transformers.BertModel(transformers.BertConfig(**BERT)))
        else:
            model = perturb(transformers.CLIPTextModel(transformers.CLIPTextConfig(**CLIP)))
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask)
        print(f"reference: transformers {transformers.__version__} {type(model).__name__}")
        state = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        return state, {"ids": ids, "mask": mask, "last_hidden": out.last_hidden_state, "pooled": out.pooler_output}
    except ImportError:
        pass
    state = random_state(bert_shapes() if kind == "bert" else clip_shapes())
    last, pooled = (bert_reference if kind == "bert" else clip_reference)(state, ids, mask)
    print(f"reference: functional {kind} in tests/python/model_parity.py (transformers is not installed)")
    return state, {"ids": ids, "mask": mask, "last_hidden": last, "pooled": pooled}


def main():
    model, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    if model in ("resnet50", "vit_b16"):
        state, io = torchvision_model({"resnet50": "resnet50", "vit_b16": "vit_b_16"}[model])
    elif model in ("bert", "clip_text"):
        state, io = text_model(model)
    else:
        sys.exit(f"unknown model {model}")
    save(os.path.join(out, "weights.safetensors"), state)
    save(os.path.join(out, "io.safetensors"), io)


if __name__ == "__main__":
    main()
