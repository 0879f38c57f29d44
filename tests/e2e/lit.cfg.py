# lit configuration of tests/e2e: examples built with `netc build` and trained on
# real data (Fashion-MNIST) or generated data; shared settings in tests/lit.common.py.
# Helper scripts live in Inputs/ (lit does not run them as tests).
import os
config.name = "e2e"
config.suffixes = ['.test']
exec(open(os.path.join(os.path.dirname(__file__), "..", "lit.common.py")).read())
config.substitutions.append(("%inputs", os.path.join(os.path.dirname(__file__), "Inputs")))
