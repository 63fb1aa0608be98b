"""The papers' ablation tables (ViT, MAE, Swin) re-run on our training code: `scripts/ablate.py`."""
from __future__ import annotations

from .report import markdown, verdict, write_index
from .runner import RunOptions, run_table
from .tables import TABLES, Row, Table, get_table, list_tables

__all__ = ["TABLES", "Row", "Table", "RunOptions", "get_table", "list_tables", "markdown", "run_table", "verdict",
           "write_index"]
