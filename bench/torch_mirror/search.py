"""Recipe search on a lent GPU: a PyTorch mirror of the `fast` recipe (exploration only).

The project trains with TensorFlow on the CPU, where one run of the recipe takes half an hour;
this mirror of training/ (same network, whitening, Nesterov SGD groups, triangle schedule,
lookahead EMA, augmentation and TTA) runs it in ~8 s on an H100, so variants can be compared
over several seeds. Findings are then written into training/config.py and confirmed by
`python -m bench.train` on the CPU: only those rows count as results (docs/BENCHMARKS.md).

Needs PyTorch with CUDA, which is not a project dependency (the device machine has it):

    python search.py cifar10-jpeg.tar.gz "$(cat sweeps/sweep1.json)" "[0,1]"

Each sweep file maps a name to overrides of the defaults in `run()`; the last argument lists
the seeds. Prints mean plain / TTA accuracy per variant, the per-seed values and the training
work. `match_work: k` sets the step count so that a variant (another depth or width, or
progressive resizing with `low_res`) does k times the training arithmetic of the default's 9.9
epochs. `holdout: 5000` trains on the other 45,000 training images and scores on those 5,000
instead of the test set (sweeps 1-23 scored on the test set).
"""

import io
import json
import math
import os
import sys
import tarfile
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

torch.backends.cudnn.benchmark = True
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: smoke tests only
# Label order of training/data.py; this file stands alone, as the GPU machine runs it without
# the project's dependencies.
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _decode(b):
    return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.uint8)


def load(path):
    cache = "/tmp/cifar.npz"
    if os.path.exists(cache):
        d = np.load(cache)
        return d["xtr"], d["ytr"], d["xte"], d["yte"]
    items = {"train": [], "test": []}
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.isfile() or not m.name.endswith(".jpg"):
                continue
            _, split, cls, name = m.name.split("/")
            items[split].append((cls, name, tar.extractfile(m).read()))
    out = []
    with Pool(16) as pool:
        for split in ("train", "test"):
            it = sorted(items[split])
            x = np.stack(pool.map(_decode, [b for _, _, b in it], chunksize=500))
            y = np.array([CLASSES.index(c) for c, _, _ in it], np.int64)
            out += [x, y]
    np.savez(cache, xtr=out[0], ytr=out[1], xte=out[2], yte=out[3])
    return out


# Structural knobs of sweeps 14-17; the defaults are the recipe's. `residual` adds each group's
# first activation to its last (airbench96's shortcut around the group's later convs);
# `ghost_bn` normalises each training batch in chunks of that many images (0: whole batch).
ARCH = dict(
    act="gelu", bn_mom=0.6, bn_scale=False, pool="max", whiten_patch=2, residual=False, ghost_bn=0
)
ACTS = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}


class BN(nn.BatchNorm2d):
    def __init__(self, c, arch):
        super().__init__(c, eps=1e-5, momentum=arch["bn_mom"])
        self.weight.requires_grad = arch["bn_scale"]  # the recipe: frozen scale = 1
        self.ghost = arch["ghost_bn"]

    def forward(self, x):
        if not (self.training and self.ghost and len(x) > self.ghost):
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in float32; the output keeps x's dtype,
        chunks = x.view(-1, self.ghost, *x.shape[1:])  # as the whole-batch path's does
        mean = chunks.mean((1, 3, 4), keepdim=True)
        var = chunks.var((1, 3, 4), unbiased=False, keepdim=True)
        y = ((chunks - mean) * torch.rsqrt(var + self.eps)).view_as(x)
        with torch.no_grad():  # running statistics of the whole batch, as without chunks
            m = self.momentum
            self.running_mean.lerp_(x.mean((0, 2, 3)).float(), m)
            self.running_var.lerp_(x.var((0, 2, 3)).float(), m)
        return (y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)).to(dtype)


