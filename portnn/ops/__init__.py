"""Operations the array API lacks: a portable version in standard ops, and
the backend's native fast path when it registers one."""

from __future__ import annotations

from .scatter import scatter_add, scatter_add_portable

__all__ = ["scatter_add", "scatter_add_portable"]
