#!/usr/bin/env python3
"""Independent reference for specdec's vision tower (Tests/VisionTests fixtures).

Writes tiny random llama.cpp-style `mmproj` towers with llama.cpp's own `gguf` package (`mlp`
with a class token, pre-LN, legacy-swapped FFN names and quick GELU; `mlp` with two feature
layers concatenated and post-LN; `idefics3` with post-LN, tanh GELU and a patch grid that needs
padding before the pixel shuffle), a small non-square test PNG, and golden outputs computed here in float64 numpy: the
preprocessed tower input, the image embeddings, and bilinear/bicubic resizes of the test image.

The forward is written from llama.cpp's clip.cpp semantics (build_vit, clip_graph_llava,
build_patch_merge_permute, img_tool::resize), reading the towers back through gguf.GGUFReader
and dequantizing with gguf.quants, not from specdec's Swift code.

    pip install numpy gguf
    python3 tools/vision_reference.py --out Tests/VisionTests/Fixtures
"""
import argparse, json, os, struct, zlib
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize


# ---------------------------------------------------------------- test image

def write_png(path, rgb):
    """8-bit RGB PNG (rgb: H×W×3 uint8)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)


def make_image(rng, w=45, h=30):
    y, x = np.mgrid[0:h, 0:w]
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- preprocessing (float32, as llama.cpp's formulas)

f32 = np.float32


def resize_bilinear(src, tw, th):
    """clip.cpp img_tool::resize_bilinear without the 8-bit rounding; src: H×W×3 float."""
    nh, nw, _ = src.shape
    out = np.zeros((th, tw, 3), np.float64)
    xr = f32(nw - 1) / f32(tw)
    yr = f32(nh - 1) / f32(th)
    for y in range(th):
        py = f32(yr * f32(y)); y0 = int(py); y1 = min(y0 + 1, nh - 1); fy = f32(py - f32(y0))
        for x in range(tw):
            px = f32(xr * f32(x)); x0 = int(px); x1 = min(x0 + 1, nw - 1); fx = f32(px - f32(x0))
            for c in range(3):
                a, b = src[y0, x0, c], src[y0, x1, c]
                top = a + (b - a) * float(fx)
                a, b = src[y1, x0, c], src[y1, x1, c]
                bot = a + (b - a) * float(fx)
                out[y, x, c] = top + (bot - top) * float(fy)
    return out


def resize_bicubic(src, tw, th):
    """clip.cpp img_tool::resize_bicubic (ViT.cpp's) without rounding, clamped to [0, 1]."""
    ny, nx, _ = src.shape
    tx = f32(nx) / f32(tw); ty = f32(ny) / f32(th)
    def cl(v, hi): return max(0, min(v, hi))
    def cubic(p0, p1, p2, p3, d):
        d0, d2, d3 = p0 - p1, p2 - p1, p3 - p1
        a1 = -1.0 / 3 * d0 + d2 - 1.0 / 6 * d3
        a2 = 0.5 * d0 + 0.5 * d2
        a3 = -1.0 / 6 * d0 - 0.5 * d2 + 1.0 / 6 * d3
        return p1 + a1 * d + a2 * d * d + a3 * d * d * d
    out = np.zeros((th, tw, 3))
    for i in range(th):
        y = int(f32(ty * f32(i))); dy = float(f32(ty * f32(i)) - f32(y))
        for j in range(tw):
            x = int(f32(tx * f32(j))); dx = float(f32(tx * f32(j)) - f32(x))
            for k in range(3):
                col = []
                for jj in range(4):
                    row = cl(y - 1 + jj, ny - 1)
                    col.append(cubic(*(src[row, cl(x + o, nx - 1), k] for o in (-1, 0, 1, 2)), dx))
                out[i, j, k] = min(max(cubic(*col, dy), 0.0), 1.0)
    return out


def resize_pad(src, tw, th, pad):
    """img_tool::resize with add_padding: fit inside, keep aspect, centre on `pad`."""
    nh, nw, _ = src.shape
    if (nw, nh) == (tw, th):
        return src.copy()
    scale = min(f32(tw) / f32(nw), f32(th) / f32(nh))
    w2 = max(1, min(int(np.ceil(f32(f32(nw) * scale))), tw))
    h2 = max(1, min(int(np.ceil(f32(f32(nh) * scale))), th))
    inner = resize_bilinear(src, w2, h2)
    out = np.zeros((th, tw, 3)); out[:, :] = pad
    ox, oy = (tw - w2) // 2, (th - h2) // 2
    out[oy:oy + h2, ox:ox + w2] = inner
    return out


LLAVA_PAD = np.array([122, 116, 104]) / 255.0


def preprocess(img01, hp):
    s = hp["image_size"]
    if hp["projector"] == "mlp":
        x = resize_pad(img01, s, s, LLAVA_PAD)
    else:
        x = img01.copy() if img01.shape[:2] == (s, s) else resize_bilinear(img01, s, s)
    x = (x - np.array(hp["mean"])) / np.array(hp["std"])
    return np.transpose(x, (2, 0, 1)).copy()  # C, H, W


# ---------------------------------------------------------------- tower forward (float64)

def load(path):
    r = gguf.GGUFReader(path)
    w = {}
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float64)
        w[t.name] = x.reshape([int(s) for s in reversed(t.shape)])
    kv = {k: r.fields[k].contents() for k in r.fields if not k.startswith("GGUF.")}
    return w, kv


