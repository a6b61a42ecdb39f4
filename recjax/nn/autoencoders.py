"""MLP encoder and decoder of Mult-VAE / Mult-DAE (Liang et al. 2018, §4.3; their vae_cf code).

The architecture is symmetric, ``[I → hidden... → K → reversed(hidden)... → I]``,
with tanh between layers and none on the outputs: ``hidden=(600,)``, ``K=200``
gives ``[I → 600 → 200 → 600 → I]``; ``hidden=()`` the 0-hidden-layer
``[I → 200 → I]``.  The encoder L2-normalizes each input row and applies
dropout to it (training only; `recjax.nn.dropout.BitDropout`, whose mask
costs one random bit per entry at rate 0.5 instead of a float32 uniform).  A variational encoder's last layer has 2K
outputs, split into the mean and log-variance of q(z | x) (no activation); a
denoising encoder's K outputs go through tanh, as in vae_cf's MultiDAE.
Kernels start Xavier-uniform, biases N(0, 0.001²) truncated (vae_cf).  No
weights are tied.

Inputs are dense rows [B, I] or `recjax.nn.sparse.PaddedRows`; the first
layer handles both with one kernel.

``compute_dtype="bfloat16"`` runs every dense matmul (forward and both
backward products) on bfloat16 operands with float32 accumulation and a
float32 result (`mixed_matmul`); parameters stay float32 (the master
weights the optimizer updates) and everything between the matmuls -- biases,
tanh, the L2 normalization, and downstream the softmax, log-likelihood and
KL -- runs in float32.  The gathers of padded rows (the sparse first layer,
per-row output columns) stay float32: they are bandwidth-bound, and a
bfloat16 gather would make its backward a bfloat16 scatter-add (bfloat16
accumulation).  ``"float32"`` (the default) builds exactly the float32 layers.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from recjax.nn import sparse
from recjax.nn.dropout import BitDropout

KERNEL_INIT = nn.initializers.xavier_uniform()
BIAS_INIT = nn.initializers.truncated_normal(stddev=0.001)
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(compute_dtype: str) -> None:
  """Raises ValueError unless `compute_dtype` is one of `COMPUTE_DTYPES`."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")


def _dot_f32(a: jax.Array, b: jax.Array) -> jax.Array:
  """a [..., k] @ b [k, n] with float32 accumulation and result."""
  return jax.lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)


