"""Recurrent cells with per-user recurrent matrices (Ko et al. 2016, Eq. 17–24).

Pure functions over explicit arrays rather than Flax modules: the collaborative
RNN gathers each user's recurrent matrix from a [U, D, kD] table by user id and
updates only the gathered rows, which is plainer with the table in hand.

Conventions (row vectors): h is [B, D]; the input term W_in x_t is a gathered
row of an [I, kD] table, k = 3 for the GRU (columns z | r | h̃) and 1 for tanh;
a recurrent matrix is [D, kD] (pooled, shared by the batch) or [B, D, kD]
(collaborative, one per sequence in the batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CELL_WIDTH = {"gru": 3, "tanh": 1}  # k: columns of the input/recurrent matrices per hidden unit.


def _recurrent(h: jax.Array, w: jax.Array) -> jax.Array:
  if w.ndim == 3:
    return jnp.einsum("bd,bde->be", h, w)
  return h @ w


def gru_step(w_h: jax.Array, h: jax.Array, x: jax.Array) -> jax.Array:
  """One collaborative GRU step (Eq. 21–24).

  Args:
    w_h: [D, 3D] or [B, D, 3D]: W_zh | W_rh | W_h (per user when 3-D).
    h: [B, D] previous hidden state h_{t-1}.
    x: [B, 3D] W_zi x_t | W_ri x_t | W_in x_t.

  Returns:
    [B, D] h_t = (1 - z) ∘ h_{t-1} + z ∘ tanh(W_h (r ∘ h_{t-1}) + W_in x_t).
  """
  d = h.shape[-1]
  zr = jax.nn.sigmoid(_recurrent(h, w_h[..., :2 * d]) + x[:, :2 * d])
  z, r = zr[:, :d], zr[:, d:]
  h_tilde = jnp.tanh(_recurrent(r * h, w_h[..., 2 * d:]) + x[:, 2 * d:])
  return (1.0 - z) * h + z * h_tilde


def tanh_step(w_h: jax.Array, h: jax.Array, x: jax.Array) -> jax.Array:
  """One tanh-RNN step (Eq. 17–18): h_t = tanh(W_h h_{t-1} + W_in x_t)."""
  return jnp.tanh(_recurrent(h, w_h) + x)


STEPS = {"gru": gru_step, "tanh": tanh_step}


def run(cell: str, w_h: jax.Array, h0: jax.Array, x: jax.Array, mask: jax.Array
        ) -> tuple[jax.Array, jax.Array]:
  """Runs a cell over time with `lax.scan`; masked steps keep the state.

  Args:
    cell: "gru" or "tanh".
    w_h: recurrent matrix, [D, kD] or [B, D, kD].
    h0: [B, D] initial state (carried from the previous window).
    x: [B, T, kD] input terms.
    mask: [B, T] 1 for real events, 0 for padding.

  Returns:
    (h_T [B, D] the state after the last real event, hs [B, T, D]).
  """
  if cell not in STEPS:
    raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(STEPS)}")
  step = STEPS[cell]

  def body(h, xm):
    x_t, m_t = xm
    h_new = step(w_h, h, x_t)
    h_new = jnp.where(m_t[:, None] > 0, h_new, h)
    return h_new, h_new

  h_last, hs = jax.lax.scan(body, h0, (jnp.swapaxes(x, 0, 1), jnp.swapaxes(mask, 0, 1)))
  return h_last, jnp.swapaxes(hs, 0, 1)
