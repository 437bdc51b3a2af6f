"""The VQ-VAE over spectrogram slices and the metric head.

Encoder: (optional average pooling) → stride-2 convolutions → a residual block → a 1×1
projection to ``latent_dim``. The latent grid (``image / (pool · 2^L)`` on each axis) is
quantised by :class:`vector_quantize_pytorch.VectorQuantize` (k-means initialised, EMA
codebook updates, dead-code replacement, optionally cosine codes). The decoder mirrors
the encoder and reconstructs the (pooled) slice.

:class:`MetricHead` maps the pooled statistics of a song or set of songs
(``√histogram``, channel means and standard deviations of the encoder output) to a unit
embedding; it is trained with :func:`supcon_loss` on genre labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from encore.similarity.config import SimilarityConfig


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(_groups(channels), channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(_groups(channels), channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _Layers(nn.Module):
    """Layers run one after the other, held as ``net`` (the name in the saved weights)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(_Layers):
    def __init__(self, config: SimilarityConfig) -> None:
        layers: list[nn.Module] = []
        c_in = 1
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        layers += [ResBlock(c_in), nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(),
                   nn.Conv2d(c_in, config.latent_dim, 1)]
        super().__init__(layers)


class Decoder(_Layers):
    def __init__(self, config: SimilarityConfig) -> None:
        chans = list(config.channels)
        layers: list[nn.Module] = [nn.Conv2d(config.latent_dim, chans[-1], 3, padding=1),
                                   ResBlock(chans[-1]), nn.SiLU()]
        for c_in, c_out in zip(chans[::-1], chans[-2::-1] + [chans[0]], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(chans[0], 1, 3, padding=1)]
        super().__init__(layers)


class VQVAE(nn.Module):
    """Encoder, vector quantiser and decoder for ``(B, 1, H, W)`` slices in [-1, 1]."""

    def __init__(self, config: SimilarityConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantize(
            dim=config.latent_dim,
            codebook_size=config.codebook_size,
            decay=config.codebook_decay,
            kmeans_init=True,
            kmeans_iters=10,
            threshold_ema_dead_code=config.dead_code_threshold,
            use_cosine_sim=config.cosine_codebook,
            commitment_weight=config.commitment_weight,
            accept_image_fmap=True,
        )
        self.decoder = Decoder(config)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pool a ``(B, 1, H, W)`` batch to the encoder's resolution."""
        if self.config.pool > 1:
            x = F.avg_pool2d(x, self.config.pool)
        return x

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct a batch.

        Returns
        -------
        recon : torch.Tensor
            ``(B, 1, H/pool, W/pool)`` reconstruction of :meth:`prepare` ``(x)``.
        target : torch.Tensor
            :meth:`prepare` ``(x)``.
        z : torch.Tensor
            ``(B, D, h, w)`` encoder output (before quantisation).
        indices : torch.Tensor
            ``(B, h, w)`` codebook indices.
        vq_loss : torch.Tensor
            Commitment loss (scalar).
        """
        target = self.prepare(x)
        z = self.encoder(target)
        quantized, indices, vq_loss = self.quantizer(z)
        recon = self.decoder(quantized)
        return recon, target, z, indices, vq_loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, D, h, w)`` and codebook indices ``(B, h, w)`` (no updates)."""
        z = self.encoder(self.prepare(x))
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codebook = self.quantizer.codebook
        if self.config.cosine_codebook:
            flat_n = F.normalize(flat, dim=-1)
            idx = (flat_n @ F.normalize(codebook, dim=-1).T).argmax(dim=-1)
        else:
            idx = torch.cdist(flat, codebook).argmin(dim=-1)
        return z, idx.reshape(z.shape[0], z.shape[2], z.shape[3])


class MetricHead(nn.Module):
    """MLP from pooled statistics (``√h``, mean and std of ``z``) to a unit embedding."""

    def __init__(self, config: SimilarityConfig) -> None:
        super().__init__()
        d_in = config.codebook_size + config.feature_dim
        self.half = config.feature_dim // 2
        self.net = nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Linear(d_in, config.head_hidden),
            nn.SiLU(),
            nn.Dropout(0.1),
            nn.Linear(config.head_hidden, config.embedding_dim),
        )

    def forward(self, histogram: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``histogram`` ``(B, K)`` (sums to 1), ``features`` ``(B, 2D)`` → ``(B, E)`` unit rows."""
        d = self.half
        mean, meansq = features[:, :d], features[:, d:]
        std = (meansq - mean.square()).clamp_min(0.0).add(1e-6).sqrt()
        x = torch.cat([histogram.clamp_min(0.0).sqrt(), mean, std], dim=1)
        return F.normalize(self.net(x), dim=1)


class SliceHead(nn.Module):
    """Auxiliary projection of one slice's encoder statistics, used only while training the
    VQ-VAE: its supervised contrastive loss on genres makes the encoder output genre-aware."""

    def __init__(self, config: SimilarityConfig) -> None:
        super().__init__()
        d = config.latent_dim
        self.net = nn.Sequential(nn.Linear(2 * d, config.head_hidden), nn.SiLU(),
                                 nn.Linear(config.head_hidden, config.embedding_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, D, h, w)`` → ``(B, E)`` unit rows (from channel means and stds)."""
        flat = z.flatten(2)
        x = torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)
        return F.normalize(self.net(x), dim=1)


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") over unit embeddings.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``(B, E)`` L2-normalised rows.
    labels : torch.Tensor
        ``(B,)`` integer class labels.
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Mean over anchors that have at least one positive (0 if none has).
    """
    n = embeddings.shape[0]
    logits = embeddings @ embeddings.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return embeddings.sum() * 0.0
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()
