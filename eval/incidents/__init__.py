"""The golden incident corpus: cases, their ground truth, and their generated pod logs."""

from eval.incidents.catalog import all_cases, get_case, render_case, write_case
from eval.incidents.model import Case, Expected

__all__ = ["Case", "Expected", "all_cases", "get_case", "render_case", "write_case"]
