#!/usr/bin/env python3
"""Reference conversion of a faster-whisper (CTranslate2) Whisper checkpoint to whisper.cpp ggml.

An independent implementation used to check Mosaic's Rust converter (src/models/ct2.rs): plain
Python (no numpy), following whisper.cpp's models/convert-pt-to-ggml.py conventions, with the mel
filters taken from OpenAI's own `whisper/assets/mel_filters.npz` (shipped in the openai-whisper
wheel) instead of being computed.

usage: ct2_to_ggml_reference.py MODEL_DIR_OR_BIN_PARTS... --tokenizer tokenizer.json \
           --whisper-package openai_whisper-*.tar.gz --out ggml.bin
"""

import argparse
import ast
import io
import json
import struct
import sys
import tarfile
import zipfile


def read_ct2(data):
    pos = 0

    def take(n):
        nonlocal pos
        out = data[pos:pos + n]
        if len(out) != n:
            raise SystemExit("truncated model.bin")
        pos += n
        return out

    def u(fmt):
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def s():
        n = u("H")
        return take(n)[:-1].decode()

    version = u("I")
    assert 3 <= version <= 6, version
    spec = s()
    assert spec == "WhisperSpec", spec
    u("I")
    variables = {}
    for _ in range(u("I")):
        name = s()
        rank = u("B")
        shape = [u("I") for _ in range(rank)]
        dtype = u("B")
        nbytes = u("I")
        variables[name] = (shape, dtype, take(nbytes))
    return variables