def layer_norm(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(v + eps) * g
    return y + b if b is not None else y


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def gelu_quick(x):
    return x / (1 + np.exp(-1.702 * x))


def forward(path, planar):
    w, kv = load(path)
    proj = kv.get("clip.projector_type", "mlp")
    d = int(kv["clip.vision.embedding_length"]); nh = int(kv["clip.vision.attention.head_count"])
    ps = int(kv["clip.vision.patch_size"]); S = int(kv["clip.vision.image_size"])
    nl = int(kv["clip.vision.block_count"]); eps = float(kv["clip.vision.attention.layer_norm_epsilon"])
    act = gelu if kv.get("clip.use_gelu", False) else gelu_quick
    side = S // ps
    # patch embedding = conv2d stride ps: weight (d, 3, ps, ps)
    pw = w["v.patch_embd.weight"]
    patches = planar.reshape(3, side, ps, side, ps).transpose(1, 3, 0, 2, 4).reshape(side * side, 3 * ps * ps)
    x = patches @ pw.reshape(d, -1).T
    if "v.patch_embd.bias" in w:
        x = x + w["v.patch_embd.bias"]
    has_cls = proj == "mlp" and "v.class_embd" in w
    if has_cls:
        x = np.concatenate([w["v.class_embd"][None, :], x], 0)
    if "v.position_embd.weight" in w:
        x = x + w["v.position_embd.weight"]
    if "v.pre_ln.weight" in w:
        x = layer_norm(x, w["v.pre_ln.weight"], w.get("v.pre_ln.bias"), eps)
    feats = sorted(set(int(v) for v in kv.get("clip.vision.feature_layer", []))) if proj == "mlp" else []
    n_run = (max(feats) if feats else nl - 1) if proj == "mlp" else nl
    hd = d // nh
    stack = []
    for l in range(n_run):
        if l in feats:
            stack.append(x)
        p = f"v.blk.{l}."
        up, down = p + "ffn_up", p + "ffn_down"
        if w[down + ".weight"].shape[1] == d:  # ggml ne[0] == n_embd: legacy swapped names
            up, down = down, up
        h = layer_norm(x, w[p + "ln1.weight"], w.get(p + "ln1.bias"), eps)
        q = h @ w[p + "attn_q.weight"].T + w.get(p + "attn_q.bias", 0)
        k = h @ w[p + "attn_k.weight"].T + w.get(p + "attn_k.bias", 0)
        v = h @ w[p + "attn_v.weight"].T + w.get(p + "attn_v.bias", 0)
        o = np.zeros_like(q)
        for hh in range(nh):
            sl = slice(hh * hd, (hh + 1) * hd)
            a = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            a = np.exp(a - a.max(-1, keepdims=True)); a /= a.sum(-1, keepdims=True)
            o[:, sl] = a @ v[:, sl]
        x = x + o @ w[p + "attn_out.weight"].T + w.get(p + "attn_out.bias", 0)
        h = layer_norm(x, w[p + "ln2.weight"], w.get(p + "ln2.bias"), eps)
        u = act(h @ w[up + ".weight"].T + w.get(up + ".bias", 0))
        x = x + u @ w[down + ".weight"].T + w.get(down + ".bias", 0)
    if "v.post_ln.weight" in w:
        x = layer_norm(x, w["v.post_ln.weight"], w.get("v.post_ln.bias"), eps)
    if proj == "mlp":
        if feats:  # llama.cpp clip_graph_llava: hidden states of the feature layers, concatenated
            if n_run in feats:
                stack.append(x)
            x = np.concatenate(stack, axis=1)
        if has_cls:
            x = x[1:]
        hdn = gelu(x @ w["mm.0.weight"].T + w.get("mm.0.bias", 0))
        return hdn @ w["mm.2.weight"].T + w.get("mm.2.bias", 0)
    # idefics3: zero-pad the grid to the factor, then HF Idefics3 pixel_shuffle, then fc
    f = int(kv["clip.vision.projector.scale_factor"])
    g = -(-side // f) * f
    grid = np.zeros((g, g, d)); grid[:side, :side] = x.reshape(side, side, d)
    y = grid.reshape(g, g // f, d * f).transpose(1, 0, 2).reshape(g // f, g // f, d * f * f).transpose(1, 0, 2)
    y = y.reshape(-1, d * f * f)
    return y @ w["mm.model.fc.weight"].T + w.get("mm.model.fc.bias", 0)


# ---------------------------------------------------------------- random towers

def write_tower(path, rng, hp, types):
    """hp: hyper-parameters; types: tensor name -> 'f32' | 'f16' | 'q8_0' (default f32)."""
    wr = gguf.GGUFWriter(path, "clip")
    wr.add_bool("clip.has_vision_encoder", True)
    wr.add_string("clip.projector_type", hp["projector"])
    wr.add_bool("clip.use_gelu", hp["use_gelu"])
    wr.add_uint32("clip.vision.image_size", hp["image_size"])
    wr.add_uint32("clip.vision.patch_size", hp["patch"])
    wr.add_uint32("clip.vision.embedding_length", hp["d"])
    wr.add_uint32("clip.vision.feed_forward_length", hp["ff"])
    wr.add_uint32("clip.vision.block_count", hp["blocks"])
    wr.add_uint32("clip.vision.attention.head_count", hp["heads"])
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", hp["eps"])
    wr.add_array("clip.vision.image_mean", hp["mean"])
    wr.add_array("clip.vision.image_std", hp["std"])
    if hp["projector"] == "idefics3":
        wr.add_uint32("clip.vision.projector.scale_factor", hp["scale"])
    if "feature_layers" in hp:
        wr.add_array("clip.vision.feature_layer", hp["feature_layers"])

    def add(name, arr):
        t = types.get(name, "f32")
        if t == "q8_0":
            wr.add_tensor(name, quantize(arr.astype(np.float32), Q.Q8_0), raw_dtype=Q.Q8_0)
        elif t == "f16":
            wr.add_tensor(name, arr.astype(np.float16))
        else:
            wr.add_tensor(name, arr.astype(np.float32))

    d, ff, ps = hp["d"], hp["ff"], hp["patch"]
    n_pos = (hp["image_size"] // ps) ** 2 + (1 if hp.get("cls") else 0)
    rnd = lambda *s, scale=1.0: rng.normal(0, scale, s)
    add("v.patch_embd.weight", rnd(d, 3, ps, ps, scale=1 / np.sqrt(3 * ps * ps)))
    add("v.patch_embd.bias", rnd(d, scale=0.1))
    if hp.get("cls"):
        add("v.class_embd", rnd(d, scale=0.5))
    add("v.position_embd.weight", rnd(n_pos, d, scale=0.3))
    if hp.get("pre_ln"):
        add("v.pre_ln.weight", 1 + rnd(d, scale=0.1)); add("v.pre_ln.bias", rnd(d, scale=0.1))
    for l in range(hp["blocks"]):
        p = f"v.blk.{l}."
        add(p + "ln1.weight", 1 + rnd(d, scale=0.1)); add(p + "ln1.bias", rnd(d, scale=0.1))
        for m in ("attn_q", "attn_k", "attn_v", "attn_out"):
            add(p + m + ".weight", rnd(d, d, scale=1 / np.sqrt(d)))
            add(p + m + ".bias", rnd(d, scale=0.1))
        add(p + "ln2.weight", 1 + rnd(d, scale=0.1)); add(p + "ln2.bias", rnd(d, scale=0.1))
        up_w, up_b = rnd(ff, d, scale=1 / np.sqrt(d)), rnd(ff, scale=0.1)
        dn_w, dn_b = rnd(d, ff, scale=1 / np.sqrt(ff)), rnd(d, scale=0.1)
        if hp.get("legacy_ffn_names"):  # old llava conversions: the up matrix is called ffn_down
            add(p + "ffn_down.weight", up_w); add(p + "ffn_down.bias", up_b)
            add(p + "ffn_up.weight", dn_w); add(p + "ffn_up.bias", dn_b)
        else:
            add(p + "ffn_up.weight", up_w); add(p + "ffn_up.bias", up_b)
            add(p + "ffn_down.weight", dn_w); add(p + "ffn_down.bias", dn_b)
    if hp.get("post_ln"):
        add("v.post_ln.weight", 1 + rnd(d, scale=0.1)); add("v.post_ln.bias", rnd(d, scale=0.1))
    if hp["projector"] == "mlp":
        fw = d * len(hp.get("feature_layers", [0]))
        add("mm.0.weight", rnd(hp["hidden"], fw, scale=1 / np.sqrt(fw))); add("mm.0.bias", rnd(hp["hidden"], scale=0.1))
        add("mm.2.weight", rnd(hp["out"], hp["hidden"], scale=1 / np.sqrt(hp["hidden"]))); add("mm.2.bias", rnd(hp["out"], scale=0.1))
    else:
        k = d * hp["scale"] ** 2
        add("mm.model.fc.weight", rnd(hp["out"], k, scale=1 / np.sqrt(k)))
    wr.write_header_to_file(); wr.write_kv_data_to_file(); wr.write_tensors_to_file(); wr.close()


TOWERS = {
    "tiny-mlp": dict(projector="mlp", image_size=32, patch=8, d=32, ff=48, blocks=3, heads=4, eps=1e-5,
                     mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                     use_gelu=False, cls=True, pre_ln=True, post_ln=False, legacy_ffn_names=True, hidden=40, out=24),
    "tiny-mlp-layers": dict(projector="mlp", image_size=24, patch=6, d=16, ff=40, blocks=3, heads=2, eps=1e-5,
                            mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], use_gelu=True, post_ln=True,
                            feature_layers=[3, 1], hidden=20, out=12),
    "tiny-idefics3": dict(projector="idefics3", image_size=40, patch=8, d=32, ff=64, blocks=2, heads=2, eps=1e-6,
                          mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], use_gelu=True, post_ln=True, scale=2, out=24),
}
TYPES = {
    "tiny-mlp-layers": {"v.blk.2.ffn_up.weight": "f16"},
    "tiny-mlp": {"v.patch_embd.weight": "f16", "v.blk.0.attn_q.weight": "q8_0", "v.blk.1.attn_v.weight": "q8_0",
                 "v.blk.0.ffn_down.weight": "f16", "mm.0.weight": "f16"},
    "tiny-idefics3": {"v.patch_embd.weight": "f16", "v.blk.1.attn_k.weight": "q8_0", "mm.model.fc.weight": "f16",
                      "v.position_embd.weight": "f16"},
}


def r8(a):
    """Golden floats with 8 significant digits (far below the tests' tolerances)."""
    return [float(f"{v:.8g}") for v in np.ravel(a)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(20251125)
    img8 = make_image(rng)
    write_png(os.path.join(a.out, "vision-test.png"), img8)
    img = img8.astype(np.float64) / 255.0
    golden = {"image": "vision-test.png", "image_size": [img8.shape[1], img8.shape[0]],
              "bilinear_50x37": r8(resize_bilinear(img, 50, 37)),
              "bicubic_20x13": r8(resize_bicubic(img, 20, 13)),
              "towers": {}}
    for name, hp in TOWERS.items():
        path = os.path.join(a.out, name + ".gguf")
        write_tower(path, rng, hp, TYPES[name])
        planar = preprocess(img, hp)
        emb = forward(path, planar)
        golden["towers"][name] = {"file": name + ".gguf", "input": r8(planar),
                                  "rows": emb.shape[0], "width": emb.shape[1], "embeddings": r8(emb)}
        print(name, "->", emb.shape, "max |e|", float(np.abs(emb).max()))
    with open(os.path.join(a.out, "vision-golden.json"), "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main()
