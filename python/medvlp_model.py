"""Opens a model written by `medvlp export RUN -o DIR` in Python, with PyTorch alone.

    import medvlp_model
    model = medvlp_model.load("DIR")
    images = model.preprocess(pixels)            # numpy / torch arrays [H,W] or [H,W,C], raw pixel values
    scores = model.zero_shot(images)              # {finding: tensor [B]}, as `medvlp eval` scores
    image_embed = model.encode_images(images)     # [B,D], L2-normalized
    text_embed = model.encode_texts(["no pleural effusion."])

Supported (the rest raise NotImplementedError naming what is missing):
- image encoders: medvlp's `small_cnn`; ResNet-18/34/50/101 (2D), built as torchvision's ResNet
  (needs torchvision) from the export's torchvision-named weights; ViT-S/B/L/16 (2D, timm's names)
  in plain PyTorch;
- text encoders: medvlp's `small_transformer`; BERT (`bert`, Hugging Face names, pooling cls, mean,
  pooler or attention) in plain PyTorch;
- tokenizers: SentencePiece (needs the `sentencepiece` module) and WordPiece from a vocab.txt
  (BERT's basic tokenization in plain Python).
`medvlp_model.read_png(path)` reads an image file with OpenCV or Pillow, whichever is installed.
"""
import json
import math
import os
import struct
import unicodedata

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["load", "MedvlpModel", "load_safetensors", "read_png"]

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def load_safetensors(path):
    """A safetensors file as {name: tensor}; safetensors.torch when installed, else read here."""
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def read_png(path):
    """An image file's pixels as a numpy array ([H,W] or [H,W,C], its own dtype)."""
    try:
        import cv2
        pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ValueError(f"{path}: not an image OpenCV reads")
        if pixels.ndim == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        return pixels
    except ImportError:
        import numpy as np
        from PIL import Image
        return np.array(Image.open(path))


def _load_strict(module, tensors, what, ignore=()):
    result = module.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not any(k.startswith(p) for p in ignore)]
    if missing or unexpected:
        raise ValueError(f"{what}: weights missing {missing[:5]}, unexpected {unexpected[:5]}")


# ---------------------------------------------------------------------------------------------
# Image encoders: [B,C,H,W] -> pooled features [B,C'].

class SmallCnn(nn.Module):
    """medvlp's small_cnn: a conv-BN-ReLU stem, then strided residual stages, mean-pooled."""

    def __init__(self, tensors):
        super().__init__()
        stem = tensors["stem.0.weight"]

        def conv_bn(cin, cout, stride, relu):
            layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
            return nn.Sequential(*(layers + [nn.ReLU(inplace=True)] if relu else layers))

        self.stem = conv_bn(stem.shape[1], stem.shape[0], 1, True)
        self.depth = 0
        cin = stem.shape[0]
        while f"stage{self.depth}.0.weight" in tensors:
            cout = tensors[f"stage{self.depth}.0.weight"].shape[0]
            body = conv_bn(cin, cout, 2, True)
            body.extend(conv_bn(cout, cout, 1, False))
            self.add_module(f"stage{self.depth}", body)
            self.add_module(f"shortcut{self.depth}",
                            nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout)))
            cin = cout
            self.depth += 1
        _load_strict(self, tensors, "small_cnn")

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.depth):
            x = torch.relu(getattr(self, f"stage{i}")(x) + getattr(self, f"shortcut{i}")(x))
        return x.mean((2, 3))


class TorchvisionResNet(nn.Module):
    """torchvision's ResNet with medvlp's stem (input channels, stride) and no classifier."""

    def __init__(self, depth, tensors, options):
        super().__init__()
        try:
            import torchvision
        except ImportError:
            raise NotImplementedError("a ResNet export needs torchvision")
        net = getattr(torchvision.models, f"resnet{depth}")()
        stride = tuple(options.get("stem_stride", [2, 2]))
        net.conv1 = nn.Conv2d(tensors["conv1.weight"].shape[1], 64, 7, stride=stride, padding=3, bias=False)
        net.fc = nn.Identity()
        _load_strict(net, tensors, f"resnet{depth}", ignore=("fc.",))
        self.net = net

    def forward(self, x):
        return self.net(x)