# CTranslate2 dtype ids: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
def floats(var):
    shape, dtype, raw = var
    if dtype == 0:
        return list(struct.unpack("<%df" % (len(raw) // 4), raw))
    if dtype == 4:
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    raise SystemExit("unsupported dtype %d" % dtype)


def scalar(var):
    shape, dtype, raw = var
    return struct.unpack({1: "<b", 2: "<h", 3: "<i"}[dtype], raw)[0]


def rows(var, start, end):
    shape, dtype, raw = var
    row = 1
    for d in shape[1:]:
        row *= d
    size = {0: 4, 4: 2}[dtype]
    return ([end - start] + shape[1:], dtype, raw[start * row * size:end * row * size])


def load_npz_array(package, key):
    """The mel filters from the openai-whisper sdist (.tar.gz) or wheel."""
    if package.endswith(".whl"):
        with zipfile.ZipFile(package) as whl:
            npz = whl.read("whisper/assets/mel_filters.npz")
    else:
        with tarfile.open(package) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/mel_filters.npz"))
            npz = tar.extractfile(member).read()
    with zipfile.ZipFile(io.BytesIO(npz)) as z:
        npy = z.read(key + ".npy")
    assert npy[:6] == b"\x93NUMPY"
    major = npy[6]
    if major == 1:
        hlen = struct.unpack("<H", npy[8:10])[0]
        off = 10
    else:
        hlen = struct.unpack("<I", npy[8:12])[0]
        off = 12
    header = ast.literal_eval(npy[off:off + hlen].decode("latin1"))
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    shape = header["shape"]
    body = npy[off + hlen:]
    values = struct.unpack("<%df" % (shape[0] * shape[1]), body[:4 * shape[0] * shape[1]])
    return shape, values


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="+", help="model.bin, or its parts in order")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--whisper-package", required=True, help="openai-whisper sdist or wheel")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    data = b"".join(open(p, "rb").read() for p in args.model)
    v = read_ct2(data)
    n_audio_layer = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_text_layer = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    enc_pos = v["encoder/position_encodings/encodings"]
    dec_pos = v["decoder/position_encodings/encodings"]
    emb = v["decoder/embeddings/weight"]
    n_mels = v["encoder/conv1/weight"][0][1]
    hparams = [emb[0][0], enc_pos[0][0], enc_pos[0][1], scalar(v["encoder/num_heads"]), n_audio_layer,
               dec_pos[0][0], dec_pos[0][1], scalar(v["decoder/num_heads"]), n_text_layer, n_mels, 1]

    tok = json.load(open(args.tokenizer, encoding="utf-8"))
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    for t in tok.get("added_tokens", []):
        by_id[t["id"]] = t["content"]
    dec = byte_decoder()
    tokens = []
    for i in range(50257):
        t = by_id[i]
        tokens.append(t.encode() if t.startswith("<|") else bytes(dec[c] for c in t))

    shape, filters = load_npz_array(args.whisper_package, "mel_%d" % n_mels)

    out = open(args.out, "wb")
    out.write(struct.pack("<i", 0x67676D6C))
    out.write(struct.pack("<11i", *hparams))
    out.write(struct.pack("<ii", shape[0], shape[1]))
    out.write(struct.pack("<%df" % len(filters), *filters))
    out.write(struct.pack("<i", len(tokens)))
    for t in tokens:
        out.write(struct.pack("<i", len(t)))
        out.write(t)

    def write(name, var, f16=True, conv_bias=False):
        shape = list(var[0])
        if conv_bias:
            shape = shape + [1]
        values = floats(var)
        if len(shape) < 2 or conv_bias or not f16:
            ftype, body = 0, struct.pack("<%df" % len(values), *values)
        else:
            ftype, body = 1, (var[2] if var[1] == 4 else struct.pack("<%de" % len(values), *values))
        out.write(struct.pack("<iii", len(shape), len(name.encode()), ftype))
        for d in reversed(shape):
            out.write(struct.pack("<i", d))
        out.write(name.encode())
        out.write(body)

    def linear(src, dst):
        write(dst + ".weight", v[src + "/weight"])
        write(dst + ".bias", v[src + "/bias"])

    def norm(src, dst):
        write(dst + ".weight", v[src + "/gamma"])
        write(dst + ".bias", v[src + "/beta"])

    def self_attn(src, dst, d):
        norm(src + "/self_attention/layer_norm", dst + ".attn_ln")
        w, b = v[src + "/self_attention/linear_0/weight"], v[src + "/self_attention/linear_0/bias"]
        write(dst + ".attn.query.weight", rows(w, 0, d))
        write(dst + ".attn.query.bias", rows(b, 0, d))
        write(dst + ".attn.key.weight", rows(w, d, 2 * d))
        write(dst + ".attn.value.weight", rows(w, 2 * d, 3 * d))
        write(dst + ".attn.value.bias", rows(b, 2 * d, 3 * d))
        linear(src + "/self_attention/linear_1", dst + ".attn.out")

    def ffn(src, dst):
        norm(src + "/ffn/layer_norm", dst + ".mlp_ln")
        linear(src + "/ffn/linear_0", dst + ".mlp.0")
        linear(src + "/ffn/linear_1", dst + ".mlp.2")

    write("encoder.positional_embedding", enc_pos, f16=False)
    for i in (1, 2):
        write("encoder.conv%d.weight" % i, v["encoder/conv%d/weight" % i])
        write("encoder.conv%d.bias" % i, v["encoder/conv%d/bias" % i], conv_bias=True)
    d = enc_pos[0][1]
    for i in range(n_audio_layer):
        self_attn("encoder/layer_%d" % i, "encoder.blocks.%d" % i, d)
        ffn("encoder/layer_%d" % i, "encoder.blocks.%d" % i)
    norm("encoder/layer_norm", "encoder.ln_post")
    write("decoder.positional_embedding", dec_pos, f16=False)
    write("decoder.token_embedding.weight", emb)
    d = dec_pos[0][1]
    for i in range(n_text_layer):
        src, dst = "decoder/layer_%d" % i, "decoder.blocks.%d" % i
        self_attn(src, dst, d)
        norm(src + "/attention/layer_norm", dst + ".cross_attn_ln")
        linear(src + "/attention/linear_0", dst + ".cross_attn.query")
        kv_w, kv_b = v[src + "/attention/linear_1/weight"], v[src + "/attention/linear_1/bias"]
        write(dst + ".cross_attn.key.weight", rows(kv_w, 0, d))
        write(dst + ".cross_attn.value.weight", rows(kv_w, d, 2 * d))
        write(dst + ".cross_attn.value.bias", rows(kv_b, d, 2 * d))
        linear(src + "/attention/linear_2", dst + ".cross_attn.out")
        ffn(src, dst)
    norm("decoder/layer_norm", "decoder.ln")
    out.close()
    print("wrote", args.out, "hparams", hparams, file=sys.stderr)


if __name__ == "__main__":
    main()