class Block(nn.Module):
    def __init__(self, cin, cout, depth, arch):
        super().__init__()
        self.act = ACTS[arch["act"]]
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.b1 = BN(cout, arch)
        self.rest = nn.ModuleList(
            nn.Conv2d(cout, cout, 3, padding=1, bias=False) for _ in range(depth - 1)
        )
        self.bns = nn.ModuleList(BN(cout, arch) for _ in range(depth - 1))
        self.residual = arch["residual"]

    def forward(self, x):
        x = x0 = self.act(self.b1(F.max_pool2d(self.c1(x), 2)))
        for conv, bn in zip(self.rest, self.bns):
            x = self.act(bn(conv(x)))
        return (x0 + x) if self.residual and self.rest else x


class Net(nn.Module):
    def __init__(self, widths, mean, std, scale=1 / 9, glorot=False, depths=(2, 2, 2), arch=None):
        super().__init__()
        arch = {**ARCH, **(arch or {})}
        self.arch = arch
        k = arch["whiten_patch"]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.whiten = nn.Conv2d(3, 6 * k * k, k, padding=0, bias=True)
        w = [6 * k * k, *widths]
        self.blocks = nn.Sequential(*[Block(w[i], w[i + 1], depths[i], arch) for i in range(3)])
        self.head = nn.Linear(widths[-1] * (2 if arch["pool"] == "maxavg" else 1), 10, bias=False)
        self.scale = scale
        for m in self.modules():
            if glorot and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
            if isinstance(m, nn.Conv2d) and m is not self.whiten:
                k = m.weight.data
                n = min(k.shape[0], k.shape[1])
                torch.nn.init.dirac_(k[:n])

    def forward(self, x):  # x uint8 NHWC -> logits
        x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
        x = ACTS[self.arch["act"]](self.whiten(x))
        x = self.blocks(x)
        pooled = F.adaptive_max_pool2d(x, 1).flatten(1)
        if self.arch["pool"] == "maxavg":
            pooled = torch.cat([pooled, F.adaptive_avg_pool2d(x, 1).flatten(1)], 1)
        x = pooled
        return self.head(x) * self.scale


