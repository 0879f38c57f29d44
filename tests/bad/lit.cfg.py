# lit configuration of tests/bad: shared settings live in tests/lit.common.py.
import os
config.name = "bad"
config.suffixes = ['.test']
exec(open(os.path.join(os.path.dirname(__file__), "..", "lit.common.py")).read())
