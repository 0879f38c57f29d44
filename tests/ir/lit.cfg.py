# lit configuration of tests/ir: shared settings live in tests/lit.common.py.
import os
config.name = "ir"
config.suffixes = ['.ir', '.test']
exec(open(os.path.join(os.path.dirname(__file__), "..", "lit.common.py")).read())
