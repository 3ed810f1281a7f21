"""Non-local block (Wang et al., "Non-local Neural Networks", 2018) for 3D feature maps."""

from __future__ import annotations

import torch
from torch import nn


class NonLocal(nn.Module):
    """Embedded-Gaussian / dot-product non-local block with a residual connection.

    theta, phi and g are 1x1x1 projections to ``dim_inner`` channels; phi and g see a
    max-pooled copy of the input (``pool_size``) to cut the affinity matrix, theta the
    full-resolution input. The output ``x + bn(conv_out(affinity @ g))``.
    """

    def __init__(
        self,
        dim: int,
        dim_inner: int,
        pool_size: tuple[int, int, int] | None = None,
        instantiation: str = "softmax",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if instantiation not in ("softmax", "dot_product"):
            raise ValueError(f"unknown non-local instantiation {instantiation!r}")
        self.dim_inner = dim_inner
        self.instantiation = instantiation
        self.conv_theta = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.conv_phi = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.conv_g = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.conv_out = nn.Conv3d(dim_inner, dim, kernel_size=1)
        self.bn = nn.BatchNorm3d(dim, eps=bn_eps, momentum=bn_momentum)
        use_pool = pool_size is not None and any(size > 1 for size in pool_size)
        self.pool = nn.MaxPool3d(pool_size, stride=pool_size) if use_pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.conv_theta(x).view(n, self.dim_inner, -1)
        pooled = self.pool(x) if self.pool is not None else x
        phi = self.conv_phi(pooled).view(n, self.dim_inner, -1)
        g = self.conv_g(pooled).view(n, self.dim_inner, -1)

        affinity = torch.einsum("nct,ncp->ntp", theta, phi)
        if self.instantiation == "softmax":
            affinity = torch.softmax(affinity * self.dim_inner**-0.5, dim=2)
        else:
            affinity = affinity / affinity.shape[2]

        out = torch.einsum("ntg,ncg->nct", affinity, g).view(n, self.dim_inner, t, h, w)
        return x + self.bn(self.conv_out(out))