@jax.custom_vjp
def mixed_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., k] @ w [k, n] on bfloat16 operands, accumulated and returned in float32.

  The backward products (g wᵀ and xᵀ g) are bfloat16 x bfloat16 -> float32 as
  well, with the float32 cotangent rounded to bfloat16: left to autodiff, the
  transpose of a `preferred_element_type` dot would meet a float32 cotangent
  and run in float32.  Cotangents come back in the operands' dtypes (float32).
  """
  return _dot_f32(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))


def _mixed_matmul_fwd(x, w):
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  # Zero-size arrays carry the operands' dtypes (residuals must be arrays).
  return _dot_f32(xb, wb), (xb, wb, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _transposed_copy(a: jax.Array) -> jax.Array:
  """aᵀ of a 2-D array, written as a gather so that XLA stores it transposed.

  XLA:CPU (jax 0.10) runs a bfloat16 x bfloat16 -> float32 dot on its fast
  (YNNPACK) kernels only when the lhs contracts its last dimension; a
  contraction over the leading (batch) dimension of both operands, as in the
  weight gradient xᵀ g, is upcast to a float32 dot -- and `a.T` (even behind an
  optimization barrier) is folded back into the dot's dimension numbers.  An
  iota gather is not, and costs one pass over `a` (measured: xᵀ g for
  x [500, 600], g [500, 3591] on one core, 15 ms -> 4 ms).
  """
  m, n = a.shape
  return a[jnp.arange(m)[None, :], jnp.arange(n)[:, None]]


def _mixed_matmul_bwd(res, g):
  xb, wb, x_like, w_like = res
  x_dtype, w_dtype = x_like.dtype, w_like.dtype
  gb = g.astype(jnp.bfloat16)
  # g wᵀ as a contraction of both last dimensions (fast), not a dot with wb.T (upcast).
  dx = jax.lax.dot_general(gb, wb, (((gb.ndim - 1,), (1,)), ((), ())),
                           preferred_element_type=jnp.float32)  # Dropped by XLA if unused.
  x2, g2 = xb.reshape(-1, xb.shape[-1]), gb.reshape(-1, gb.shape[-1])
  dw = _dot_f32(_transposed_copy(x2), g2)
  return dx.astype(x_dtype), dw.astype(w_dtype)


mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


class _MixedDense(nn.Module):
  """`nn.Dense` with float32 params and a `mixed_matmul` (bfloat16 operands, float32 out)."""

  features: int
  kernel_init: nn.initializers.Initializer = KERNEL_INIT
  bias_init: nn.initializers.Initializer = BIAS_INIT

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return mixed_matmul(x, kernel) + bias.reshape((1,) * (x.ndim - 1) + (-1,))


class _MixedInputDense(sparse.InputDense):
  """`sparse.InputDense` (same params) whose dense-row matmul is a `mixed_matmul`."""

  @nn.compact
  def __call__(self, rows: sparse.Rows) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (self.n_in, self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    if isinstance(rows, sparse.PaddedRows):  # A float32 gather-sum, as sparse.InputDense.
      gathered = kernel.at[rows.items].get(mode="promise_in_bounds")  # [B, L, features]
      return jnp.einsum("bl,blf->bf", rows.values, gathered) + bias[None, :]
    if rows.shape[-1] != self.n_in:
      raise ValueError(f"InputDense: rows have {rows.shape[-1]} columns, expected {self.n_in}")
    return mixed_matmul(rows, kernel) + bias[None, :]


class _MixedOutputDense(sparse.OutputDense):
  """`sparse.OutputDense` (same params) whose all-items logits use `mixed_matmul`."""

  @nn.compact
  def __call__(self, h: jax.Array, items: jax.Array | None = None) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (h.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    if items is None:
      return mixed_matmul(h, kernel) + bias[None, :]
    b = bias.at[items].get(mode="promise_in_bounds")
    if items.ndim == 1:
      # The S shared sampled columns stay float32: S ≪ I, and XLA:CPU's DotThunk rejects
      # bf16 x bf16 -> f32 for this gathered [d, S] operand's gradient (UNIMPLEMENTED).
      return h @ kernel[:, items] + b[None, :]
    rows = kernel.T.at[items].get(mode="promise_in_bounds")  # Per-row columns: a float32 gather.
    return jnp.einsum("bd,bld->bl", h, rows) + b


def l2_normalize_rows(rows: sparse.Rows, eps: float = 1e-12) -> sparse.Rows:
  """Each row divided by its L2 norm (max(‖x‖², eps) under the root, as tf.nn.l2_normalize)."""
  v = sparse.row_values(rows)
  norm_sq = jnp.sum(jnp.square(v), axis=-1, keepdims=True)
  return sparse.with_values(rows, v * jax.lax.rsqrt(jnp.maximum(norm_sq, eps)))


class MLPEncoder(nn.Module):
  """x ↦ (mu, logvar) [B, K] each (variational) or z [B, K] (denoising).

  Attributes:
    n_items: I, the input width.
    hidden_dims: widths of the hidden layers, input side first (e.g. (600,)).
    latent_dim: K.
    variational: output the Gaussian's mean and log-variance instead of z.
    dropout_rate: dropout on the normalized input during training.
    compute_dtype: "float32", or "bfloat16" for `mixed_matmul` layers (float32 params and outputs).
  """

  n_items: int
  hidden_dims: Sequence[int] = (600,)
  latent_dim: int = 200
  variational: bool = True
  dropout_rate: float = 0.5
  compute_dtype: str = "float32"

  @nn.compact
  def __call__(self, rows: sparse.Rows, *, deterministic: bool = True):
    """Encodes rows; a non-deterministic call needs a ``"dropout"`` rng."""
    check_compute_dtype(self.compute_dtype)
    mixed = self.compute_dtype == "bfloat16"
    rows = l2_normalize_rows(rows)
    dropped = BitDropout(self.dropout_rate)(sparse.row_values(rows), deterministic=deterministic)
    rows = sparse.with_values(rows, dropped)
    out_dims = (*self.hidden_dims, 2 * self.latent_dim if self.variational else self.latent_dim)
    h = (_MixedInputDense if mixed else sparse.InputDense)(
        self.n_items, out_dims[0], kernel_init=KERNEL_INIT, bias_init=BIAS_INIT, name="input")(rows)
    dense = _MixedDense if mixed else nn.Dense
    for i, width in enumerate(out_dims[1:]):
      h = dense(width, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
                name=f"dense_{i}")(jnp.tanh(h))
    if self.variational:
      return h[:, :self.latent_dim], h[:, self.latent_dim:]
    return jnp.tanh(h)


class MLPDecoder(nn.Module):
  """z [B, K] ↦ logits f_θ(z) over all items [B, I] (or over chosen items).

  Attributes:
    n_items: I, the output width.
    hidden_dims: widths of the hidden layers, latent side first (the
      encoder's reversed, e.g. (600,)).
    compute_dtype: "float32", or "bfloat16" for `mixed_matmul` layers (float32 params and logits).
  """

  n_items: int
  hidden_dims: Sequence[int] = (600,)
  compute_dtype: str = "float32"

  @nn.compact
  def __call__(self, z: jax.Array, items: jax.Array | None = None) -> jax.Array:
    """Logits; `items` as in `recjax.nn.sparse.OutputDense` (None: all items)."""
    check_compute_dtype(self.compute_dtype)
    mixed = self.compute_dtype == "bfloat16"
    dense = _MixedDense if mixed else nn.Dense
    h = z
    for i, width in enumerate(self.hidden_dims):
      h = jnp.tanh(dense(width, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
                         name=f"dense_{i}")(h))
    return (_MixedOutputDense if mixed else sparse.OutputDense)(
        self.n_items, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT, name="output")(h, items)


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array,
                   eps_std: float = 1.0) -> jax.Array:
  """z = mu + ε ⊙ exp(logvar / 2), ε ~ N(0, eps_std² I): a differentiable draw from q(z | x).

  eps_std = 1 is the paper's (and the only one that samples q); RecBole's MultiVAE
  draws ε with std 0.01, a near-deterministic code (kept here to compare against it).
  """
  eps = jax.random.normal(key, mu.shape, mu.dtype)
  if eps_std != 1.0:
    eps = eps * jnp.asarray(eps_std, mu.dtype)
  return mu + eps * jnp.exp(0.5 * logvar)