class Vit(nn.Module):
    """ViT (2D) under timm's parameter names: class token, learned positions (resampled bicubically
    for another input size), pre-LayerNorm blocks; pooled from the class token or the patch mean."""

    _HEADS = {"vit_s16": 6, "vit_b16": 12, "vit_l16": 16}

    def __init__(self, name, tensors, options):
        super().__init__()
        proj = tensors["patch_embed.proj.weight"]
        dim = proj.shape[0]
        self.heads = int(options.get("heads", self._HEADS[name]))
        self.pooling = options.get("pooling", "token")
        eps = 1e-6
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(proj.shape[1], dim, tuple(proj.shape[2:]), stride=tuple(proj.shape[2:]))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros_like(tensors["pos_embed"]))
        patch = tuple(proj.shape[2:])
        size = options.get("image_size", [224, 224])
        self.base_grid = [size[0] // patch[0], size[1] // patch[1]]
        blocks = []
        while f"blocks.{len(blocks)}.attn.qkv.weight" in tensors:
            i = len(blocks)
            hidden = tensors[f"blocks.{i}.mlp.fc1.weight"].shape[0]
            b = nn.Module()
            b.norm1 = nn.LayerNorm(dim, eps=eps)
            b.attn = nn.Module()
            b.attn.qkv = nn.Linear(dim, 3 * dim, bias=f"blocks.{i}.attn.qkv.bias" in tensors)
            b.attn.proj = nn.Linear(dim, dim)
            b.norm2 = nn.LayerNorm(dim, eps=eps)
            b.mlp = nn.Module()
            b.mlp.fc1 = nn.Linear(dim, hidden)
            b.mlp.fc2 = nn.Linear(hidden, dim)
            blocks.append(b)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=eps)
        _load_strict(self, tensors, name, ignore=("head.",))

    def forward(self, x):
        x = self.patch_embed.proj(x)
        grid = list(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        B, _, C = x.shape
        x = torch.cat([self.cls_token.expand(B, 1, C), x], 1)
        pos = self.pos_embed
        if grid != self.base_grid:
            cells = pos[:, 1:].reshape(1, *self.base_grid, C).permute(0, 3, 1, 2)
            cells = F.interpolate(cells, size=grid, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
            pos = torch.cat([pos[:, :1], cells], 1)
        x = x + pos
        keep = torch.ones(B, x.shape[1], dtype=torch.bool)
        for b in self.blocks:
            N = x.shape[1]
            qkv = b.attn.qkv(b.norm1(x)).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
            x = x + b.attn.proj(_attention(qkv[0], qkv[1], qkv[2], keep).transpose(1, 2).reshape(B, N, C))
            x = x + b.mlp.fc2(F.gelu(b.mlp.fc1(b.norm2(x))))
        x = self.norm(x)
        return x[:, 1:].mean(1) if self.pooling == "avg" else x[:, 0]


# ---------------------------------------------------------------------------------------------
# Text encoders: ids [B,L], mask [B,L] -> pooled features [B,C].

def _attention(q, k, v, keep):
    """Softmax attention over the keys `keep` [B,L] marks real."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return torch.softmax(scores, -1) @ v


def _masked_mean(tokens, mask):
    w = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)


class SmallTransformer(nn.Module):
    """medvlp's small_transformer: pre-LayerNorm blocks, learned positions, mean or first pooling."""

    def __init__(self, tensors, options):
        super().__init__()
        vocab, dim = tensors["token_embed.weight"].shape
        self.heads = int(options.get("heads", 4))
        self.pooling = options.get("pooling", "mean")
        self.token_embed = nn.Embedding(vocab, dim)
        self.position_embed = nn.Parameter(tensors["position_embed"].clone())
        self.layers = 0
        while f"block{self.layers}.qkv.weight" in tensors:
            ff = tensors[f"block{self.layers}.fc1.weight"].shape[0]
            self.add_module(f"block{self.layers}", nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "out": nn.Linear(dim, dim),
                "norm2": nn.LayerNorm(dim), "fc1": nn.Linear(dim, ff), "fc2": nn.Linear(ff, dim)}))
            self.layers += 1
        self.final_norm = nn.LayerNorm(dim)
        _load_strict(self, tensors, "small_transformer")

    def forward(self, ids, mask):
        B, L = ids.shape
        keep = mask.bool()
        x = self.token_embed(ids) + self.position_embed[:L].unsqueeze(0)
        for i in range(self.layers):
            b = getattr(self, f"block{i}")
            C = x.shape[-1]
            qkv = b["qkv"](b["norm1"](x)).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
            attended = _attention(qkv[0], qkv[1], qkv[2], keep)
            h = x + b["out"](attended.transpose(1, 2).reshape(B, L, C))
            x = h + b["fc2"](F.gelu(b["fc1"](b["norm2"](h))))
        x = self.final_norm(x)
        return x[:, 0] if self.pooling == "first" else _masked_mean(x, mask)


