#!/usr/bin/env python3
"""Records reference outputs of the real Hugging Face / timm models once, for CI to check offline.

Usage: make_reference_fixtures.py OUT_DIR [--medvlp-file FILE.safetensors]

Debian has no transformers, timm or safetensors, so CI cannot run them; the GPU machine's PyTorch
install has all three. There this script builds small seeded models with the libraries' own classes
(transformers.BertModel, transformers.CLIPTextModel, timm's VisionTransformer), moves every weight
off its initial value, and writes per model OUT_DIR/<model>/weights.safetensors (saved by the
safetensors package under the library's own names) and io.safetensors (the inputs and the outputs
the library computes, float32 on the CPU), plus OUT_DIR/versions.json naming the versions that
made them. Each file stays well under 2 MiB, so they can be committed under tests/data/reference/.

--medvlp-file: a safetensors file medvlp wrote (e.g. `medvlp convert ... -o FILE`); it is copied to
OUT_DIR/medvlp_written/written.safetensors and what the safetensors package reads from it is
written next to it (read_back.safetensors, every tensor as safetensors returns it, and the header's
metadata in read_back.json), so that a test can check that Python reads medvlp's files as medvlp
does. torchvision's ResNet needs no fixture: Debian ships torchvision, and the parity tests run
it at test time (tests/python/model_parity.py).

Unlike the test-time fixture scripts, a missing package is an error here, never a skip: the
fixtures are only worth committing when the real libraries made them.
"""
import argparse
import json
import os
import platform
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

try:
    import safetensors
    import timm
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError as e:
    sys.exit(f"make_reference_fixtures: {e}; run this where transformers, timm and safetensors are installed "
             "(the GPU machine's PyTorch), not on Debian's python3")

from model_parity import perturb, token_batch  # noqa: E402

# Small enough that weights.safetensors stays ~0.3-0.6 MB, deep and wide enough that layer order,
# head splitting and the padding mask all matter.
BERT = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")
CLIP = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=32, layer_norm_eps=1e-5, eos_token_id=299, bos_token_id=298, pad_token_id=0,
            hidden_act="quick_gelu")
VIT = dict(img_size=48, patch_size=16, in_chans=1, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=0,
           global_pool="token", class_token=True)


def save(path, tensors, metadata):
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path,
              metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()})
    assert os.path.getsize(path) < 2 * 1024 * 1024, f"{path}: over 2 MiB, shrink the model"


def text_fixture(kind):
    if kind == "bert":
        config = transformers.BertConfig(**BERT)
        model = transformers.BertModel(config)
        ids, mask = token_batch(BERT["vocab_size"], 24)
    else:
        config = transformers.CLIPTextConfig(**CLIP)
        model = transformers.CLIPTextModel(config)
        ids, mask = token_batch(CLIP["vocab_size"], 20, eos=CLIP["eos_token_id"], bos=CLIP["bos_token_id"])
    model = perturb(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    io = {"ids": ids, "mask": mask, "last_hidden": out.last_hidden_state, "pooled": out.pooler_output}
    # Every layer's output, so that sum_last_layers-style features are checked too.
    for i, h in enumerate(out.hidden_states):
        io[f"hidden_{i}"] = h
    return state, io, {"class": type(model).__name__, "config": config.to_dict()}


def vit_fixture():
    model = perturb(timm.models.vision_transformer.VisionTransformer(**VIT))
    x = torch.randn(2, VIT["in_chans"], VIT["img_size"], VIT["img_size"])
    with torch.no_grad():
        tokens = model.forward_features(x)                     # [B, 1+N, D], after the final norm
        pooled = model.forward_head(tokens, pre_logits=True)   # the class token
    return model.state_dict(), {"input": x, "tokens": tokens, "pooled": pooled}, \
        {"class": "timm.models.vision_transformer.VisionTransformer", "config": VIT}


def medvlp_written(path, out):
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(path, os.path.join(out, "written.safetensors"))
    tensors = {}
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        for name in f.keys():
            tensors[name] = f.get_tensor(name)
    save_file(tensors, os.path.join(out, "read_back.safetensors"))
    with open(os.path.join(out, "read_back.json"), "w") as f:
        json.dump({"metadata": metadata,
                   "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()}},
                  f, indent=1, sort_keys=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--medvlp-file")
    args = parser.parse_args()
    torch.manual_seed(1234)
    torch.set_num_threads(1)  # the reference sums in one order
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__,
                "safetensors": safetensors.__version__, "python": platform.python_version(),
                "made_by": "tests/python/make_reference_fixtures.py"}
    for name, make in (("bert", lambda: text_fixture("bert")), ("clip_text", lambda: text_fixture("clip_text")),
                       ("vit_timm", vit_fixture)):
        state, io, about = make()
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        save(os.path.join(d, "weights.safetensors"), state, {"format": "pt", **versions})
        save(os.path.join(d, "io.safetensors"), io, {"format": "pt", "model": about, **versions})
        print(f"{name}: {about['class']}, {sum(v.numel() for v in state.values())} weights -> {d}")
    if args.medvlp_file:
        medvlp_written(args.medvlp_file, os.path.join(args.out, "medvlp_written"))
        print(f"medvlp_written: {args.medvlp_file} read back by safetensors {safetensors.__version__}")
    with open(os.path.join(args.out, "versions.json"), "w") as f:
        json.dump(versions, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