def forward_flops(net, res):
    """Multiply-adds x 2 of one image at res x res, counted from the conv and linear shapes."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += 2 * out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += 2 * m.in_features * m.out_features

    hs = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = net.training
    net.eval()  # leave the BN running statistics alone
    with torch.no_grad():
        net(torch.zeros(1, res, res, 3, dtype=torch.uint8, device=DEV))
    net.train(was_training)
    for h in hs:
        h.remove()
    return total


def init_whitening(net, x, eps=5e-4):
    xf = (x.permute(0, 3, 1, 2).float() - net.mean) / net.std
    k = net.arch["whiten_patch"]
    d = 3 * k * k
    p = xf.unfold(2, k, 1).unfold(3, k, 1)  # N,C,H',W',k,k
    p = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, d).double()
    cov = torch.cov(p.T)
    ev, evec = torch.linalg.eigh(cov)
    filt = (evec / torch.sqrt(ev + eps)).T.reshape(d, 3, k, k).float()
    net.whiten.weight.data[:] = torch.cat([filt, -filt])
    net.whiten.bias.data.zero_()


def augment(x, translate, flip, epoch, alt_flip, idx, cutout):
    b, h, w, _ = x.shape
    if flip:
        if alt_flip:  # airbench's derandomized flip: each image flips every other epoch
            base = (torch.randperm(50000, generator=torch.Generator().manual_seed(7)) % 2).to(
                x.device
            )
            coin = (base[idx] + epoch) % 2 == 1
        else:
            coin = torch.rand(b, device=x.device) < 0.5
        x = torch.where(coin[:, None, None, None], x.flip(2), x)
    if translate:
        p = translate
        xp = F.pad(x.permute(0, 3, 1, 2).float(), (p, p, p, p), mode="reflect")
        off = torch.randint(0, 2 * p + 1, (b, 2), device=x.device)
        rows = off[:, :1] + torch.arange(h, device=x.device)[None]
        cols = off[:, 1:] + torch.arange(w, device=x.device)[None]
        xp = xp[
            torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
        ]
        x = xp.to(torch.uint8)  # b,h,w,c
    if cutout:
        cy = torch.randint(0, h, (b, 1, 1), device=x.device)
        cx = torch.randint(0, w, (b, 1, 1), device=x.device)
        yy = torch.arange(h, device=x.device)[None, :, None]
        xx = torch.arange(w, device=x.device)[None, None, :]
        m = ((yy - cy).abs() <= cutout // 2) & ((xx - cx).abs() <= cutout // 2)
        x = torch.where(m[..., None], torch.zeros_like(x), x)
    return x


def zeropower(g, steps):
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = g.bfloat16()
    x = x / (x.norm() + 1e-7)
    t = x.size(0) > x.size(1)
    if t:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return (x.T if t else x).float()


def tta_logits(net, x, level):
    def plain(v):
        return net(v).float()

    def mirror(v):
        return 0.5 * (plain(v) + plain(v.flip(2)))

    if level == 0:
        return plain(x)
    if level == 1:
        return mirror(x)
    xp = F.pad(x.permute(0, 3, 1, 2).float(), (1, 1, 1, 1), mode="reflect").permute(0, 2, 3, 1)
    s = [xp[:, :32, :32].to(torch.uint8), xp[:, 2:34, 2:34].to(torch.uint8)]
    out = 0.5 * mirror(x) + 0.25 * (mirror(s[0]) + mirror(s[1]))
    if level == 3:
        s2 = [xp[:, :32, 2:34].to(torch.uint8), xp[:, 2:34, :32].to(torch.uint8)]
        out = 0.5 * out + 0.25 * (mirror(s2[0]) + mirror(s2[1]))
    return out


def recalibrate_bn(net, xtr, c, seed):
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
        m.ghost = 0  # whole-batch statistics are the point here
    g = torch.Generator(device="cpu").manual_seed(seed + 12345)
    idx = torch.randperm(len(xtr), generator=g)[: c["bn_recal"]].to(xtr.device)
    net.train()
    with torch.no_grad(), torch.autocast(DEV, dtype=torch.bfloat16, enabled=c["amp"]):
        for i in range(0, len(idx), c["bs"]):
            part = idx[i : i + c["bs"]]
            net(augment(xtr[part], c["translate"], c["flip"], 0, False, part, 0))


def run(cfg, data, seed):
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = data
    c = dict(
        epochs=10.0,
        bs=1024,
        lr=11.5,
        mom=0.85,
        wd=0.0153,
        bias_scale=64.0,
        ls=0.2,
        warm=0.23,
        start=0.2,
        end=0.07,
        wb_epochs=3.0,
        la_every=5,
        la_decay=0.95,  # lookahead: keep this much of the average per step (airbench: 0.95)
        widths=(64, 256, 256),
        translate=2,
        flip=True,
        alt_flip=False,
        cutout=0,  # zeroes a square of side 2 * (cutout // 2) + 1: 13 for 12 (the recipe's 13)
        muon_lr=0.0,
        muon_mom=0.6,
        muon_sched="triangle",  # "triangle": the SGD schedule; "decay": 1 -> 0 linearly, no warm-up
        muon_ns=5,  # Newton-Schulz iterations per orthogonalised step (airbench94_muon: 3)
        # airbench94_muon rescales each filter tensor to norm sqrt(out channels) before its step,
        # so the step size stays relative to the weights (BatchNorm makes their scale free)
        muon_norm=False,
        tta=2,
        scale=1 / 9,
        glorot=False,
        amp=True,
        depths=(2, 2, 2),
        match_work=0.0,  # set the step count for this multiple of the default's 9.9-epoch work
        low_res=0,  # progressive resizing: train the first low_frac of steps at this size
        low_frac=0.0,
        low_mode="crop",  # "crop": random low_res crops (object scale kept); "resize": downscale
        bn_recal=0,  # after training, recompute BN statistics over this many augmented images
        # Score on this many training images, held out (the same ones for every variant and
        # seed), instead of the test set: choosing variants on the test set flatters the figures.
        holdout=0,
    )
    c.update(cfg)
    if c["holdout"]:
        held = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(12345))
        held = held.to(ytr.device)
        xte, yte = xtr[held[: c["holdout"]]], ytr[held[: c["holdout"]]]
        xtr, ytr = xtr[held[c["holdout"] :]], ytr[held[c["holdout"] :]]
    if c["muon_sched"] not in ("triangle", "decay"):
        raise ValueError(f"muon_sched {c['muon_sched']!r}")
    ghost = {**ARCH, **(c.get("arch") or {})}["ghost_bn"]
    if ghost and c["bs"] % ghost:
        raise ValueError(f"ghost_bn {ghost} does not divide the batch {c['bs']}")
    torch.backends.cudnn.allow_tf32 = c["amp"]
    torch.backends.cuda.matmul.allow_tf32 = c["amp"]
    mean = (xtr.float().mean((0, 1, 2))).tolist()
    std = (xtr.float().std((0, 1, 2))).tolist()
    net = (
        Net(c["widths"], mean, std, c["scale"], c["glorot"], c["depths"], c.get("arch"))
        .to(DEV)
        .to(memory_format=torch.channels_last)
    )
    # A seeded random 5,000, as training.trainer draws them (with another generator, so other
    # images): the data here are sorted by class, and xtr[:5000] (sweeps 1-18) were airplanes.
    pick = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed + 7919))[:5000]
    init_whitening(net, xtr[pick.sort().values])
    n = len(ytr)
    spe = n // c["bs"]
    total = max(1, math.ceil(c["epochs"] * spe))
    f32 = forward_flops(net, 32)
    flo = forward_flops(net, c["low_res"]) if c["low_res"] else f32
    if c["match_work"]:
        base = Net((64, 256, 256), mean, std).to(DEV)
        budget = c["match_work"] * 9.9 * spe * forward_flops(base, 32)
        total = int(budget / (c["low_frac"] * flo + (1 - c["low_frac"]) * f32))
    low_steps = int(c["low_frac"] * total)
    work = 3 * c["bs"] * (low_steps * flo + (total - low_steps) * f32)
    ksc = c["bs"] * (1 + 1 / (1 - c["mom"]))
    base_lr = c["lr"] / ksc
    wd = c["wd"] * c["bs"] / ksc
    params = [p for p in net.parameters() if p.requires_grad]
    conv_w = [p for p in params if p.ndim == 4 and p is not net.whiten.weight]
    groups = []
    for p in params:
        if c["muon_lr"] and any(p is q for q in conv_w):
            continue
        mult = c["bias_scale"] if p.ndim == 1 else 1.0
        groups.append(
            dict(
                params=[p],
                lr=base_lr * mult,
                weight_decay=wd / (base_lr * mult),
                mult=mult,
                is_wb=p is net.whiten.bias,
            )
        )
    opt = torch.optim.SGD(groups, lr=base_lr, momentum=c["mom"], nesterov=True)
    muon_buf = [torch.zeros_like(p) for p in conv_w] if c["muon_lr"] else []
    ema = [p.detach().clone() for p in net.state_dict().values()]
    peak = max(1, int(c["warm"] * total))

    def sched(s):
        if s < peak:
            return c["start"] + (1 - c["start"]) * s / peak
        return 1 + (c["end"] - 1) * (s - peak) / max(1, total - peak)

    step = 0
    t0 = time.time()
    net.train()
    epoch = 0
    while step < total:
        g = torch.Generator(device="cpu").manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n, generator=g).to(DEV)
        for i in range(spe):
            if step >= total:
                break
            idx = perm[i * c["bs"] : (i + 1) * c["bs"]]
            xb = augment(
                xtr[idx], c["translate"], c["flip"], epoch, c["alt_flip"], idx, c["cutout"]
            )
            if step < low_steps:
                r = c["low_res"]
                if c["low_mode"] == "crop":
                    o = torch.randint(0, 33 - r, (2,)).tolist()
                    xb = xb[:, o[0] : o[0] + r, o[1] : o[1] + r]
                else:
                    xb = F.interpolate(
                        xb.permute(0, 3, 1, 2).float(), size=(r, r), mode="bilinear", antialias=True
                    )
                    xb = xb.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            s = sched(step)
            for gr in opt.param_groups:
                on = 1.0 if (not gr["is_wb"] or step / spe < c["wb_epochs"]) else 0.0
                gr["lr"] = base_lr * gr["mult"] * s * on
            with torch.autocast(DEV, dtype=torch.bfloat16, enabled=c["amp"]):
                out = net(xb)
            loss = F.cross_entropy(out.float(), ytr[idx], label_smoothing=c["ls"], reduction="sum")
            opt.zero_grad(set_to_none=True)
            for p in conv_w:
                p.grad = None
            loss.backward()
            opt.step()
            if c["muon_lr"]:
                with torch.no_grad():
                    for p, buf in zip(conv_w, muon_buf):
                        buf.mul_(c["muon_mom"]).add_(p.grad)
                        upd = p.grad + c["muon_mom"] * buf
                        m = upd.reshape(len(upd), -1)
                        o = zeropower(m, c["muon_ns"]).view_as(p)
                        if c["muon_norm"]:
                            p.mul_(len(p) ** 0.5 / p.norm())
                        sm = s if c["muon_sched"] == "triangle" else 1 - step / total
                        p.sub_(c["muon_lr"] * sm * o * max(1, m.size(0) / m.size(1)) ** 0.5)
            step += 1
            if c["la_every"] and step % c["la_every"] == 0:
                d = c["la_decay"] ** c["la_every"] * (step / total) ** 3
                with torch.no_grad():
                    for e, p in zip(ema, net.state_dict().values()):
                        if p.dtype.is_floating_point:
                            e.lerp_(p, 1 - d)
                            p.copy_(e)
        epoch += 1
    if c["la_every"]:
        with torch.no_grad():
            for e, p in zip(ema, net.state_dict().values()):
                if p.dtype.is_floating_point:
                    p.copy_(e)
    if c["bn_recal"]:  # exact statistics of the final (averaged) weights; forward work only
        recalibrate_bn(net, xtr, c, seed)
        work += c["bn_recal"] * f32
    if DEV == "cuda":
        torch.cuda.synchronize()
    train_s = time.time() - t0
    net.eval()
    res = {}
    with torch.no_grad(), torch.autocast(DEV, dtype=torch.bfloat16, enabled=c["amp"]):
        for lvl in sorted({0, c["tta"]}):
            lg = torch.cat(
                [tta_logits(net, xte[i : i + 2000], lvl) for i in range(0, len(xte), 2000)]
            )
            res[lvl] = (lg.argmax(1) == yte).float().mean().item() * 100
    return res, train_s, total, work


def main():
    data = [torch.from_numpy(a).to(DEV) for a in load(sys.argv[1])]
    configs = json.loads(sys.argv[2])
    seeds = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [0, 1]
    for name, cfg in configs.items():
        try:
            rows = [run(cfg, data, s) for s in seeds]
        except Exception as e:  # noqa: BLE001 - keep the rest of the sweep
            print(f"{name:28s} failed: {e!r}", flush=True)
            continue
        plain = np.mean([r[0][0] for r in rows])
        tta = np.mean([r[0][max(r[0])] for r in rows])
        print(
            f"{name:28s} plain {plain:6.2f} tta {tta:6.2f}  steps {rows[0][2]}  "
            f"PFLOP {rows[0][3] / 1e15:.3f}  "
            f"train_s {np.mean([r[1] for r in rows]):5.1f}  "
            f"each {[round(r[0][0], 2) for r in rows]} {[round(r[0][max(r[0])], 2) for r in rows]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