class Bert(nn.Module):
    """BERT (post-LayerNorm) under Hugging Face's parameter names, pooled as medvlp pools it."""

    def __init__(self, tensors, options):
        super().__init__()
        self.heads = int(options.get("heads", 12))
        self.pooling = options.get("pooling", "cls")
        self.sum_last = int(options.get("sum_last_layers", 1))
        eps = float(options.get("eps", 1e-12))
        vocab, hidden = tensors["embeddings.word_embeddings.weight"].shape
        self.max_len = int(options.get("max_len", min(512, tensors["embeddings.position_embeddings.weight"].shape[0])))
        emb = nn.Module()
        emb.word_embeddings = nn.Embedding(vocab, hidden)
        emb.position_embeddings = nn.Embedding(tensors["embeddings.position_embeddings.weight"].shape[0], hidden)
        emb.token_type_embeddings = nn.Embedding(tensors["embeddings.token_type_embeddings.weight"].shape[0], hidden)
        emb.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.embeddings = emb
        layers = []
        while f"encoder.layer.{len(layers)}.attention.self.query.weight" in tensors:
            inter = tensors[f"encoder.layer.{len(layers)}.intermediate.dense.weight"].shape[0]
            layer = nn.Module()
            layer.attention = nn.Module()
            layer.attention.self = nn.ModuleDict({n: nn.Linear(hidden, hidden) for n in ("query", "key", "value")})
            layer.attention.output = nn.ModuleDict({"dense": nn.Linear(hidden, hidden),
                                                    "LayerNorm": nn.LayerNorm(hidden, eps=eps)})
            layer.intermediate = nn.ModuleDict({"dense": nn.Linear(hidden, inter)})
            layer.output = nn.ModuleDict({"dense": nn.Linear(inter, hidden), "LayerNorm": nn.LayerNorm(hidden, eps=eps)})
            layers.append(layer)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(layers)
        if "pooler.dense.weight" in tensors:
            self.pooler = nn.ModuleDict({"dense": nn.Linear(hidden, hidden)})
        if self.pooling == "attention":
            self.pool = nn.Module()
            self.pool.query = nn.Parameter(torch.zeros(hidden))
        _load_strict(self, tensors, "bert")

    def forward(self, ids, mask):
        ids, mask = ids[:, :self.max_len], mask[:, :self.max_len]
        B, L = ids.shape
        positions = torch.arange(L, device=ids.device).unsqueeze(0)
        e = self.embeddings
        x = e.LayerNorm(e.word_embeddings(ids) + e.token_type_embeddings(torch.zeros_like(ids)) +
                        e.position_embeddings(positions))
        keep = mask.bool()
        states = [x]
        for layer in self.encoder.layer:
            a = layer.attention
            C = x.shape[-1]
            split = [a.self[n](x).view(B, L, self.heads, C // self.heads).transpose(1, 2) for n in ("query", "key", "value")]
            context = _attention(*split, keep).transpose(1, 2).reshape(B, L, C)
            h = a.output["LayerNorm"](x + a.output["dense"](context))
            x = layer.output["LayerNorm"](h + layer.output["dense"](F.gelu(layer.intermediate["dense"](h))))
            states.append(x)
        tokens = states[-1]
        for i in range(2, self.sum_last + 1):
            tokens = tokens + states[-i]
        if self.pooling == "pooler":
            return torch.tanh(self.pooler["dense"](states[-1][:, 0]))
        if self.pooling == "mean":
            return _masked_mean(tokens, mask)
        if self.pooling == "attention":
            # A learned query's softmax weights over the real tokens.
            scores = (tokens @ self.pool.query) / math.sqrt(tokens.shape[-1])
            scores = scores.masked_fill(~mask.bool(), float("-inf"))
            return (scores.softmax(1).unsqueeze(-1) * tokens).sum(1)
        return tokens[:, 0]


# ---------------------------------------------------------------------------------------------
# Tokenizers: text -> ids between the begin and end tokens.

def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    """BERT's tokenization: cleaning, CJK spacing, lower-casing and accent stripping, punctuation
    splitting, then greedy longest-match WordPiece over vocab.txt."""

    def __init__(self, vocab_path, lowercase=True):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.lowercase = lowercase
        self.unk = self.vocab.get("[UNK]")

    def _words(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if _is_cjk(cp):
                out.append(f" {ch} ")
            elif ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                out.append(" ")
            else:
                out.append(ch)
        words = []
        for token in "".join(out).split():
            if self.lowercase:
                token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
            current = ""
            for ch in token:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def encode(self, text):
        ids = []
        for word in self._words(text):
            if len(word) > 100:
                ids.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:
                    pieces = [self.unk]
                    break
                pieces.append(self.vocab[piece])
                start = end
            ids.extend(pieces)
        return ids


class SentencePiece:
    def __init__(self, path, special):
        try:
            import sentencepiece
        except ImportError:
            raise NotImplementedError("a SentencePiece tokenizer needs the sentencepiece module (Debian: python3-sentencepiece)")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=path)
        self.special = set(special)

    def encode(self, text):
        return [i for i in self.sp.encode(text) if i not in self.special]


# ---------------------------------------------------------------------------------------------

def _projection(tensors, prefix, kind, cin, cout):
    if kind == "mlp":
        head = nn.Sequential(nn.Linear(cin, cin), nn.GELU(), nn.Linear(cin, cout))
    else:
        head = nn.Sequential(nn.Linear(cin, cout, bias=False))
    head.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return head


class MedvlpModel(nn.Module):
    """The exported model: encoders, projection heads, tokenizer, preprocessing and prompts."""

    def __init__(self, directory):
        super().__init__()
        with open(os.path.join(directory, "export.json")) as f:
            d = json.load(f)
        if d.get("format") != "medvlp-export" or d.get("version") != 1:
            raise ValueError(f"{directory}/export.json: not a version-1 medvlp export")
        self.description = d
        image, text, tok = d["image"], d["text"], d["tokenizer"]

        weights = load_safetensors(os.path.join(directory, image["file"]))
        name = image["name"]
        if name == "small_cnn":
            self.image_encoder = SmallCnn(weights)
        elif name in ("resnet18", "resnet34", "resnet50", "resnet101"):
            self.image_encoder = TorchvisionResNet(int(name[6:]), weights, image["options"])
        elif name in ("vit_s16", "vit_b16", "vit_l16"):
            self.image_encoder = Vit(name, weights, image["options"])
        else:
            raise NotImplementedError(f"image encoder {name} is not supported by medvlp_model.py yet")

        weights = load_safetensors(os.path.join(directory, text["file"]))
        name = text["name"]
        if name == "small_transformer":
            self.text_encoder = SmallTransformer(weights, text["options"])
        elif name == "bert":
            self.text_encoder = Bert(weights, text["options"])
        else:
            raise NotImplementedError(f"text encoder {name} is not supported by medvlp_model.py yet")

        heads = load_safetensors(os.path.join(directory, d["heads"]["file"]))
        kind, dim = d["heads"]["projection"], d["heads"]["embed_dim"]

        def width(prefix):
            first = heads[prefix + "0.weight"]
            return first.shape[1]
        self.image_proj = _projection(heads, "image_proj.", kind, width("image_proj."), dim)
        self.text_proj = _projection(heads, "text_proj.", kind, width("text_proj."), dim)
        self.logit_scale = d.get("logit_scale")

        self.begin_id, self.end_id, self.pad_id = tok["begin_id"], tok["end_id"], tok["pad_id"]
        self.max_len = tok["max_len"]
        if tok["kind"] == "sentencepiece":
            self.tokenizer = SentencePiece(os.path.join(directory, tok["model"]), (self.pad_id, self.begin_id, self.end_id))
        elif tok["kind"] == "wordpiece":
            self.tokenizer = WordPiece(os.path.join(directory, tok["model"]), tok.get("lowercase", True))
        else:
            raise NotImplementedError(f"tokenizer {tok['kind']} is not supported by medvlp_model.py yet")

        inp = image["input"]
        self.input_shape = inp["shape"]
        self.mean, self.std = inp["mean"], inp["std"]
        self.prompts = d.get("prompts", {})
        self.eval()

    def preprocess(self, pixels):
        """Raw pixels ([H,W] or [H,W,C]; a list of them, or [B,...]) -> the encoder's input
        [B,C,H,W]: scaled to [0,1] by the dtype's range, channels matched, resized (bilinear),
        then (x - mean) / std."""
        if isinstance(pixels, (list, tuple)):
            return torch.cat([self.preprocess(p) for p in pixels])
        t = torch.as_tensor(pixels)
        scale = {torch.uint8: 255.0, torch.int16: 65535.0, torch.int32: 65535.0}.get(t.dtype, 1.0)
        if t.dtype == torch.int32 and t.max() > 65535:
            raise ValueError("preprocess: 32-bit pixels; give 8- or 16-bit images or floats in [0,1]")
        x = t.to(torch.float32) / scale
        if x.dim() == 2:
            x = x.unsqueeze(0)
        else:
            x = x.permute(2, 0, 1)
        channels = self.input_shape[0]
        if x.shape[0] != channels:
            x = x.expand(channels, -1, -1) if x.shape[0] == 1 else x.mean(0, keepdim=True)
        size = list(self.input_shape[1:])
        if list(x.shape[1:]) != size:
            x = F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]
        return ((x - self.mean) / self.std).unsqueeze(0)

    def tokenize(self, texts):
        ids = torch.full((len(texts), self.max_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), self.max_len), dtype=torch.long)
        for b, text in enumerate(texts):
            body = self.tokenizer.encode(text)[: self.max_len - 2]
            row = [self.begin_id] + body + [self.end_id]
            ids[b, : len(row)] = torch.tensor(row)
            mask[b, : len(row)] = 1
        return ids, mask

    @torch.no_grad()
    def encode_images(self, images):
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts):
        ids, mask = self.tokenize(texts)
        return F.normalize(self.text_proj(self.text_encoder(ids, mask)), dim=-1)

    @torch.no_grad()
    def zero_shot(self, images, prompts=None):
        """{finding: scores [B]}: cos(image, mean positive prompt) - cos(image, mean negative
        prompt), the prompts of the export (the run's eval.prompts) unless given."""
        embed = self.encode_images(images)
        out = {}
        for finding, p in (prompts or self.prompts).items():
            score = embed @ F.normalize(self.encode_texts(p["positive"]).mean(0), dim=0)
            if p.get("negative"):
                score = score - embed @ F.normalize(self.encode_texts(p["negative"]).mean(0), dim=0)
            out[finding] = score
        return out


def load(directory):
    """The model `medvlp export` wrote into `directory`, in evaluation mode."""
    return MedvlpModel(directory)
