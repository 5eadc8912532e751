"""hubcache.py: a local Hugging Face hub cache made in a test, for the code
paths that pick a model by its hub id (`prepare --language`, the Python
language_code=): `$HF_HUB_CACHE/models--ORG--NAME/snapshots/REV/` with
refs/main naming REV, as huggingface_hub lays it out."""
import json
import os
import shutil

REV = "0123456789abcdef"


def hub_cache(root, models):
    """models: {hub id: (source directory, config_sentence_transformers.json
    as a dict or None)}. Makes what is missing under root; returns
    {hub id: snapshot directory}."""
    snaps = {}
    for name, (src, cfg) in models.items():
        repo = os.path.join(root, "models--" + name.replace("/", "--"))
        snap = snaps[name] = os.path.join(repo, "snapshots", REV)
        if os.path.isdir(snap):
            continue
        shutil.copytree(src, snap)
        if cfg is not None:
            with open(os.path.join(snap, "config_sentence_transformers.json"), "w") as f:
                json.dump(cfg, f)
        os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
        with open(os.path.join(repo, "refs", "main"), "w") as f:
            f.write(REV)
    return snaps
