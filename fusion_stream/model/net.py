"""The fusion network: LiDAR, radar, camera and audio branches into one bird's-eye-view grid,
and a CenterPoint-style head decoded with a fixed top-K inside the graph.

Only standard ops (conv, matmul, ScatterND, GridSample, Gather, TopK, MaxPool), static shapes, no
NMS: the graph exports to ONNX and parses in TensorRT without plugins."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fusion_stream.model.config import ModelConfig
from fusion_stream.model.preprocess import LIDAR_FEATURES, RADAR_FEATURES

HEAD_CHANNELS = {"offset": 2, "z": 1, "size": 3, "yaw": 2, "velocity": 2, "siren": 1}
"""Regression maps of the head besides the per-class heatmap, in this order."""
IMAGE_STRIDE = 4
"""The camera branch's feature map (and its image heatmap) is the model image at this stride."""


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    """Twice the resolution (a stride-2 transposed convolution: TensorRT's native deconvolution)."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _heatmap_head(cin: int, classes: int) -> nn.Sequential:
    """Per-class centre logits; the bias is CenterNet's prior, so every cell starts at ~0.1."""
    head = nn.Sequential(_conv(cin, cin), nn.Conv2d(cin, classes, 1))
    last = head[-1]
    assert isinstance(last, nn.Conv2d) and last.bias is not None
    last.bias.data.fill_(-2.2)
    return head


