"""The explorer page's size at the XLM-R replica preset's shape (39 steps, 13 hidden states, 44
in-language and 18 transfer languages, pos/arc/deprel with two control tasks, three layer views,
BPC for 44 languages), built from a synthetic table of that shape: what the README quotes.

    python benchmarks/explorer_size.py
"""

from __future__ import annotations

from mlm_dynamics.explorer import XLMR_SHAPE, projected_size


def main() -> None:
    size = projected_size()
    shape = ", ".join(f"{key} {value}" for key, value in XLMR_SHAPE.items())
    print(f"explorer.html at the XLM-R preset's shape ({shape}): {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
