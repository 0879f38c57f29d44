# lit configuration of tests/diag: shared settings live in tests/lit.common.py.
import os
config.name = "diag"
config.suffixes = ['.net']
exec(open(os.path.join(os.path.dirname(__file__), "..", "lit.common.py")).read())