def _cell_centres(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """x and y (rig frame, m) of every head-grid cell's centre, each hx × hy."""
    hx, hy = cfg.head_grid
    xs = cfg.x_range[0] + (torch.arange(hx) + 0.5) * cfg.head_cell
    ys = cfg.y_range[0] + (torch.arange(hy) + 0.5) * cfg.head_cell
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    return gx, gy


class PillarEncoder(nn.Module):
    """PointPillars feature net: a shared per-point layer, max over the pillar's points, then a
    scatter of the pillar features into the BEV canvas (the dummy cell ``nx·ny`` is dropped)."""

    def __init__(self, features: int, channels: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.linear = nn.Linear(features, channels, bias=False)
        self.norm = nn.BatchNorm1d(channels)
        self.grid = grid
        self.channels = channels

    def forward(self, pillars: Tensor, index: Tensor) -> Tensor:
        b, p, n, f = pillars.shape
        x = self.linear(pillars.reshape(b * p * n, f))
        x = F.relu(self.norm(x)).reshape(b, p, n, self.channels)
        x = (x * pillars[..., -1:]).amax(dim=2)  # padded points (valid = 0) never win the max
        nx, ny = self.grid
        cells = nx * ny + 1
        offsets = torch.arange(b, device=index.device).unsqueeze(1) * cells
        flat = (index + offsets).reshape(-1)
        canvas = x.new_zeros(b * cells, self.channels)
        canvas = canvas.index_put((flat,), x.reshape(b * p, self.channels))
        canvas = canvas.reshape(b, cells, self.channels)[:, : nx * ny]
        return canvas.permute(0, 2, 1).reshape(b, self.channels, nx, ny)


class CameraLift(nn.Module):
    """A small CNN over the image with an image-space detection head, both sampled at the
    projections of BEV cells at a few heights.

    The head is trained on the ground-truth centres projected into the image (see
    ``targets.image_heatmap``), so the camera learns to say "a pedestrian lies along this ray"
    by itself; lifting its class scores with the features hands that to the BEV backbone, which
    takes the depth from the LiDAR. Without that supervision the branch learned almost nothing."""

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        c = channels
        self.stride4 = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, c))
        self.stride8 = nn.Sequential(_conv(c, c, 2), _conv(c, c))
        self.stride16 = nn.Sequential(_conv(c, 2 * c, 2), _conv(2 * c, 2 * c))
        self.up16 = _up(2 * c, c)
        self.up8 = _up(c, c)
        self.smooth = _conv(c, c)
        self.image_head = _heatmap_head(c, len(cfg.classes))
        self.image_size = cfg.image_size
        hx, hy = cfg.head_grid
        gx, gy = _cell_centres(cfg)
        pts = [torch.stack([gx, gy, torch.full_like(gx, z), torch.ones_like(gx)], -1) for z in cfg.lift_heights]
        self.register_buffer(
            "points", torch.stack(pts).reshape(-1, 4).T.contiguous(), persistent=False
        )  # 4 × (Z·hx·hy)
        self.heights = len(cfg.lift_heights)
        self.head_grid = (hx, hy)
        self.reduce = _conv((c + len(cfg.classes)) * self.heights, c, k=1)

    def forward(self, image: Tensor, cam_proj: Tensor) -> tuple[Tensor, Tensor]:
        """BEV features [B, C, hx, hy] and the image heatmap logits [B, classes, h/4, w/4]."""
        b = image.shape[0]
        f4 = self.stride4((image - 0.45) / 0.25)
        f8 = self.stride8(f4)
        f8 = f8 + self.up16(self.stride16(f8))
        feats = self.smooth(f4 + self.up8(f8))
        heat_logits: Tensor = self.image_head(feats)
        feats = torch.cat([feats, torch.sigmoid(heat_logits)], 1)
        points: Tensor = self.points  # type: ignore[assignment]
        uvw = cam_proj @ points  # b × 3 × (Z·hx·hy)
        depth = uvw[:, 2]
        safe = torch.where(depth > 0.5, depth, torch.ones_like(depth))
        h, w = self.image_size
        gx = uvw[:, 0] / safe / w * 2 - 1
        gy = uvw[:, 1] / safe / h * 2 - 1
        visible = (depth > 0.5) & (gx > -1) & (gx < 1) & (gy > -1) & (gy < 1)
        hx, hy = self.head_grid
        grid = torch.stack([gx, gy], -1).reshape(b, self.heights * hx, hy, 2)
        sampled = F.grid_sample(feats, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled * visible.reshape(b, 1, self.heights * hx, hy).to(sampled.dtype)
        c = sampled.shape[1]
        lifted = sampled.reshape(b, c, self.heights, hx, hy).reshape(b, c * self.heights, hx, hy)
        out: Tensor = self.reduce(lifted)
        return out, heat_logits


class AudioPrior(nn.Module):
    """Siren probability from the audio features, and a BEV prior channel: the SRP-PHAT response
    in each cell's direction from the array, weighted by that probability."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.bins = cfg.azimuth_bins
        self.mlp = nn.Sequential(nn.Linear(cfg.audio_features, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        hx, hy = cfg.head_grid
        gx, gy = _cell_centres(cfg)
        az = torch.remainder(torch.atan2(gy, gx), 2 * torch.pi)
        index = torch.round(az / (2 * torch.pi / self.bins)).long() % self.bins
        self.register_buffer("cell_bin", index.reshape(-1), persistent=False)
        self.head_grid = (hx, hy)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        logit = self.mlp(audio)  # b × 1
        prob = torch.sigmoid(logit)
        srp = audio[:, : self.bins]
        hx, hy = self.head_grid
        cell_bin: Tensor = self.cell_bin  # type: ignore[assignment]
        prior = srp[:, cell_bin].reshape(-1, 1, hx, hy)
        bev = torch.cat([prior * prob[:, :, None, None], prior], 1)
        return bev, logit[:, 0]


class FusionNet(nn.Module):
    """All four branches, the fused backbone and the head; :meth:`forward` returns raw maps
    (for training), :meth:`detect` the decoded top-K (what gets exported)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        w = cfg.width
        self.lidar = PillarEncoder(LIDAR_FEATURES, 32, cfg.grid)
        self.radar = PillarEncoder(RADAR_FEATURES, 16, cfg.grid)
        self.camera = CameraLift(cfg, 32)
        self.audio = AudioPrior(cfg)
        self.points_down = _conv(48, w, cfg.head_stride)
        fused_in = w + 32 + 2 + 4
        self.fuse = _conv(fused_in, w, k=1)
        self.block1 = nn.Sequential(_conv(w, w), _conv(w, w), _conv(w, w))
        self.block2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w), _conv(2 * w, 2 * w))
        self.up2 = _up(2 * w, w)
        self.neck = _conv(2 * w, w)
        self.heatmap = _heatmap_head(w, len(cfg.classes))
        self.regress = nn.Sequential(_conv(w, w), nn.Conv2d(w, sum(HEAD_CHANNELS.values()), 1))

    def forward(
        self,
        lidar_pillars: Tensor,
        lidar_index: Tensor,
        radar_pillars: Tensor,
        radar_index: Tensor,
        image: Tensor,
        cam_proj: Tensor,
        audio: Tensor,
        present: Tensor,
    ) -> dict[str, Tensor]:
        flag = present[:, :, None, None]
        points = torch.cat(
            [
                self.lidar(lidar_pillars, lidar_index) * flag[:, 0:1],
                self.radar(radar_pillars, radar_index) * flag[:, 2:3],
            ],
            1,
        )
        bev = self.points_down(points)
        cam, image_heatmap = self.camera(image, cam_proj)
        cam = cam * flag[:, 1:2]
        prior, siren_logit = self.audio(audio)
        prior = prior * flag[:, 3:4]
        flags = flag.expand(-1, -1, bev.shape[2], bev.shape[3])
        x = self.fuse(torch.cat([bev, cam, prior, flags], 1))
        x1 = self.block1(x)
        x2 = self.up2(self.block2(x1))
        x = self.neck(torch.cat([x1, x2], 1))
        return {
            "heatmap": self.heatmap(x),
            "regress": self.regress(x),
            "audio_siren": siren_logit - 20.0 * (1 - present[:, 3]),
            "image_heatmap": image_heatmap,
        }

    def detect(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Decoded detections: boxes [B,K,9] (x y z l w h yaw vx vy, rig frame), scores [B,K],
        labels [B,K] (int32 class index), siren [B,K] (probability), audio_siren [B]."""
        out = self.forward(*inputs)
        return decode(out["heatmap"], out["regress"], out["audio_siren"], self.cfg)


def decode(
    heatmap: Tensor, regress: Tensor, audio_siren: Tensor, cfg: ModelConfig
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Peaks of the heatmap (a 3×3 max-pool keeps local maxima: CenterPoint's NMS-free decode),
    the top K over all classes, and the regressions gathered at those cells."""
    b, ncls, hx, hy = heatmap.shape
    heat = torch.sigmoid(heatmap)
    k = cfg.peak_window
    if cfg.class_agnostic_peaks:
        # one object per peak whatever its class: a car-or-truck cell yields one box, not two
        best, best_label = heat.max(dim=1)
        peaks = best * (F.max_pool2d(best[:, None], k, 1, k // 2)[:, 0] == best).to(heat.dtype)
        scores, cell = torch.topk(peaks.reshape(b, hx * hy), cfg.top_k, dim=1)
        labels = torch.gather(best_label.reshape(b, hx * hy), 1, cell)
    else:
        peaks = heat * (F.max_pool2d(heat, k, 1, k // 2) == heat).to(heat.dtype)
        scores, top = torch.topk(peaks.reshape(b, ncls * hx * hy), cfg.top_k, dim=1)
        # integer division through float32 (exact below 2**24): the int64 floor-division export
        # would bring in Xor, which TensorRT's parser lacks
        labels = torch.floor(top.to(torch.float32) / (hx * hy)).to(top.dtype)
        cell = top - labels * (hx * hy)
    ix = torch.floor(cell.to(torch.float32) / hy).to(cell.dtype)
    iy = cell - ix * hy
    reg = regress.reshape(b, regress.shape[1], hx * hy)
    picked = torch.gather(reg, 2, cell.unsqueeze(1).expand(-1, reg.shape[1], -1))  # b × R × K
    picked = picked.permute(0, 2, 1)
    size = cfg.head_cell
    x = cfg.x_range[0] + (ix.to(heat.dtype) + picked[..., 0]) * size
    y = cfg.y_range[0] + (iy.to(heat.dtype) + picked[..., 1]) * size
    z = picked[..., 2]
    lwh = torch.exp(picked[..., 3:6].clamp(max=4.0))
    yaw = torch.atan2(picked[..., 6], picked[..., 7])
    vel = picked[..., 8:10]
    siren = torch.sigmoid(picked[..., 10])
    boxes = torch.cat([x[..., None], y[..., None], z[..., None], lwh, yaw[..., None], vel], -1)
    return boxes, scores, labels.to(torch.int32), siren, torch.sigmoid(audio_siren)
