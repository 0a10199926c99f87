"""HRNet for heatmap landmark detection, key-compatible with the public ISBI HRNet-W32.

Architecture: Sun et al., "Deep High-Resolution Representation Learning for Human Pose
Estimation", CVPR 2019 (pose-HRNet). Written here from the paper and from the tensor list of
the public checkpoint ``cwlachap/hrnet-cephalometric-landmark-detection`` (``best_model.pth``,
described in ``shared/specs/hf_hrnet_w32``), whose two departures from the usual pose-HRNet
this module reproduces:

1. every stage-4 module, the last included, keeps multi-scale output (so the state dict has
   ``stage4.2.fuse_layers.{1,2,3}.*``), although only the highest-resolution branch feeds the head;
2. in the fuse layers, the path from a lower-resolution branch ``j`` to a higher-resolution branch
   ``i`` is a 1x1 conv + BatchNorm whose output is resized with **bilinear** interpolation
   (``align_corners=False``) to branch ``i``'s exact size (not nearest-neighbour x2^k).

Layout (W = width, 32 for the public model): stem of two stride-2 3x3 convs (64 ch); ``layer1`` =
4 Bottlenecks (256 ch); ``stage2`` 1 module [W, 2W]; ``stage3`` 4 modules [W, 2W, 4W];
``stage4`` 3 modules [W, 2W, 4W, 8W]; 4 BasicBlocks per branch; fusion by sum then ReLU;
BatchNorm momentum 0.1; head ``Dropout2d(0.1)`` + 1x1 conv W -> K (with bias) on the stride-4
branch. No final upsampling: input (B, 3, H, W) -> logits (B, K, H/4, W/4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HRNet", "HRNET_WIDTHS", "hrnet"]

BN_MOMENTUM = 0.1

#: registry name -> width of the highest-resolution branch
HRNET_WIDTHS = {"hrnet_w18": 18, "hrnet_w32": 32, "hrnet_w48": 48}


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with an identity (or 1x1 projected) shortcut (He et al., CVPR 2016)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block (He et al., CVPR 2016)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, kernel_size=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _residual_stack(block: type, cin: int, planes: int, n: int) -> nn.Sequential:
    """``n`` blocks; the first projects the shortcut when the channel count changes."""
    downsample = None
    if cin != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(cin, planes * block.expansion, kernel_size=1, bias=False),
            _bn(planes * block.expansion),
        )
    layers = [block(cin, planes, 1, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class _UpPath(nn.Sequential):
    """Low-res branch j -> high-res branch i: 1x1 conv + BN, then bilinear resize to the target size.

    Keys ``<idx>.0.weight`` (conv) and ``<idx>.1.*`` (BN) as in the public checkpoint.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, kernel_size=1, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:  # type: ignore[override]
        x = super().forward(x)
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _down_path(cin: int, cout: int, steps: int) -> nn.Sequential:
    """High-res branch j -> low-res branch i: ``steps`` stride-2 3x3 conv + BN (ReLU between)."""
    layers = []
    for k in range(steps):
        if k == steps - 1:
            layers.append(nn.Sequential(_conv3x3(cin, cout, 2), _bn(cout)))
        else:
            layers.append(nn.Sequential(_conv3x3(cin, cin, 2), _bn(cin), nn.ReLU(inplace=True)))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all fusion (sum, then ReLU)."""

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.channels = list(channels)
        self.multi_scale_output = multi_scale_output
        n = len(channels)
        self.branches = nn.ModuleList([_residual_stack(BasicBlock, c, c, num_blocks) for c in channels])
        n_out = n if multi_scale_output else 1
        fuse = []
        for i in range(n_out):
            row = []
            for j in range(n):
                if j > i:
                    row.append(_UpPath(channels[j], channels[i]))
                elif j == i:
                    row.append(None)
                else:
                    row.append(_down_path(channels[j], channels[i], i - j))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse) if n > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=False)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            y = None
            for j, layer in enumerate(row):
                if j == i:
                    t = xs[j]
                elif j > i:
                    t = layer(xs[j], size)
                else:
                    t = layer(xs[j])
                y = t if y is None else y + t
            out.append(self.relu(y))
        return out


def _transition(prev: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """Branch adapters between stages: channel change (3x3 conv) or a new stride-2 branch."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(prev):
            if prev[i] != c:
                layers.append(nn.Sequential(_conv3x3(prev[i], c), _bn(c), nn.ReLU(inplace=True)))
            else:
                layers.append(None)
        else:
            steps = []
            for k in range(i + 1 - len(prev)):
                cin = prev[-1]
                cout = c if k == i - len(prev) else cin
                steps.append(nn.Sequential(_conv3x3(cin, cout, 2), _bn(cout), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet-W<width> heatmap model, state-dict compatible with the public ISBI HRNet-W32.

    Args:
        num_landmarks: K, output heatmap channels (19 for the public ISBI model).
        width: channels of the stride-4 branch (18, 32, 48); branches are W, 2W, 4W, 8W.
        num_modules: modules in stages 2, 3, 4 (public: (1, 4, 3)).
        num_blocks: BasicBlocks per branch in every module (public: 4).
        head_dropout: ``Dropout2d`` probability before the head (public: 0.1; identity in eval).

    Forward:
        x: (B, 3, H, W) float32, normalised image (public model: RGB/255, ImageNet mean/std).
        returns: (B, K, ceil(H/4), ceil(W/4)) float32 raw heatmap logits, stride 4 (for H, W
        multiples of 32 exactly H/4 x W/4).

    Attributes:
        stride: 4 (input pixels per heatmap pixel).
        landmark_head_keys: state-dict keys whose first dimension is the landmark channel.
    """

    stride = 4
    landmark_head_keys = ("final_layer.weight", "final_layer.bias")

    def __init__(
        self,
        num_landmarks: int,
        width: int = 32,
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: int = 4,
        head_dropout: float = 0.1,
    ):
        super().__init__()
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        if len(num_modules) != 3 or min(num_modules) < 1:
            raise ValueError(f"num_modules must be 3 positive ints (stages 2-4), got {num_modules}")
        self.num_landmarks = int(num_landmarks)
        self.width = int(width)
        self.config = {
            "width": self.width,
            "num_modules": [int(m) for m in num_modules],
            "num_blocks": int(num_blocks),
            "head_dropout": float(head_dropout),
        }
        # stem: two stride-2 3x3 convs -> stride 4, 64 channels
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _residual_stack(Bottleneck, 64, 64, 4)

        ch = [width * 2**i for i in range(4)]
        self.transition1 = _transition([64 * Bottleneck.expansion], ch[:2])
        self.stage2 = nn.Sequential(*[HighResolutionModule(ch[:2], num_blocks) for _ in range(num_modules[0])])
        self.transition2 = _transition(ch[:2], ch[:3])
        self.stage3 = nn.Sequential(*[HighResolutionModule(ch[:3], num_blocks) for _ in range(num_modules[1])])
        self.transition3 = _transition(ch[:3], ch[:4])
        # public-checkpoint difference (1): the last stage-4 module keeps multi-scale output too
        self.stage4 = nn.Sequential(*[HighResolutionModule(ch[:4], num_blocks) for _ in range(num_modules[2])])
        self.dropout = nn.Dropout2d(head_dropout)
        self.final_layer = nn.Conv2d(width, num_landmarks, kernel_size=1, stride=1, padding=0, bias=True)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, t in enumerate(transition):
            if i < len(xs):
                out.append(xs[i] if t is None else t(xs[i]))
            else:
                out.append(t(xs[-1]))
        return out

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage-4 outputs: list of 4 tensors (B, W*2^i, H/2^(i+2), W/2^(i+2)) float32."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = self._apply_transition(self.transition1, [x])
        for m in self.stage2:
            xs = m(xs)
        xs = self._apply_transition(self.transition2, xs)
        for m in self.stage3:
            xs = m(xs)
        xs = self._apply_transition(self.transition3, xs)
        for m in self.stage4:
            xs = m(xs)
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"HRNet expects input (B, 3, H, W), got {tuple(x.shape)}")
        return self.final_layer(self.dropout(self.features(x)[0]))


def hrnet(name: str, num_landmarks: int, pretrained: bool = False, **kw) -> HRNet:
    """Build ``hrnet_w18`` / ``hrnet_w32`` / ``hrnet_w48`` (see :class:`HRNet` for ``kw``).

    Raises:
        ValueError: unknown name; ``pretrained=True`` (no ImageNet weights are shipped for these;
            initialise from the public ISBI checkpoint with ``init_from_checkpoint`` instead).
    """
    if name not in HRNET_WIDTHS:
        raise ValueError(f"unknown HRNet {name!r}; valid: {sorted(HRNET_WIDTHS)}")
    if pretrained:
        raise ValueError(
            f"{name}: pretrained=True is not supported (no ImageNet weights for the pose-HRNet layout); "
            "set pretrained: false and initialise from the public ISBI checkpoint (init_from_checkpoint)"
        )
    kw.setdefault("width", HRNET_WIDTHS[name])
    return HRNet(num_landmarks, **kw)
