"""benchmarks/default_run_summary.py --check: how far each table row moved between two runs."""

import default_run_summary

README_BLOCK = """
| | de | en |
|---|---|---|
| POS accuracy, last layer, step 800 | 69.0 [67.9, 70.2] | 65.4 [63.7, 67.1] |
| pos gain, step 0 to 800 (paired) | +6.2 [+5.2, +7.3] | +7.9 [+6.5, +9.5] |
| BPC, step 800 | - | 3.1 [3.0, 3.2] |

Verdicts: within noise 37.
"""


def test_table_moves_name_the_largest_move_per_row():
    run_block = README_BLOCK.replace("69.0 [67.9", "69.3 [68.2").replace("+7.9 [", "+7.5 [")
    moves = default_run_summary.table_moves(README_BLOCK, run_block)
    assert moves == [
        "  POS accuracy, last layer, step 800: largest move 0.3 (de 69 -> 69.3)",
        "  pos gain, step 0 to 800 (paired): largest move 0.4 (en 7.9 -> 7.5)",
        "  BPC, step 800: largest move 0.0 (en 3.1 -> 3.1)",
    ]
